"""Running an external program (pg_dump, pg_restore, pg_dumpall...) so that it cannot
outlive the step that started it.

What a caller may rely on:

* The program runs in a process group of its own (``start_new_session``); every kill goes
  to the whole group, so a shell's background children or pg_dump's ``-j`` workers die
  with it. A program that leaves its group on purpose (``setsid``, a daemon) escapes this,
  as it would escape any supervisor short of a cgroup.
* It is killed (SIGTERM to the group, SIGKILL after ``grace_s``) when its timeout passes,
  when the ``cancel`` event is set, when the waiting thread is interrupted (KeyboardInterrupt,
  or an exception raised into it asynchronously, as Prefect does on a task timeout) and
  when :func:`kill_all` is called, for instance from a flow's cancellation hook. Group
  members that are still running when the program itself exits are killed too. An
  interruption while the program is still being started (inside the fork, before its
  threads run) kills it as well before propagating: :func:`run_program` owns the program
  before starting it, :func:`start_program` until it hands the handle over.
* If this Python process dies without cleaning up (SIGKILL, the OOM killer, a crash in C,
  an orchestrator killing the flow-run process), its programs' groups are SIGKILLed within
  about a second by a guardian process: one small process per Python process, started on
  first use in a session of its own, holding the read end of a pipe whose only write end
  is ours. Each group is registered with it right after the start and deregistered once
  gone (so a reused group id is never hit); end of file on the pipe, or being re-parented,
  means we died. Not covered: a death in the microseconds between a program's start and
  its registration, and a guardian killed along with us (one killed alone is replaced at
  our next program start or end). A forked child of this process gets a guardian of its
  own.
* stdin is never inherited (a CI job or a worker has none worth reading), and neither is
  the environment: a program gets the allow-list of :mod:`cutover.child_env` plus the
  caller's ``env`` (a password travels in a 0600 passfile, see
  :func:`cutover.postgres.passfile.client_environment`), and so does the guardian.
* Its umask is 077: every file it writes (a directory-format dump) is for this user only.
* stderr is read line by line and logged as ``program_output`` events; the values of
  sensitive environment variables given in ``env`` are scrubbed from those lines, and the
  environment itself is never logged (only its variable names).
* A failure raises a :class:`ProgramError`, which is also a TransientStepError (timeout,
  killed by a signal) or a PermanentStepError (non-zero exit, unless the caller lists the
  exit code in ``transient_exit_codes``; cancellation), carrying the last stderr lines.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import structlog

from cutover.child_env import program_environment
from cutover.errors import PermanentStepError, StepError, TransientStepError
from cutover.redaction import REDACTED, is_sensitive_key, redact_text

log = structlog.get_logger()

STDERR_TAIL_LINES = 20
DEFAULT_GRACE_S = 5.0
_POLL_S = 0.05
_MAX_LOGGED_LINE = 4000

Stdin = bytes | int | IO[bytes] | None


@dataclass(frozen=True)
class ProgramResult:
    """How a program ended. ``stdout`` is only filled by ``run_program(capture_stdout=True)``."""

    returncode: int
    duration_s: float
    stderr_tail: str
    stdout: bytes | None = None


class ProgramError(StepError):
    """An external program failed; ``returncode`` is negative when a signal ended it."""

    def __init__(self, message: str, *, program: str, returncode: int | None, stderr_tail: str, duration_s: float) -> None:
        super().__init__(message)
        self.program = program
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.duration_s = duration_s


class ProgramExited(ProgramError, PermanentStepError):
    """The program exited with a non-zero code that the caller did not call transient."""


class ProgramExitedTransient(ProgramError, TransientStepError):
    """The program exited with a code the caller listed in ``transient_exit_codes``."""


class ProgramTimedOut(ProgramError, TransientStepError):
    """The program ran past its timeout and was killed."""


class ProgramKilled(ProgramError, TransientStepError):
    """A signal we did not send ended the program (OOM killer, an operator)."""


class ProgramCancelled(ProgramError, PermanentStepError):
    """We killed the program because the step was cancelled or interrupted."""


# --- the registry of live process groups ---------------------------------------------

_live_lock = threading.Lock()
_live: dict[int, RunningProgram] = {}


def live_process_groups() -> list[int]:
    """The process group ids of programs started here that may still have members."""
    with _live_lock:
        return sorted(_live)


# Set once this process is stopping (a cancelled flow run): every program, local or remote,
# started before or after, is stopped as if its own cancel event were set.
STOPPING = threading.Event()


def stop_everything(grace_s: float = DEFAULT_GRACE_S) -> int:
    """Cancel every program of this process for good, local ones and (through
    :data:`STOPPING`, watched by ``cutover.ssh.remote_process``) remote ones; returns how
    many local groups were signalled. For the flow's cancellation: the steps' own threads
    go on until their programs end, so their programs are ended here."""
    STOPPING.set()
    return kill_all(grace_s)


def kill_all(grace_s: float = DEFAULT_GRACE_S) -> int:
    """Kill every program started by this process that is still running (its whole group):
    SIGTERM to all at once, SIGKILL to what is left after ``grace_s``. Returns how many
    groups were signalled. Safe to call from any thread and more than once."""
    with _live_lock:
        programs = list(_live.values())
    for program in programs:
        program._mark_stopped("cancelled")
        _signal_group(program.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_group_alive(p.pid) for p in programs):
        time.sleep(_POLL_S)
    for program in programs:
        if _group_alive(program.pid):
            _signal_group(program.pid, signal.SIGKILL)
    for program in programs:
        program._finished.wait(grace_s + 5)
    if programs:
        log.warning("programs_killed", count=len(programs))
    return len(programs)


# --- the guardian: kills our groups when this process dies without cleaning up ----------

# Runs in ``python -I -S`` (no site, no imports beyond the standard library) with the pipe
# as its stdin. Lines: "+PGID" registers a group, "-PGID" forgets it. On end of file, or
# once re-parented (a leaked write end in some forked process would hide the end of file),
# it SIGKILLs what is registered: nobody is left to read the programs' output anyway.
_GUARDIAN_CODE = r"""
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent = int(sys.argv[2])
groups = set()
pending = b""
while True:
    orphan = os.getppid() != parent
    if not select.select([0], [], [], 0 if orphan else 1.0)[0]:
        if orphan:
            break  # and everything the parent wrote has been read
        continue
    data = os.read(0, 4096)
    if not data:
        break
    *lines, pending = (pending + data).split(b"\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""
GUARDIAN_MARKER = "cutover-process-guardian"


class _Guardian:
    """This process's end of the guardian: starts it on first use, tells it about groups,
    replaces it if it died. Thread-safe; never raises (a missing guardian costs only the
    crash protection, which is logged)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None  # the pipe's write end, never inherited
        self._groups: set[int] = set()
        self._closed = False  # after close() at exit: no new guardian

    def ensure(self) -> None:
        """Start the guardian now, so that registering a program right after its start
        is one write and not a process start."""
        with self._lock:
            if self._fd is None and not self._closed:
                self._start()

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self._send(f"-{pgid}\n")

    def close(self) -> None:
        """End of file for the guardian (it kills what is still registered) and reap it."""
        with self._lock:
            self._closed = True
            self._close_fd()
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                self._proc = None

    def after_fork_in_child(self) -> None:
        # The write end belongs to the parent's guardian: keeping it open would hide the
        # parent's death. A child that starts programs gets its own guardian.
        self._lock = threading.Lock()
        self._close_fd()
        self._proc = None
        self._groups = set()
        self._closed = False

    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None and self._fd is not None else None

    def _send(self, line: str) -> None:
        if self._closed or (self._fd is None and not self._start()):
            return
        try:
            os.write(self._fd, line.encode())  # type: ignore[arg-type]
        except OSError:
            # The guardian died (someone killed it); a new one gets every live group.
            log.warning("program_guardian_lost", pid=self._proc.pid if self._proc else None)
            self._close_fd()
            self._start()

    def _start(self) -> bool:
        """Start a guardian and register every known group with it; False if impossible."""
        if self._proc is not None:
            self._proc.poll()  # reap a dead predecessor
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _GUARDIAN_CODE, GUARDIAN_MARKER, str(os.getpid())],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outside our group and the programs' groups
                close_fds=True,
                env=program_environment(),  # it needs no variable of ours, least of all a secret
                cwd="/",  # pins no directory of ours
            )
        except OSError as exc:
            os.close(write_fd)
            self._proc = None
            log.warning("program_guardian_unavailable", error=exc.strerror or str(exc))
            return False
        finally:
            os.close(read_fd)
        self._fd = write_fd
        if self._groups:
            try:
                os.write(write_fd, "".join(f"+{g}\n" for g in sorted(self._groups)).encode())
            except OSError:
                self._close_fd()
                return False
        return True

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


_guardian = _Guardian()
os.register_at_fork(after_in_child=_guardian.after_fork_in_child)


def guard_group(pgid: int) -> None:
    """Have the guardian SIGKILL process group ``pgid`` if this process dies first: for a
    program started here without :func:`start_program` (in a session of its own, as
    ``start_new_session=True`` makes it). Call :func:`unguard_group` once it is gone."""
    _guardian.ensure()
    _guardian.add(pgid)


def unguard_group(pgid: int) -> None:
    """Forget a group given to :func:`guard_group` (it ended; its id may be reused)."""
    _guardian.remove(pgid)


def guardian_pid() -> int | None:
    """The pid of this process's guardian, or None before the first program (or when it
    could not be started)."""
    return _guardian.pid()


# An interpreter that exits normally (or on an unhandled exception) takes its programs
# along, then lets its guardian go (atexit runs the last registered first).
atexit.register(_guardian.close)
atexit.register(kill_all, 1.0)


# --- starting, watching and stopping one program --------------------------------------


class RunningProgram:
    """A started program. Read ``stdout`` (when started with a stdout pipe), then call
    :meth:`wait`; call :meth:`kill` to stop it early. Used as a context manager it kills
    whatever is still running on exit."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        timeout_s: float | None,
        stdin: Stdin,
        cwd: str | None,
        log_name: str,
        cancel: threading.Event | None,
        grace_s: float,
        transient_exit_codes: Collection[int],
        stdout_mode: Literal["pipe", "log", "capture"],
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.program = os.path.basename(self.argv[0])
        self.log_name = log_name
        self._grace_s = grace_s
        self._transient_exit_codes = frozenset(transient_exit_codes)
        self._stdout_mode = stdout_mode
        self._scrub = sorted(
            {v for k, v in (env or {}).items() if is_sensitive_key(k) and v and len(v) >= 4}, key=len, reverse=True
        )
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._captured: list[bytes] = []
        self._stop_reason: str | None = None
        self._finished = threading.Event()
        self._kill_lock = threading.Lock()

        self._cancel = cancel
        self._stdin = stdin
        self._env_names = sorted(env) if env else []
        self._launched = False  # set the instant the program's Popen is ours
        self.stdout: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes]
        self.pid: int

        # Built from an allow-list (cutover.child_env): the flow run's environment holds the
        # estate's secrets, and inherited PG* variables (PGSERVICE, PGPASSFILE...) could point
        # the program somewhere else than the caller said.
        if isinstance(stdin, bytes):
            stdin_arg: Any = subprocess.PIPE
        elif stdin is None:
            stdin_arg = subprocess.DEVNULL
        else:
            stdin_arg = stdin
        self._popen_kwargs: dict[str, Any] = {
            "stdin": stdin_arg,
            "stdout": subprocess.PIPE,
            "cwd": cwd,
            "env": program_environment(env),
            "start_new_session": True,
            "close_fds": True,
            "umask": 0o077,  # what it writes (pg_dump -Fd: the estate's data) is for this user only
        }
        self._timeout_s = timeout_s

    def _start(self) -> None:
        """Start the program, register it, start its threads. An exception at any point of
        this (a KeyboardInterrupt, an exception raised into the thread by Prefect, or the
        program not starting) leaves nothing running: a program already launched is
        killed with its group before the exception propagates."""
        _guardian.ensure()
        # stderr is a pipe of ours rather than Popen's: if the start is interrupted between
        # the fork and Popen handing back the child (the interruption is raised the moment
        # the fork returns, before Popen stores the pid), that pipe is how the child is found.
        err_read, err_write = os.pipe()
        stderr = open(err_read, "rb")  # noqa: SIM115 - the stderr reader thread closes it
        stderr_pipe = f"pipe:[{os.fstat(err_read).st_ino}]"
        self._started = time.monotonic()
        self._deadline = None if self._timeout_s is None else self._started + self._timeout_s
        try:
            try:
                try:
                    self._proc = subprocess.Popen(self.argv, stderr=err_write, **self._popen_kwargs)
                except OSError as exc:
                    if exc.errno is None:
                        raise  # not Popen's: raised into this thread (Prefect's task timeout is a TimeoutError)
                    raise PermanentStepError(f"{self.log_name}: cannot start {self.program}: {exc.strerror}") from exc
                finally:
                    os.close(err_write)
                self.pid = self._proc.pid
                self._launched = True
            except BaseException as exc:
                stderr.close()
                # Popen reaps a child that failed to exec before it raises: no retry then
                _kill_unclaimed_child(stderr_pipe, retry_s=0.0 if isinstance(exc, PermanentStepError) else 0.1)
                raise
            _guardian.add(self.pid)
            with _live_lock:
                _live[self.pid] = self
            log.info(
                "program_started",
                program=self.program,
                name=self.log_name,
                pid=self.pid,
                argv=self.argv,
                env_names=self._env_names,
                timeout_s=self._timeout_s,
            )

            self._readers = [threading.Thread(target=self._read_lines, args=(stderr, "stderr"), daemon=True)]
            if self._stdout_mode == "pipe":
                self.stdout = self._proc.stdout
            elif self._stdout_mode == "log":
                self._readers.append(threading.Thread(target=self._read_lines, args=(self._proc.stdout, "stdout"), daemon=True))
            else:
                self._readers.append(threading.Thread(target=self._capture, args=(self._proc.stdout,), daemon=True))
            if isinstance(self._stdin, bytes):
                self._readers.append(threading.Thread(target=self._feed, args=(self._proc.stdin, self._stdin), daemon=True))
            for reader in self._readers:
                reader.start()
            self._watchdog = threading.Thread(target=self._watch, args=(self._cancel,), name=f"watch-{self.pid}", daemon=True)
            self._watchdog.start()
        except BaseException:
            if self._launched:
                self._abandon()
            raise

    # -- public --

    @property
    def returncode(self) -> int | None:
        """The exit code once the program has ended (negative: the signal that ended it)."""
        return self._proc.returncode if self._finished.is_set() else None

    def wait(self, *, check: bool = True) -> ProgramResult:
        """Block until the program and its group have ended; return how it ended.

        Raises ProgramTimedOut / ProgramCancelled / ProgramKilled whenever those happened,
        and, when ``check`` is true, ProgramExited (or ProgramExitedTransient) for a
        non-zero exit. If the waiting thread is interrupted, the group is killed before the
        interruption propagates."""
        try:
            while not self._finished.wait(_POLL_S):
                pass
        except BaseException:
            self._mark_stopped("cancelled")
            self.kill()
            raise
        for reader in self._readers:
            reader.join(timeout=5)
        return self._result(check)

    def kill(self) -> None:
        """Stop the program and every member of its group now (SIGTERM, then SIGKILL after
        the grace period) and reap it. Idempotent; returns once the group is gone."""
        self._mark_stopped("cancelled")
        self._terminate_group()
        self._finished.wait(self._grace_s + 5)

    def __enter__(self) -> RunningProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._launched and not self._finished.is_set():
            self.kill()

    # -- internals --

    def _mark_stopped(self, reason: str) -> None:
        if self._stop_reason is None and not self._finished.is_set():
            self._stop_reason = reason

    def _abandon(self) -> None:
        """Undo a start interrupted after the launch: kill the group, reap the program and
        deregister it, whether or not its watchdog was started (Popen serialises the two
        reapers; the deregistration is idempotent)."""
        self._mark_stopped("cancelled")
        try:
            self._terminate_group()
            try:
                self._proc.wait(timeout=self._grace_s + 5)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._forget()

    def _forget(self) -> None:
        with _live_lock:
            _live.pop(self.pid, None)
        _guardian.remove(self.pid)
        self._duration = time.monotonic() - self._started
        self._finished.set()

    def _terminate_group(self) -> None:
        with self._kill_lock:
            if not _group_alive(self.pid):
                return
            _signal_group(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + self._grace_s
            while time.monotonic() < deadline:
                if not _group_alive(self.pid):  # an unreaped leader is a zombie and does not count
                    return
                time.sleep(_POLL_S)
            _signal_group(self.pid, signal.SIGKILL)
            log.warning("program_force_killed", program=self.program, name=self.log_name, pid=self.pid)

    def _watch(self, cancel: threading.Event | None) -> None:
        """The only thread that reaps the program: it enforces the deadline and the cancel
        event, then clears the group of stragglers and deregisters it."""
        try:
            while True:
                try:
                    self._proc.wait(timeout=_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if self._stop_reason is not None:
                    continue  # somebody is killing it already; keep reaping
                if (cancel is not None and cancel.is_set()) or STOPPING.is_set():
                    self._mark_stopped("cancelled")
                    self._terminate_group()
                elif self._deadline is not None and time.monotonic() >= self._deadline:
                    self._mark_stopped("timeout")
                    self._terminate_group()
            if _group_alive(self.pid):
                # The program ended but left members of its group behind.
                log.warning("program_left_children", program=self.program, name=self.log_name, pid=self.pid)
                self._terminate_group()
        finally:
            self._forget()

    def _read_lines(self, stream: IO[bytes] | None, name: str) -> None:
        if stream is None:
            return
        with stream:
            for raw in iter(stream.readline, b""):
                line = self._clean(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if not line:
                    continue
                if name == "stderr":
                    self._tail.append(line)
                log.info("program_output", program=self.program, name=self.log_name, stream=name, line=line[:_MAX_LOGGED_LINE])

    def _capture(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with stream:
            for chunk in iter(lambda: stream.read(65536), b""):
                self._captured.append(chunk)

    @staticmethod
    def _feed(stream: IO[bytes] | None, data: bytes) -> None:
        if stream is None:
            return
        try:
            with stream:
                stream.write(data)
        except (BrokenPipeError, ValueError):
            pass  # the program stopped reading; its exit code tells the rest

    def _clean(self, line: str) -> str:
        for value in self._scrub:
            line = line.replace(value, REDACTED)
        return redact_text(line)

    def _result(self, check: bool) -> ProgramResult:
        code = self._proc.returncode
        duration = round(self._duration, 3)
        tail = "\n".join(self._tail)
        stdout = b"".join(self._captured) if self._stdout_mode == "capture" else None
        log.info(
            "program_finished",
            program=self.program,
            name=self.log_name,
            pid=self.pid,
            returncode=code,
            duration_s=duration,
            stopped=self._stop_reason,
        )
        last = f": {self._tail[-1]}" if self._tail else ""
        attrs: dict[str, Any] = {"program": self.program, "returncode": code, "stderr_tail": tail, "duration_s": duration}
        if self._stop_reason == "timeout":
            raise ProgramTimedOut(
                f"{self.log_name}: {self.program} timed out after {self._timeout_s}s and was killed{last}", **attrs
            )
        if self._stop_reason == "cancelled":
            raise ProgramCancelled(f"{self.log_name}: {self.program} was cancelled and killed{last}", **attrs)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            raise ProgramKilled(f"{self.log_name}: {self.program} was killed by {name}{last}", **attrs)
        if code != 0 and check:
            cls = ProgramExitedTransient if code in self._transient_exit_codes else ProgramExited
            raise cls(f"{self.log_name}: {self.program} exited with code {code}{last}", **attrs)
        return ProgramResult(returncode=code, duration_s=duration, stderr_tail=tail, stdout=stdout)


def start_program(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None,
    stdin: Stdin = None,
    cwd: str | None = None,
    log_name: str,
    cancel: threading.Event | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    transient_exit_codes: Collection[int] = (),
) -> RunningProgram:
    """Start ``argv`` with its stdout as a pipe the caller reads (``handle.stdout``), e.g. to
    stream pg_dump's output into an SSH channel. The timeout and ``cancel`` are enforced
    while the caller reads; call ``wait()`` afterwards for the outcome. The program's
    environment is ``env`` on top of the allow-list of :mod:`cutover.child_env`.
    Raises PermanentStepError when the program cannot be started."""
    program = RunningProgram(
        argv,
        env=env,
        timeout_s=timeout_s,
        stdin=stdin,
        cwd=cwd,
        log_name=log_name,
        cancel=cancel,
        grace_s=grace_s,
        transient_exit_codes=transient_exit_codes,
        stdout_mode="pipe",
    )
    try:
        program._start()
    except BaseException:
        # _start cleans up after itself; this is for an interruption raised the instant it
        # returns, before the caller holds the handle
        program.__exit__()
        raise
    return program


def run_program(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None,
    stdin: Stdin = None,
    cwd: str | None = None,
    log_name: str,
    cancel: threading.Event | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    transient_exit_codes: Collection[int] = (),
    capture_stdout: bool = False,
    check: bool = True,
) -> ProgramResult:
    """Run ``argv`` to completion and return how it ended (see the module docstring for
    the guarantees). stdout is logged line by line like stderr, or returned in
    ``result.stdout`` with ``capture_stdout=True``. With ``check=False`` a non-zero exit is
    returned instead of raised; timeouts and cancellation always raise."""
    program = RunningProgram(
        argv,
        env=env,
        timeout_s=timeout_s,
        stdin=stdin,
        cwd=cwd,
        log_name=log_name,
        cancel=cancel,
        grace_s=grace_s,
        transient_exit_codes=transient_exit_codes,
        stdout_mode="capture" if capture_stdout else "log",
    )
    with program:  # entered before the start: no moment where a started program has no owner
        program._start()
        return program.wait(check=check)


# --- process groups -----------------------------------------------------------------


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError:
        # A member changed its credentials (setuid); nothing we may do about it.
        log.warning("program_group_not_signalled", pgid=pgid, signal=sig.name)


def _kill_unclaimed_child(stderr_pipe: str, retry_s: float) -> None:
    """Kill (with its group) and reap the child of ours whose stderr is ``stderr_pipe``
    ("pipe:[inode]"), if there is one: a program whose start was interrupted after the fork
    but before Popen gave it to us. The pipe is ours alone, so no other thread's child can
    match. Popen forks with vfork here, so the child has exec'd (its stderr is in place) by
    the time the interruption is raised; ``retry_s`` is for a plain fork."""
    me = os.getpid()
    deadline = time.monotonic() + retry_s
    while True:
        for pid, fields in _processes():
            try:
                if int(fields[1]) != me or os.readlink(f"/proc/{pid}/fd/2") != stderr_pipe:
                    continue
            except (OSError, ValueError, IndexError):
                continue
            _signal_group(pid, signal.SIGKILL)  # its group: it is a session leader (start_new_session)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # reaped by the Popen object we never got (its __del__ hands it to subprocess)
            log.warning("program_killed_at_start", pid=pid)
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def _processes() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...)
    of every process there is; nothing where /proc cannot be read."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        yield int(entry), stat[stat.rfind(b")") + 2 :].split()


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running. Zombies do not count: an
    orphaned member may wait for a reaper that a container's PID 1 never is."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return any(len(f) >= 3 and int(f[2]) == pgid and f[0] not in (b"Z", b"X") for _, f in _processes())
