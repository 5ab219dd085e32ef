"""A Prefect process worker for one work pool, started detached with the environment the
flows need.

A process worker runs every flow run as a child process of its own: cancelling the run
(UI, API) kills that process, and a flow-run process that dies (SIGKILL, OOM) is reported
Crashed by the worker. The worker's environment is inherited by every flow run, which is
how the estate's variables (the runbook's ``env:`` references) and ``CUTOVER_PROJECT_DIR``
(the pull step's working directory) reach the flows.

The record ``<home>/worker-<pool>.json`` holds its pid, name, API and a fingerprint of the
environment it was given; ``start_worker`` reuses a running worker only when those match.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from cutover.config import prefect_settings
from cutover.orchestration import OrchestrationError, owned_process
from cutover.orchestration.api import prefect_client
from cutover.orchestration.deployments import POOL, PROJECT_DIR

log = structlog.get_logger()

START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class PrefectWorker:
    """A running process worker."""

    home: Path
    pool: str
    name: str
    pid: int
    api_url: str
    started_s: float  # how long until the API saw it; 0.0 when reused


def _marker(home: Path, pool: str) -> str:
    return f"prefect-worker:{pool}:{home}"


def _record(home: Path, pool: str) -> Path:
    return home / f"worker-{pool}.json"


def _fingerprint(api_url: str, env: Mapping[str, str], project_dir: Path) -> str:
    # Only a hash is recorded: the environment holds the estate's secrets.
    text = json.dumps([api_url, str(project_dir), sorted(env.items())])
    return hashlib.sha256(text.encode()).hexdigest()


def worker_environment(api_url: str, home: Path, env: Mapping[str, str], project_dir: Path) -> dict[str, str]:
    """What the worker (and so every flow run) runs with: the caller's environment without
    PREFECT_*, then ``env``, then the API, the home and the project directory."""
    merged = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    merged.update({k: v for k, v in env.items() if not k.startswith("PREFECT_")})
    merged.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home),
            **prefect_settings("worker"),  # config/prefect-local.toml
            "CUTOVER_PROJECT_DIR": str(project_dir),
        }
    )
    return merged


def running_worker(home: str | Path, pool: str = POOL) -> PrefectWorker | None:
    """The worker recorded for ``pool`` in ``home`` while its process is ours and alive."""
    home = Path(home).absolute()
    record = owned_process.read_record(_record(home, pool))
    if not record or not owned_process.is_ours(record.get("pid"), _marker(home, pool)):
        return None
    return PrefectWorker(
        home=home, pool=pool, name=record["name"], pid=int(record["pid"]), api_url=record["api_url"], started_s=0.0
    )


def start_worker(
    home: str | Path,
    api_url: str,
    pool: str = POOL,
    env: Mapping[str, str] | None = None,
    project_dir: str | Path = PROJECT_DIR,
    timeout_s: float = START_TIMEOUT_S,
) -> PrefectWorker:
    """Start a process worker for ``pool`` against ``api_url`` (or reuse the one that runs
    with the same API, environment and project directory) and return it once the API lists
    it. ``env`` is added to the worker's environment (the estate's variables). The work
    pool must exist (``deployments.apply_deployments`` creates it)."""
    home = Path(home).absolute()
    project_dir = Path(project_dir).absolute()
    env = dict(env or {})
    fingerprint = _fingerprint(api_url, env, project_dir)
    current = running_worker(home, pool)
    if current is not None:
        record = owned_process.read_record(_record(home, pool)) or {}
        if record.get("fingerprint") == fingerprint:
            log.info("prefect_worker_reused", pool=pool, pid=current.pid)
            return current
        stop_worker(home, pool)
    started = time.monotonic()
    name = f"{pool}-{socket.gethostname()}-{secrets.token_hex(3)}"
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name]
    log_file = home / f"worker-{pool}.log"
    pid = owned_process.start(
        argv, worker_environment(api_url, home, env, project_dir), _marker(home, pool), log_file, cwd=project_dir
    )
    owned_process.write_record(_record(home, pool), {"pid": pid, "name": name, "api_url": api_url, "fingerprint": fingerprint})
    try:
        _wait_registered(api_url, pool, name, pid, _marker(home, pool), log_file, timeout_s)
    except OrchestrationError:
        owned_process.stop(pid, _marker(home, pool), f"prefect worker {pool}")
        raise
    seconds = round(time.monotonic() - started, 2)
    log.info("prefect_worker_started", pool=pool, name=name, pid=pid, seconds=seconds)
    return PrefectWorker(home=home, pool=pool, name=name, pid=pid, api_url=api_url, started_s=seconds)


def stop_worker(home: str | Path, pool: str = POOL) -> list[int]:
    """Stop the worker of ``pool`` in ``home`` and its flow-run processes; returns the pids
    that ran. A flow run killed this way is left for Prefect to mark Crashed."""
    home = Path(home).absolute()
    record = owned_process.read_record(_record(home, pool)) or {}
    return owned_process.stop(record.get("pid"), _marker(home, pool), f"prefect worker {pool}")


def _wait_registered(api_url: str, pool: str, name: str, pid: int, marker: str, log_file: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with prefect_client(api_url) as client:
        while True:
            if any(w.name == name for w in client.read_workers_for_work_pool(pool)):
                return
            if not owned_process.is_ours(pid, marker):
                raise OrchestrationError(f"the Prefect worker for pool {pool} exited while starting; see {log_file}")
            if time.monotonic() >= deadline:
                raise OrchestrationError(
                    f"the Prefect worker for pool {pool} did not register at {api_url} within {timeout_s:.0f}s; see {log_file}"
                )
            time.sleep(0.25)
