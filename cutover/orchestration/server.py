"""A local Prefect server (API and UI) whose home and SQLite database live in one directory.

``start_server(home)`` runs ``prefect server start`` as a detached process with
``PREFECT_HOME=<home>`` and the database at ``<home>/prefect.db``, waits until
``/api/health`` answers, and records the pid and port in ``<home>/server.json`` (and the
client settings in ``<home>/env``, for a shell to source). Calling it
again while that server runs returns the running one; after a stop it comes back on the
recorded port when that port is still free, so UI links stay valid. Analytics are off and
the server makes no outbound connections of its own.

A production estate would run the server on PostgreSQL (``database_url``) on a machine of
its own; nothing else in Cutover assumes the server is local.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from cutover.config import prefect_settings
from cutover.orchestration import OrchestrationError, owned_process
from cutover.orchestration.api import api_is_healthy

log = structlog.get_logger()

RECORD_FILE = "server.json"
LOG_FILE = "server.log"
ENV_FILE = "env"
DEFAULT_HOST = "127.0.0.1"
# A fresh database is migrated on first start: about 20 s on a 2-core machine.
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class PrefectServer:
    """A running local Prefect server."""

    home: Path
    pid: int
    host: str
    port: int
    started_s: float  # how long the start took; 0.0 when an already running one was reused

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_environment(self) -> dict[str, str]:
        """Variables that point a Prefect client (CLI, worker, flow run) at this server and
        share its home, so results written by flow runs are readable by the caller."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home)}


def _marker(home: Path) -> str:
    return f"prefect-server:{home}"


def _free_port(host: str, wanted: int | None) -> int:
    if wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, wanted))
                return wanted
            except OSError:
                pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One start or stop at a time per home, across processes."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def server_environment(home: Path, host: str, port: int, database_url: str | None = None) -> dict[str, str]:
    """The environment ``prefect server start`` runs with: the caller's, minus every
    PREFECT_* and CUTOVER_* variable (a server needs no estate secrets and must not follow
    somebody's profile), plus the server's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CUTOVER_"))}
    api_url = f"http://{host}:{port}/api"
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_SERVER_API_HOST": host,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_API_URL": api_url,
            "PREFECT_UI_API_URL": api_url,
            **prefect_settings("server"),  # config/prefect-local.toml
        }
    )
    return env


def running_server(home: str | Path) -> PrefectServer | None:
    """The server recorded in ``home`` when its process is still ours and alive (it may
    still be starting), else None."""
    home = Path(home).absolute()
    record = owned_process.read_record(home / RECORD_FILE)
    if not record or not owned_process.is_ours(record.get("pid"), _marker(home)):
        return None
    return PrefectServer(home=home, pid=int(record["pid"]), host=record["host"], port=int(record["port"]), started_s=0.0)


def start_server(
    home: str | Path,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    database_url: str | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> PrefectServer:
    """Start (or reuse) the Prefect server of ``home`` and return it once ``/api/health``
    answers. ``port`` None means the recorded port if free, else any free port.
    Raises OrchestrationError when it does not become healthy in ``timeout_s`` (the
    half-started process is stopped; the last lines of ``<home>/server.log`` are named)."""
    home = Path(home).absolute()
    with _locked(home):
        started = time.monotonic()
        server = running_server(home)
        if server is not None:
            _wait_healthy(server, timeout_s)
            log.info("prefect_server_reused", api_url=server.api_url, pid=server.pid)
            return server
        record = owned_process.read_record(home / RECORD_FILE) or {}
        chosen = _free_port(host, port or record.get("port"))
        if port and chosen != port:
            raise OrchestrationError(f"cannot start the Prefect server on {host}:{port}: the port is in use")
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(chosen), "--analytics-off"]
        pid = owned_process.start(argv, server_environment(home, host, chosen, database_url), _marker(home), home / LOG_FILE)
        owned_process.write_record(home / RECORD_FILE, {"pid": pid, "host": host, "port": chosen})
        server = PrefectServer(home=home, pid=pid, host=host, port=chosen, started_s=0.0)
        try:
            _wait_healthy(server, timeout_s)
        except OrchestrationError:
            owned_process.stop(pid, _marker(home), "prefect server")
            raise
        _write_env_file(server)
        seconds = round(time.monotonic() - started, 2)
        log.info("prefect_server_started", api_url=server.api_url, pid=pid, seconds=seconds)
        return PrefectServer(home=home, pid=pid, host=host, port=chosen, started_s=seconds)


def stop_server(home: str | Path) -> list[int]:
    """Stop the server of ``home`` and everything it started; returns the pids that ran.
    A home without a running server is already stopped."""
    home = Path(home).absolute()
    with _locked(home):
        record = owned_process.read_record(home / RECORD_FILE) or {}
        return owned_process.stop(record.get("pid"), _marker(home), "prefect server")


def _write_env_file(server: PrefectServer) -> None:
    """``<home>/env``: ``source`` it to point ``prefect`` and ``cutover`` commands at this
    server (it holds addresses only, no secret)."""
    lines = "".join(f"export {name}={value}\n" for name, value in server.client_environment().items())
    (server.home / ENV_FILE).write_text(lines)


def _wait_healthy(server: PrefectServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not api_is_healthy(server.api_url, timeout_s=2):
        if not owned_process.is_ours(server.pid, _marker(server.home)):
            raise OrchestrationError(
                f"the Prefect server for {server.home} exited while starting: {_tail(server.home / LOG_FILE)}"
            )
        if time.monotonic() >= deadline:
            raise OrchestrationError(
                f"the Prefect server at {server.api_url} did not answer /health within {timeout_s:.0f}s: {_tail(server.home / LOG_FILE)}"
            )
        time.sleep(0.2)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"(no log at {path})"
    return " | ".join(text[-lines:]) or f"(empty log at {path})"
