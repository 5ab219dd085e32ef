"""Background processes that this package starts, and later recognises and stops.

A process is started in its own session (so it outlives the command that started it and
has its own process group) with ``CUTOVER_PROCESS_OWNER=<marker>`` in its environment. A
recorded pid is trusted only while ``/proc/PID/environ`` still carries that marker: after
a reboot the number may belong to somebody else's process, which must never be signalled.
The ``prefect`` command line names no directory, so the environment is the one place a
marker can live; a process's initial environment stays readable for its owner and root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from cutover.orchestration import OrchestrationError
from cutover.sandbox.processes import alive, descendants, wait_gone

log = structlog.get_logger()

MARKER_VARIABLE = "CUTOVER_PROCESS_OWNER"


def environ_marker(pid: int) -> str | None:
    """The owner marker in the initial environment of ``pid``, or None (no such process,
    no marker, or not readable by us)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = MARKER_VARIABLE.encode() + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def is_ours(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive (not a zombie) and was started with ``marker``."""
    return bool(pid) and alive(pid) and environ_marker(pid) == marker  # type: ignore[arg-type]


def start(argv: Sequence[str], env: Mapping[str, str], marker: str, log_file: Path, cwd: Path | None = None) -> int:
    """Start ``argv`` detached with ``env`` plus the marker; stdin from /dev/null, stdout and
    stderr appended to ``log_file``. Returns the pid, which is also its process group id."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**env, MARKER_VARIABLE: marker},
                cwd=cwd,
            )
        except OSError as exc:
            raise OrchestrationError(f"cannot start {argv[0]}: {exc.strerror}") from exc
    # The process is meant to outlive this Popen object; stop its ResourceWarning.
    proc.returncode = 0
    return proc.pid


def stop(pid: int | None, marker: str, what: str, timeout_s: float = 15) -> list[int]:
    """Stop a process started by :func:`start`, its process group and every descendant
    (a worker's flow-run processes too). SIGTERM first, SIGKILL for what is left after
    ``timeout_s``. Returns the pids that were running; nothing is done when ``pid`` is not
    (or no longer) ours. Raises OrchestrationError when something survives."""
    if not is_ours(pid, marker):
        log.info("process_already_gone", service=what, pid=pid)
        return []
    assert pid is not None
    family = descendants(pid) | {pid}
    _signal_group(pid, signal.SIGTERM)
    for other in family - {pid}:
        _signal(other, signal.SIGTERM)
    left = wait_gone(family, timeout_s)
    if left:
        log.warning("process_killed", service=what, pids=sorted(left))
        _signal_group(pid, signal.SIGKILL)
        for other in left:
            _signal(other, signal.SIGKILL)
        left = wait_gone(left, 5)
    if left:
        raise OrchestrationError(f"{what}: processes {sorted(left)} did not stop")
    log.info("process_stopped", service=what, pid=pid, stopped=len(family))
    return sorted(family)


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON record written by :func:`write_record`, or None when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON atomically (readers never see half a record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(data), indent=2))
    tmp.replace(path)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        return
    _signal(pid, sig)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
