"""A local Python process that runs a remote command and dies by SIGKILL leaves nothing
running on the remote host (the sandbox's real sshd on loopback, so this machine's /proc
shows the remote processes). No cleanup code of ours can run in the killed process: only
the remote watchdog, which sees the sshd serving the connection go, stops the command.

The same guarantee for local programs is in tests/unit/test_process.py (no sandbox needed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# Connects like a step would and runs the command until it is killed. The command comes
# through the environment, so this process's own command line never shows the marker.
_LOCAL_RUNNER = """
import os
from cutover.sandbox.info import SandboxInfo
from cutover.ssh.remote import run_remote
from cutover.ssh.target import SshTarget, connect
ssh = SandboxInfo.load(os.environ["CRASH_SANDBOX"]).ssh
client = connect(SshTarget(ssh.host, ssh.port, ssh.user, ssh.private_key, ssh.host_key))
run_remote(client, os.environ["CRASH_COMMAND"], timeout_s=600)
"""


def sleeps_with(marker: str) -> dict[int, str]:
    """Live ``sleep`` processes that have ``marker`` as an argument: {pid: first argument}."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"sleep" and marker.encode() in argv and state not in (b"Z", b"X"):
            found[int(entry)] = argv[1].decode()
    return found


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_remote_command_does_not_outlive_a_sigkilled_local_process(sandbox, tmp_path: Path) -> None:
    # GNU sleep adds up its arguments: the unique fraction marks this test's sleeps only.
    marker = f"0.{uuid.uuid4().int % 10**15:015d}"
    command = f"sleep 301 {marker} & sleep 302 {marker}; echo never-reached"
    output = tmp_path / "runner.log"
    with output.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-c", _LOCAL_RUNNER],
            env={**os.environ, "CRASH_SANDBOX": sandbox.dir, "CRASH_COMMAND": command},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        running = wait_until(lambda: sorted(sleeps_with(marker).values()) == ["301", "302"], 30)
        assert running, f"the remote sleeps never started: {output.read_text()[-2000:]}"
        assert runner.poll() is None
        os.kill(runner.pid, signal.SIGKILL)
        assert runner.wait(timeout=10) == -signal.SIGKILL
        # The remote watchdog polls once a second for the sshd of the dead connection.
        assert wait_until(lambda: not sleeps_with(marker), 15), sleeps_with(marker)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for pid in sleeps_with(marker):  # a failing test leaves no sleeps behind either
            os.kill(pid, signal.SIGKILL)
