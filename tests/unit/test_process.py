"""run_program / start_program against real child processes: nothing outlives a step."""

from __future__ import annotations

import _thread
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cutover import process
from cutover.errors import PermanentStepError, TransientStepError
from cutover.process import (
    ProgramCancelled,
    ProgramExited,
    ProgramExitedTransient,
    ProgramKilled,
    ProgramTimedOut,
    RunningProgram,
    guardian_pid,
    kill_all,
    live_process_groups,
    run_program,
    start_program,
)

# Two background sleeps whose pids are written to a file, then a foreground sleep: the
# shape of a program with children that a plain Popen.kill() would leave behind.
_TREE = "sleep 100 & echo $! >> {f}; sleep 100 & echo $! >> {f}; echo $$ >> {f}; sleep 100"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def _pids(path: Path, count: int = 3) -> list[int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            pids = [int(x) for x in path.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.02)
    raise AssertionError(f"the program did not write {count} pids to {path}")


def _assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 10  # a loaded machine may take a while to run the kill
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.02)
    assert [p for p in pids if _running(p)] == []


def _tree_argv(tmp_path: Path) -> tuple[list[str], Path]:
    pidfile = tmp_path / "pids"
    return ["sh", "-c", _TREE.format(f=pidfile)], pidfile


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    argv, pidfile = _tree_argv(tmp_path)
    started = time.monotonic()
    with pytest.raises(ProgramTimedOut) as caught:
        run_program(argv, timeout_s=0.5, log_name="tree", grace_s=1)
    assert isinstance(caught.value, TransientStepError)
    assert time.monotonic() - started < 3
    pids = _pids(pidfile)
    _assert_all_gone(pids)
    assert live_process_groups() == []


def test_cancel_event_kills_the_whole_process_group(tmp_path: Path) -> None:
    argv, pidfile = _tree_argv(tmp_path)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(ProgramCancelled) as caught:
        run_program(argv, timeout_s=60, log_name="tree", cancel=cancel, grace_s=1)
    assert isinstance(caught.value, PermanentStepError)
    _assert_all_gone(_pids(pidfile))


def _waits_for_a_program(thread_id: int) -> bool:
    frame = sys._current_frames().get(thread_id)
    while frame is not None and frame.f_code is not RunningProgram.wait.__code__:
        frame = frame.f_back
    return frame is not None


def _interrupt_main_once_it_waits() -> list[bool]:
    """Ctrl-C for the main thread (``_thread.interrupt_main``) as soon as it is inside
    RunningProgram.wait, not after a fixed delay: on a loaded machine the start can take
    longer than any delay, and an interruption during the start is another test's."""
    main = threading.main_thread().ident
    assert main is not None
    fired: list[bool] = []

    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _waits_for_a_program(main):
                fired.append(True)
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    return fired


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """interrupt_main() runs the SIGINT handler (it does nothing under SIG_IGN or SIG_DFL);
    make it Python's default, which raises KeyboardInterrupt, whatever ran before."""
    assert threading.current_thread() is threading.main_thread()  # only the main thread handles signals
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("default_sigint")
def test_keyboard_interrupt_while_waiting_kills_the_group_and_propagates(tmp_path: Path) -> None:
    argv, pidfile = _tree_argv(tmp_path)
    fired = _interrupt_main_once_it_waits()
    with pytest.raises(KeyboardInterrupt):
        run_program(argv, timeout_s=60, log_name="tree", grace_s=1)
    assert fired == [True]
    _assert_all_gone(_pids(pidfile))
    assert live_process_groups() == []


class _PopenInterruptedOnReturn(subprocess.Popen):  # type: ignore[type-arg]
    """The child is forked, then a KeyboardInterrupt is raised before the caller holds the
    Popen object: as when Ctrl-C arrives during the fork (Python raises it the moment the
    fork returns, before Popen stores the pid)."""

    pids: list[int] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-overload]
        self.pids.append(self.pid)
        raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["in-the-fork", "after-the-launch"])
