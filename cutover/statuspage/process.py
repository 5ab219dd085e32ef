"""The status page as a detached process beside the Prefect server, like
:mod:`cutover.orchestration.server` runs that one.

``start_status_page(home, api_url, ...)`` runs ``cutover status-page`` in its own session
with the owner marker in its environment, waits until it answers ``/healthz`` and records
pid, host and port in ``<home>/status-page.json``; called again while it runs with the same
settings it returns the running one. ``stop_status_page(home)`` stops it. The team token
travels in the environment, never on the command line (``ps`` shows command lines).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from cutover.orchestration import OrchestrationError, owned_process
from cutover.statuspage.settings import DEFAULT_PORT, TOKEN_VARIABLE

log = structlog.get_logger()

RECORD_FILE = "status-page.json"
LOG_FILE = "status-page.log"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunningStatusPage:
    home: Path
    pid: int
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def team_url(self) -> str:
        return f"{self.url}team"


def _marker(home: Path) -> str:
    return f"status-page:{home}"


def _port(host: str, wanted: int | None) -> int:
    for candidate in ([wanted] if wanted else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OrchestrationError(f"no free port on {host}")


def running_status_page(home: str | Path) -> RunningStatusPage | None:
    home = Path(home).absolute()
    record = owned_process.read_record(home / RECORD_FILE)
    if not record or not owned_process.is_ours(record.get("pid"), _marker(home)):
        return None
    return RunningStatusPage(home, int(record["pid"]), record["host"], int(record["port"]))


def start_status_page(
    home: str | Path,
    api_url: str,
    runbook: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    team_token: str | None = None,
    ui_url: str | None = None,
    publish_config: str | Path | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> RunningStatusPage:
    """Start (or reuse) the status page for ``api_url`` and return it once it answers.
    ``port`` None: the recorded one when free, else :data:`DEFAULT_PORT` when free, else
    any. ``team_token`` None: the team view is off. Raises OrchestrationError when it does
    not answer within ``timeout_s`` (the process is stopped; its log file is named)."""
    home = Path(home).absolute()
    argv = [sys.executable, "-m", "cutover", "status-page", "--api", api_url, "--host", host]
    if runbook is not None:
        argv += ["--runbook", str(Path(runbook).absolute())]
    if ui_url:
        argv += ["--ui", ui_url]
    if publish_config is not None:
        argv += ["--publish", str(Path(publish_config).absolute())]
    fingerprint = hashlib.sha256(json.dumps([argv, team_token or ""]).encode()).hexdigest()
    current = running_status_page(home)
    record = owned_process.read_record(home / RECORD_FILE) or {}
    if current is not None:
        if record.get("fingerprint") == fingerprint and (port is None or port == current.port):
            return current
        stop_status_page(home)
    chosen = _port(host, port or record.get("port") or DEFAULT_PORT)
    if port and chosen != port:
        raise OrchestrationError(f"cannot start the status page on {host}:{port}: the port is in use")
    env = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
    if team_token:
        env[TOKEN_VARIABLE] = team_token
    pid = owned_process.start([*argv, "--port", str(chosen)], env, _marker(home), home / LOG_FILE)
    owned_process.write_record(home / RECORD_FILE, {"pid": pid, "host": host, "port": chosen, "fingerprint": fingerprint})
    page = RunningStatusPage(home, pid, host, chosen)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{page.url}healthz", timeout=2)
            break
        except httpx.HTTPError:
            pass
        if not owned_process.is_ours(pid, _marker(home)) or time.monotonic() > deadline:
            owned_process.stop(pid, _marker(home), "status page")
            raise OrchestrationError(f"the status page did not start on {host}:{chosen}; see {home / LOG_FILE}")
        time.sleep(0.2)
    log.info("status_page_started", url=page.url, pid=pid)
    return page


def stop_status_page(home: str | Path) -> list[int]:
    """Stop the status page of ``home``; the pids that ran (none when it was not running)."""
    home = Path(home).absolute()
    record = owned_process.read_record(home / RECORD_FILE) or {}
    return owned_process.stop(record.get("pid"), _marker(home), "status page")
