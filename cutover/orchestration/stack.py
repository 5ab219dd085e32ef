"""The local stack that runs your own runbooks: a Prefect server (API and UI), the
deployments of ``prefect.yaml``, a process worker with the estate's environment, and the
status page beside the UI.

``start_stack`` starts (or reuses) each part in a home directory (by default the per-user
state directory's ``prefect/``); ``stop_stack`` stops them; ``stack_status`` tells what
runs. The environment the worker gets (from an env file, or the shell that ran ``cutover
up``) is what every flow run sees: the runbook's ``env:`` secrets resolve there.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cutover.orchestration import OrchestrationError
from cutover.orchestration.api import api_is_healthy
from cutover.orchestration.deployments import POOL, PROJECT_DIR, apply_deployments
from cutover.orchestration.server import PrefectServer, running_server, start_server, stop_server
from cutover.orchestration.worker import PrefectWorker, running_worker, start_worker, stop_worker
from cutover.redaction import register_secret
from cutover.statuspage.process import RunningStatusPage, running_status_page, start_status_page, stop_status_page
from cutover.statuspage.settings import TOKEN_VARIABLE

STACK_FILE = "stack.json"
_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``export`` allowed, ``#`` comments, values optionally quoted; a
    double-quoted value may span lines, as a private key does). OrchestrationError naming
    the file and line of anything else."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise OrchestrationError(f"cannot read the env file {path}: {exc.strerror or exc}") from None
    values: dict[str, str] = {}
    number = 0
    while number < len(lines):
        start = number + 1
        line = lines[number].strip()
        number += 1
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            raise OrchestrationError(f"{path}:{start}: not a NAME=value line")
        name, value = match.groups()
        if value.startswith('"') and (len(value) == 1 or not value.endswith('"')):
            parts = [value[1:]]
            while number < len(lines) and not lines[number].rstrip().endswith('"'):
                parts.append(lines[number])
                number += 1
            if number == len(lines):
                raise OrchestrationError(f"{path}:{start}: the quoted value of {name} never ends")
            parts.append(lines[number].rstrip()[:-1])
            number += 1
            value = "\n".join(parts)
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


TOKEN_FILE = "status-team-token"


@dataclass(frozen=True)
class Stack:
    server: PrefectServer
    worker: PrefectWorker
    status_page: RunningStatusPage
    token_file: Path | None  # where the team view's token is (None: it came from the environment)
    deployments: list[str]
    work_dir: Path
    seconds: float


def team_token(home: Path, env: Mapping[str, str]) -> tuple[str, Path | None]:
    """The status page's team token: CUTOVER_STATUS_TEAM_TOKEN when set, else the one in
    ``<home>/status-team-token`` (made once, readable only by its owner)."""
    if env.get(TOKEN_VARIABLE, "").strip():
        return env[TOKEN_VARIABLE].strip(), None
    path = home / TOKEN_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip(), path


def start_stack(
    home: Path,
    env: Mapping[str, str],
    work_dir: Path,
    project_dir: Path = PROJECT_DIR,
    env_source: str = "",
    runbook: Path | None = None,
) -> Stack:
    """Server, deployments, worker and status page in ``home``; the worker runs with ``env``
    and keeps its runs' files in ``work_dir`` (unless ``env`` names another
    CUTOVER_WORK_DIR). ``runbook``: the one the status page shows before its first run."""
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    server = start_server(home)
    applied = apply_deployments(server.api_url, project_dir=project_dir, home=server.home)
    environment = {"CUTOVER_WORK_DIR": str(work_dir), **env}
    worker = start_worker(server.home, server.api_url, env=environment, project_dir=project_dir)
    token, token_file = team_token(home, env)
    register_secret(token)
    page = start_status_page(home, server.api_url, runbook=runbook, team_token=token, ui_url=server.ui_url)
    (home / STACK_FILE).write_text(
        json.dumps({"work_dir": environment["CUTOVER_WORK_DIR"], "env_source": env_source, "project_dir": str(project_dir)})
    )
    return Stack(
        server,
        worker,
        page,
        token_file,
        applied.deployments,
        Path(environment["CUTOVER_WORK_DIR"]),
        round(time.monotonic() - started, 1),
    )


def stop_stack(home: Path) -> list[int]:
    """Stop the status page, the worker, then the server; the pids that ran."""
    return stop_status_page(home) + stop_worker(home) + stop_server(home)


@dataclass(frozen=True)
class StackStatus:
    home: Path
    server: PrefectServer | None
    healthy: bool
    worker: PrefectWorker | None
    status_page: RunningStatusPage | None
    work_dir: str | None
    env_source: str | None
    project_dir: str | None


def stack_status(home: Path) -> StackStatus:
    server = running_server(home)
    recorded = {}
    try:
        recorded = json.loads((home / STACK_FILE).read_text())
    except (OSError, ValueError):
        pass
    return StackStatus(
        home=home,
        server=server,
        healthy=bool(server and api_is_healthy(server.api_url)),
        worker=running_worker(home, POOL),
        status_page=running_status_page(home),
        work_dir=recorded.get("work_dir"),
        env_source=recorded.get("env_source"),
        project_dir=recorded.get("project_dir"),
    )