@pytest.mark.parametrize("how", ["run_program", "start_program"])
def test_keyboard_interrupt_while_starting_kills_the_group_and_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, how: str
) -> None:
    pids: list[int] = []
    process._guardian.ensure()  # started with the real Popen, if no earlier test started it
    if where == "in-the-fork":
        monkeypatch.setattr(_PopenInterruptedOnReturn, "pids", pids)
        monkeypatch.setattr(subprocess, "Popen", _PopenInterruptedOnReturn)
    else:
        real_add = process._guardian.add

        def add(pgid: int) -> None:  # registered, then interrupted before the threads start
            pids.append(pgid)
            real_add(pgid)
            raise KeyboardInterrupt

        monkeypatch.setattr(process._guardian, "add", add)
    with pytest.raises(KeyboardInterrupt):
        if how == "run_program":
            run_program(["sh", "-c", "sleep 100 & sleep 100"], timeout_s=60, log_name="tree", grace_s=1)
        else:
            start_program(["sh", "-c", "sleep 100 & sleep 100"], timeout_s=60, log_name="tree", grace_s=1)
    monkeypatch.undo()
    assert len(pids) == 1
    _assert_groups_die({pids[0]: []})  # the whole group, killed before the interruption propagated
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # and reaped
    assert live_process_groups() == []


def test_exception_raised_into_the_waiting_thread_kills_the_group(tmp_path: Path) -> None:
    """Prefect times out a sync task by raising an exception into its thread."""
    argv, pidfile = _tree_argv(tmp_path)
    seen: list[BaseException] = []

    def step() -> None:
        try:
            run_program(argv, timeout_s=60, log_name="tree", grace_s=1)
        except BaseException as exc:
            seen.append(exc)

    worker = threading.Thread(target=step)
    worker.start()
    pids = _pids(pidfile)
    # Raised once it waits, not while it starts its threads: on 3.11 a thread being started
    # shares its creator's id until it runs, and the exception could go to it instead.
    deadline = time.monotonic() + 20
    while not _waits_for_a_program(worker.ident or 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident or 0), ctypes.py_object(TimeoutError)) == 1
    worker.join(10)
    assert not worker.is_alive()
    assert len(seen) == 1 and isinstance(seen[0], TimeoutError)
    _assert_all_gone(pids)


def test_kill_all_stops_every_started_program(tmp_path: Path) -> None:
    first, first_pids = _tree_argv(tmp_path / "a")
    (tmp_path / "a").mkdir()
    second = start_program(["sh", "-c", "sleep 100"], timeout_s=60, log_name="other")
    handle = start_program(first, timeout_s=60, log_name="tree")
    pids = [*_pids(first_pids), second.pid]
    assert set(live_process_groups()) >= {handle.pid, second.pid}
    assert kill_all(grace_s=1) >= 2
    _assert_all_gone(pids)
    with pytest.raises(ProgramCancelled):
        handle.wait()
    assert live_process_groups() == []


def test_children_left_behind_by_a_finished_program_are_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run_program(["sh", "-c", f"sleep 100 & echo $! > {pidfile}; exit 0"], timeout_s=10, log_name="leaky", grace_s=1)
    assert result.returncode == 0
    _assert_all_gone(_pids(pidfile, 1))


def test_term_ignoring_program_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    argv = ["sh", "-c", f"trap '' TERM; echo $$ > {pidfile}; while :; do sleep 0.05; done"]
    started = time.monotonic()
    with pytest.raises(ProgramTimedOut):
        run_program(argv, timeout_s=0.3, log_name="stubborn", grace_s=0.5)
    assert 0.7 <= time.monotonic() - started < 5
    _assert_all_gone(_pids(pidfile, 1))


