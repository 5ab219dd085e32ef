"""A site's step worker (``cutover step-worker --site NAME``), started detached with exactly
the environment it is given: what the test topology and the benchmarks start beside a
server. On a real site it runs under the site's service manager instead.

Unlike the process worker (``worker.py``) it does not inherit the caller's environment
beyond what a process needs to start (PATH, HOME, LANG...): a site's worker must hold only
that site's secrets, so everything else is the caller's to pass in ``env``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from cutover.orchestration import OrchestrationError, owned_process
from cutover.orchestration.api import prefect_client

log = structlog.get_logger()

START_TIMEOUT_S = 90.0
TASK_KEY_PREFIX = "cutover-step-at-"  # tasks/site_steps.py routes a site's steps by it
_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "VIRTUAL_ENV")


@dataclass(frozen=True)
class StepWorker:
    site: str
    pid: int
    marker: str
    log_file: Path


def _marker(home: Path, site: str) -> str:
    return f"step-worker:{site}:{home}"


def start_step_worker(
    home: str | Path,
    api_url: str,
    site: str,
    env: Mapping[str, str],
    project_dir: str | Path,
    runbook: str | Path | None = None,
    timeout_s: float = START_TIMEOUT_S,
    limit: int | None = None,
) -> StepWorker:
    """Start the step worker of ``site`` against ``api_url`` with ``env`` (and the few
    variables any process needs) and return it once the server lists it as subscribed.
    Its Prefect home and work directory are ``<home>/step-worker-<site>/`` unless ``env``
    names them; ``limit``: the steps it runs at once (``cutover step-worker --limit``)."""
    home = Path(home).absolute()
    own = home / f"step-worker-{site}"
    (own / "prefect").mkdir(parents=True, exist_ok=True, mode=0o700)
    full = {k: v for k, v in os.environ.items() if k in _PASSED}
    full.update(
        {
            "PREFECT_HOME": str(own / "prefect"),
            "CUTOVER_HOME": str(own),
            "CUTOVER_WORK_DIR": str(own / "work"),
            "CUTOVER_PROJECT_DIR": str(Path(project_dir).absolute()),
        }
    )
    full.update(env)
    full["PREFECT_API_URL"] = api_url
    argv = [sys.executable, "-m", "cutover", "step-worker", "--site", site]
    if runbook is not None:
        argv += ["--runbook", str(runbook)]
    if limit is not None:
        argv += ["--limit", str(limit)]
    marker = _marker(home, site)
    log_file = home / f"step-worker-{site}.log"
    pid = owned_process.start(argv, full, marker, log_file, cwd=Path(project_dir))
    worker = StepWorker(site, pid, marker, log_file)
    try:
        wait_subscribed(api_url, [site], timeout_s, worker)
    except OrchestrationError:
        owned_process.stop(pid, marker, f"step worker {site}")
        raise
    log.info("step_worker_started", site=site, pid=pid)
    return worker


def stop_step_worker(worker: StepWorker) -> list[int]:
    """Stop it and the programs its steps run; the pids that ran."""
    return owned_process.stop(worker.pid, worker.marker, f"step worker {worker.site}")


def subscribed_sites(api_url: str) -> set[str]:
    """The sites with at least one step worker subscribed at ``api_url``."""
    with prefect_client(api_url) as client:
        live = client.request("POST", "/task_workers/filter", json={"task_worker_filter": {"task_keys": []}}).json()
    return {key.removeprefix(TASK_KEY_PREFIX) for w in live for key in w["task_keys"] if key.startswith(TASK_KEY_PREFIX)}


def wait_subscribed(api_url: str, sites: list[str], timeout_s: float, worker: StepWorker | None = None) -> None:
    """Wait until every one of ``sites`` has a subscribed step worker; OrchestrationError
    at the timeout or when ``worker`` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if set(sites) <= subscribed_sites(api_url):
            return
        if worker is not None and not owned_process.is_ours(worker.pid, worker.marker):
            raise OrchestrationError(f"the step worker of {worker.site} exited while starting; see {worker.log_file}")
        if time.monotonic() >= deadline:
            raise OrchestrationError(f"no step worker subscribed for {', '.join(sites)} within {timeout_s:.0f}s at {api_url}")
        time.sleep(0.3)
