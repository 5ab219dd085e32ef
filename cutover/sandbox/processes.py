"""The sandbox's own processes: starting them detached, recognising them, stopping them.

A recorded pid is only trusted while ``/proc/PID/cmdline`` still contains the marker
(a path inside the sandbox) that was recorded with it: after a reboot or a long pause the
number may belong to somebody else's process, and that one must never be signalled.
Nothing here looks processes up by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from cutover.errors import SandboxError

log = structlog.get_logger()


def cmdline(pid: int) -> str | None:
    """The process's command line joined by spaces, or None when there is no such live process.

    A zombie (exited, not yet reaped) counts as gone: it holds no port and no file.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The state letter follows the parenthesised command name, which may itself hold ')'.
        if stat[stat.rindex(")") + 2] in "ZX":
            _reap(pid)
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None
    # Servers that rewrite their process title (sshd, postgres) may pad with NULs.
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _reap(pid: int) -> None:
    """Collect the exit status when the process happens to be our own child."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_ours(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line mentions ``marker``."""
    if not pid:
        return False
    line = cmdline(pid)
    return line is not None and marker in line


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    return cmdline(pid) is not None


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` in the process tree (children, grandchildren...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in "ZX":
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def start_detached(argv: Sequence[str], log_file: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in a new session (so it outlives the caller and has its own process
    group), stdin from /dev/null, stdout and stderr appended to ``log_file``; returns its pid."""
    with open(log_file, "ab") as out:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start {argv[0]}: {exc.strerror}") from exc
    # Keep the Popen object from warning about a child we deliberately leave running.
    proc.returncode = 0
    return proc.pid


def wait_gone(pids: Iterable[int], timeout_s: float) -> set[int]:
    """Wait until none of ``pids`` is alive; returns those still alive at the timeout."""
    pending = set(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        pending = {p for p in pending if alive(p)}
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.05)


def stop_group(pid: int | None, marker: str, what: str, timeout_s: float = 10) -> None:
    """Stop a process we started with :func:`start_detached`, and its whole process group.

    Does nothing when ``pid`` is not (or no longer) our process. SIGTERM first; SIGKILL for
    whatever is still there after ``timeout_s``. Raises SandboxError if something survives.
    """
    if not is_ours(pid, marker):
        log.info("sandbox_process_already_gone", service=what, pid=pid)
        return
    assert pid is not None
    family = descendants(pid) | {pid}
    _signal_group(pid, signal.SIGTERM)
    # Children that left the group (sshd's per-connection processes call setsid) still
    # belong to the service: they are signalled one by one.
    for other in family - {pid}:
        _signal(other, signal.SIGTERM)
    left = wait_gone(family, timeout_s)
    if left:
        log.warning("sandbox_process_killed", service=what, pids=sorted(left))
        _signal_group(pid, signal.SIGKILL)
        for other in left:
            _signal(other, signal.SIGKILL)
        left = wait_gone(left, 5)
    if left:
        raise SandboxError(f"{what}: processes {sorted(left)} did not stop")
    log.info("sandbox_process_stopped", service=what, pid=pid)


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