def test_non_zero_exit_is_permanent_with_the_last_stderr_lines() -> None:
    with pytest.raises(ProgramExited) as caught:
        run_program(
            ["sh", "-c", "echo first >&2; echo 'pg_restore: error: boom' >&2; exit 3"], timeout_s=10, log_name="restore bzk"
        )
    error = caught.value
    assert isinstance(error, PermanentStepError)
    assert error.returncode == 3
    assert error.stderr_tail == "first\npg_restore: error: boom"
    assert str(error) == "restore bzk: sh exited with code 3: pg_restore: error: boom"


def test_caller_may_call_an_exit_code_transient() -> None:
    with pytest.raises(ProgramExitedTransient) as caught:
        run_program(["sh", "-c", "exit 75"], timeout_s=10, log_name="t", transient_exit_codes={75})
    assert isinstance(caught.value, TransientStepError)


def test_check_false_returns_the_exit_code() -> None:
    result = run_program(["sh", "-c", "echo nope >&2; exit 2"], timeout_s=10, log_name="t", check=False)
    assert (result.returncode, result.stderr_tail) == (2, "nope")


def test_death_by_a_foreign_signal_is_transient(tmp_path: Path) -> None:
    handle = start_program(["sh", "-c", "echo ready >&2; exec sleep 100"], timeout_s=60, log_name="victim")
    time.sleep(0.2)
    os.kill(handle.pid, signal.SIGKILL)
    with pytest.raises(ProgramKilled, match="killed by SIGKILL"):
        handle.wait()


def test_stdin_bytes_are_fed_and_stdout_captured() -> None:
    result = run_program(["cat"], stdin=b"hello\nworld\n", timeout_s=10, log_name="cat", capture_stdout=True)
    assert result.stdout == b"hello\nworld\n"


def test_stdin_is_not_inherited() -> None:
    result = run_program(["cat"], timeout_s=10, log_name="cat", capture_stdout=True)
    assert result.stdout == b""


def test_stderr_lines_are_logged_with_sensitive_env_values_scrubbed() -> None:
    secret = "s3cr3t-Pa55word"
    with capture_logs() as logs:
        run_program(
            ["sh", "-c", 'echo "auth failed with $PGPASSWORD for $PGUSER" >&2'],
            env={"PGPASSWORD": secret, "PGUSER": "migrate"},
            timeout_s=10,
            log_name="pg_dump bzk",
        )
    lines = [e for e in logs if e["event"] == "program_output"]
    assert [(e["program"], e["name"], e["line"]) for e in lines] == [
        ("sh", "pg_dump bzk", "auth failed with [redacted] for migrate")
    ]
    assert secret not in repr(logs)
    started = next(e for e in logs if e["event"] == "program_started")
    assert started["env_names"] == ["PGPASSWORD", "PGUSER"]


def test_inherited_pg_variables_do_not_reach_a_program_given_an_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGDATABASE", "somewhere_else")
    result = run_program(
        ["sh", "-c", 'echo "${PGDATABASE:-unset} $PGHOST"'],
        env={"PGHOST": "db1"},
        timeout_s=10,
        log_name="env",
        capture_stdout=True,
    )
    assert result.stdout == b"unset db1\n"


def test_streamed_stdout_is_cut_off_by_the_timeout(tmp_path: Path) -> None:
    handle = start_program(
        ["sh", "-c", "while :; do echo chunk; sleep 0.01; done"], timeout_s=0.5, log_name="producer", grace_s=1
    )
    assert handle.stdout is not None
    received = handle.stdout.read()  # returns at EOF, i.e. once the group is killed
    assert received.startswith(b"chunk\n")
    with pytest.raises(ProgramTimedOut):
        handle.wait()


def test_streamed_program_result_after_reading_all_stdout() -> None:
    with start_program(["sh", "-c", "seq 1 3"], timeout_s=10, log_name="seq") as handle:
        assert handle.stdout is not None
        assert handle.stdout.read() == b"1\n2\n3\n"
        assert handle.wait().returncode == 0


def test_missing_program_is_a_permanent_error() -> None:
    with pytest.raises(PermanentStepError, match="cannot start"):
        run_program(["/nonexistent/pg_dump"], timeout_s=10, log_name="t")


# --- a Python process killed with SIGKILL: its guardian kills its programs' groups ----------

# Run in a child interpreter: start programs that fork (a shell with a background child),
# wait until every member runs, report their pids, then die by SIGKILL, so that no atexit
# hook, finally block or signal handler of ours can run.
_CRASHING_PARENT = """
import os, signal, sys, time
from cutover.process import guardian_pid, start_program

def members(pgid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat", "rb").read()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry))
    return found

def start():
    handle = start_program(["sh", "-c", "sleep 300 & sleep 300"], timeout_s=600, log_name="orphan-candidate")
    while len(members(handle.pid)) < 3:  # sh and both sleeps
        time.sleep(0.01)
    return handle.pid

groups = [start()]
guardians = [guardian_pid()]
if sys.argv[1] == "replace-guardian":
    os.kill(guardians[0], signal.SIGKILL)
    while open(f"/proc/{guardians[0]}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    groups.append(start())  # its registration finds the guardian gone and starts another
    guardians.append(guardian_pid())
for pgid in groups:
    print("GROUP", pgid, *members(pgid), flush=True)
print("GUARDIANS", *guardians, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry))
    return found


def _crash_a_parent(mode: str) -> tuple[dict[int, list[int]], list[int]]:
    """Run the crashing parent; return {pgid: member pids seen before the kill} and the
    guardian pids it had."""
    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_PARENT, mode], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    groups: dict[int, list[int]] = {}
    guardians: list[int] = []
    for line in done.stdout.splitlines():
        word, *numbers = line.split()
        if word == "GROUP":
            groups[int(numbers[0])] = [int(n) for n in numbers[1:]]
        elif word == "GUARDIANS":
            guardians = [int(n) for n in numbers]
    assert groups and guardians, done.stdout
    return groups, guardians


def _assert_groups_die(groups: dict[int, list[int]]) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_group_members(g) for g in groups):
        time.sleep(0.05)
    left = {g: _group_members(g) for g in groups}
    for pgid, members in left.items():
        if members:
            os.killpg(pgid, signal.SIGKILL)  # a failing test leaves no orphans either
    assert left == {g: [] for g in groups}


@pytest.mark.parametrize("mode", ["plain", "replace-guardian"])
def test_programs_do_not_outlive_a_sigkilled_python_process(mode: str) -> None:
    groups, guardians = _crash_a_parent(mode)
    assert all(len(members) == 3 for members in groups.values()), groups  # the forks had happened
    assert len(set(guardians)) == len(guardians) == len(groups)
    _assert_groups_die(groups)
    # ... and the guardian went with them.
    _assert_all_gone(guardians)


def test_the_guardian_is_one_small_process_outside_every_group_and_without_our_stdin() -> None:
    with (
        start_program(["sleep", "100"], timeout_s=60, log_name="one") as first,
        start_program(["sleep", "100"], timeout_s=60, log_name="two") as second,
    ):
        guardian = guardian_pid()
        assert guardian is not None
        stat = Path(f"/proc/{guardian}/stat").read_bytes()
        pgrp = int(stat[stat.rfind(b")") + 2 :].split()[2])
        assert pgrp not in (first.pid, second.pid, os.getpgrp())
        fds = {fd: os.readlink(f"/proc/{guardian}/fd/{fd}") for fd in os.listdir(f"/proc/{guardian}/fd")}
        assert fds["0"].startswith("pipe:") and fds["0"] != os.readlink("/proc/self/fd/0")
        assert (fds["1"], fds["2"], len(fds)) == ("/dev/null", "/dev/null", 3)
        first.kill()
        second.kill()
    assert guardian_pid() == guardian  # one per process, not one per program
