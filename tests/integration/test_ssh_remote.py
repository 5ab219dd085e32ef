"""Remote commands and streams over the sandbox's real OpenSSH server: pinned host keys,
output and exit status, secrets kept off command lines and logs, and a remote process
group that dies on cancel, timeout and a broken connection."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import shlex
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from structlog.testing import capture_logs

from cutover.errors import PermanentStepError, TransientStepError
from cutover.ssh.remote import run_remote
from cutover.ssh.stream import stream_to_remote
from cutover.ssh.target import SshTarget, connect

pytestmark = pytest.mark.integration


@pytest.fixture
def target(sandbox) -> SshTarget:
    ssh = sandbox.ssh
    return SshTarget(ssh.host, ssh.port, ssh.user, ssh.private_key, ssh.host_key)


@pytest.fixture
def client(target: SshTarget) -> Iterator[paramiko.SSHClient]:
    client = connect(target)
    yield client
    client.close()


@pytest.fixture
def remote_dir(sandbox, target: SshTarget) -> Iterator[str]:
    path = f"{sandbox.ssh.work_dir}/test-{uuid.uuid4().hex[:12]}"
    with connect(target) as setup:
        assert run_remote(setup, f"mkdir -p {shlex.quote(path)}", timeout_s=30).exit_status == 0
    yield path
    with connect(target) as cleanup:
        run_remote(cleanup, f"rm -rf {shlex.quote(path)}", timeout_s=30)


def processes_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line holds ``marker``. The sandbox's SSH
    host is this machine, so its /proc shows the remote processes."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def started(marker: str) -> bool:
    """Both children of :func:`group_command` are running (not just the shells above them)."""
    args: set[bytes] = set()
    for pid in processes_with(marker):
        try:
            args.update(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        except OSError:
            continue
    return {f"{marker}-bg".encode(), f"{marker}-fg".encode()} <= args


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def group_command(marker: str) -> str:
    """A command that leaves a background child and a foreground child, both long-lived and
    both carrying ``marker`` in their command line."""
    return f"sh -c 'sleep 300' {marker}-bg & sh -c 'sleep 300' {marker}-fg; echo never-reached"


# --- connecting ----------------------------------------------------------------------------


def test_wrong_pinned_host_key_refuses_the_connection(target: SshTarget, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    impostor_pin = (tmp_path / "other.pub").read_text()
    wrong = SshTarget(target.host, target.port, target.user, target.private_key, impostor_pin)
    with pytest.raises(PermanentStepError, match=rf"host key of {target.host}:{target.port} does not match the pinned key"):
        connect(wrong)


def test_key_the_server_does_not_know_is_refused_permanently(target: SshTarget, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    stranger = SshTarget(target.host, target.port, target.user, (tmp_path / "stranger").read_text(), target.host_key)
    with pytest.raises(PermanentStepError, match=r"authentication .* was refused") as caught:
        connect(stranger)
    assert "PRIVATE KEY" not in str(caught.value)


# --- running commands ----------------------------------------------------------------------


def test_remote_command_returns_output_and_exit_status(client: paramiko.SSHClient) -> None:
    result = run_remote(client, "echo to-stdout; echo to-stderr >&2; exit 3", timeout_s=30)
    assert result.exit_status == 3
    assert result.stdout_tail == "to-stdout\n"
    assert result.stderr_tail == "to-stderr\n"
    assert result.duration_s > 0


def test_stderr_is_logged_line_by_line(client: paramiko.SSHClient) -> None:
    with capture_logs() as logs:
        run_remote(client, "printf 'first\\nsecond\\n' >&2", timeout_s=30)
    lines = [e["line"] for e in logs if e["event"] == "remote_output"]
    assert lines == ["first", "second"]


def test_environment_values_reach_the_command_but_no_log_line(client: paramiko.SSHClient) -> None:
    secret = f"pw-{uuid.uuid4().hex}'\"$(true)"
    with capture_logs() as logs:
        result = run_remote(
            client,
            'printf %s "$PGPASSWORD"; cat',
            env={"PGPASSWORD": secret},
            stdin=io.BytesIO(b"|from-stdin"),
            timeout_s=30,
        )
    assert result.stdout_tail == secret + "|from-stdin"
    assert secret not in repr(logs)


def test_cancel_kills_the_whole_remote_process_group(client: paramiko.SSHClient) -> None:
    marker = f"cutover-cancel-{uuid.uuid4().hex}"
    cancel = threading.Event()
    seen: list[bool] = []

    def cancel_once_running() -> None:
        seen.append(wait_until(lambda: started(marker), 20))
        cancel.set()

    threading.Thread(target=cancel_once_running, daemon=True).start()
    with pytest.raises(PermanentStepError, match="cancelled"):
        run_remote(client, group_command(marker), timeout_s=60, cancel=cancel)
    assert seen == [True], "the remote processes never started"
    assert wait_until(lambda: not processes_with(marker), 10), processes_with(marker)
    # The connection stays usable after a cancel.
    assert run_remote(client, "true", timeout_s=30).exit_status == 0


@pytest.mark.parametrize("delay_s", [0.0, 0.02, 0.1])
def test_cancel_right_after_the_start_still_kills_the_group(client: paramiko.SSHClient, delay_s: float) -> None:
    """The cancel may come before the remote group's id has arrived; the kill must wait for it."""
    marker = f"cutover-early-{uuid.uuid4().hex}"
    cancel = threading.Event()
    threading.Timer(delay_s, cancel.set).start()
    with pytest.raises(PermanentStepError, match="cancelled"):
        run_remote(client, group_command(marker), timeout_s=60, cancel=cancel)
    assert wait_until(lambda: not processes_with(marker), 10), processes_with(marker)


def test_cancel_before_the_start_runs_nothing(client: paramiko.SSHClient) -> None:
    marker = f"cutover-never-{uuid.uuid4().hex}"
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(PermanentStepError, match="cancelled before it started"):
        run_remote(client, f"sh -c 'sleep 300' {marker}", cancel=cancel)
    assert not processes_with(marker)


def test_timeout_kills_the_remote_process_group_and_is_transient(client: paramiko.SSHClient) -> None:
    marker = f"cutover-timeout-{uuid.uuid4().hex}"
    started = time.monotonic()
    with pytest.raises(TransientStepError, match=r"timed out after 1\.5s"):
        run_remote(client, group_command(marker), timeout_s=1.5)
    assert time.monotonic() - started < 15
    assert wait_until(lambda: not processes_with(marker), 10), processes_with(marker)


def test_broken_connection_is_transient_and_the_remote_group_dies(target: SshTarget) -> None:
    marker = f"cutover-cut-{uuid.uuid4().hex}"
    client = connect(target)
    transport = client.get_transport()
    assert transport is not None

    def cut_once_running() -> None:
        if wait_until(lambda: started(marker), 20):
            transport.sock.shutdown(socket.SHUT_RDWR)  # a real TCP teardown under paramiko's feet

    threading.Thread(target=cut_once_running, daemon=True).start()
    try:
        with pytest.raises(TransientStepError, match="broke"):
            run_remote(client, group_command(marker), timeout_s=60)
    finally:
        client.close()
    # No channel is left to send the kill over: the watchdog on the remote side does it.
    assert wait_until(lambda: not processes_with(marker), 15), processes_with(marker)


# --- streaming ---------------------------------------------------------------------------


# The bytes' two ways through: an OpenSSH carrier into the Python copy, paramiko's channel
# into tee and FIFOs (the fallbacks of both ends).
WAYS = pytest.mark.parametrize(
    ("openssh", "remote_python"), [(True, True), (False, False)], ids=["openssh-python", "paramiko-tee"]
)


@WAYS
def test_stream_delivers_every_byte_with_matching_hashes(
    client: paramiko.SSHClient, remote_dir: str, openssh: bool, remote_python: bool
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = f"{remote_dir}/streamed.bin"
    progress: list[int] = []
    result = stream_to_remote(
        client,
        io.BytesIO(data),
        f"cat > {shlex.quote(path)}",
        timeout_s=60,
        progress=progress.append,
        remote_python=remote_python,
        openssh=openssh,
    )
    expected = hashlib.sha256(data).hexdigest()
    assert (result.bytes, result.sha256_local, result.sha256_remote, result.exit_status) == (len(data), expected, expected, 0)
    assert progress[-1] == len(data) and progress == sorted(progress)
    on_disk = run_remote(client, f"sha256sum < {shlex.quote(path)}", timeout_s=30).stdout_tail.split()[0]
    assert on_disk == expected


def test_stream_from_a_local_program_pipe(client: paramiko.SSHClient, remote_dir: str) -> None:
    """The shape of ``pg_dump | ssh | pg_restore``: the source is a pipe from a process."""
    producer = subprocess.Popen(["head", "-c", "1000000", "/dev/urandom"], stdout=subprocess.PIPE)
    assert producer.stdout is not None
    result = stream_to_remote(client, producer.stdout, f"wc -c > {shlex.quote(remote_dir)}/count", timeout_s=60)
    assert producer.wait(timeout=10) == 0
    assert result.bytes == 1_000_000 and result.sha256_local == result.sha256_remote
    assert run_remote(client, f"cat {shlex.quote(remote_dir)}/count", timeout_s=30).stdout_tail.strip() == "1000000"


def test_stream_into_a_failing_command_returns_its_exit_status(client: paramiko.SSHClient) -> None:
    data = io.BytesIO(os.urandom(8 * 1024 * 1024))
    with capture_logs() as logs:
        result = stream_to_remote(client, data, "head -c 10 > /dev/null; echo 'restore failed' >&2; exit 4", timeout_s=60)
    assert result.exit_status == 4
    assert result.bytes < 8 * 1024 * 1024  # sending stopped once the command was gone
    assert "restore failed" in [e.get("line") for e in logs if e["event"] == "remote_output"]


@WAYS
def test_command_that_stops_reading_early_is_a_hash_mismatch(
    client: paramiko.SSHClient, openssh: bool, remote_python: bool
) -> None:
    data = io.BytesIO(os.urandom(4 * 1024 * 1024))
    with pytest.raises(PermanentStepError, match="received data with sha256"):
        stream_to_remote(client, data, "head -c 1000 > /dev/null", timeout_s=60, remote_python=remote_python, openssh=openssh)


def test_stream_progress_is_reported_about_once_a_second_and_at_the_end(client: paramiko.SSHClient) -> None:
    """A slow producer (a status page polls this): not a call per chunk, but the running
    total every second or so, and the total at the end."""
    producer = subprocess.Popen(
        ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do head -c 100000 /dev/urandom; sleep 0.25; done"],
        stdout=subprocess.PIPE,
    )
    assert producer.stdout is not None
    calls: list[tuple[float, int]] = []
    result = stream_to_remote(
        client, producer.stdout, "cat > /dev/null", timeout_s=60, progress=lambda n: calls.append((time.monotonic(), n))
    )
    assert producer.wait(timeout=10) == 0
    assert result.bytes == 1_200_000 and calls[-1][1] == 1_200_000
    assert 2 <= len(calls) <= 5, calls  # about 3 s of streaming
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert [n for _, n in calls] == sorted(n for _, n in calls)


def test_connections_prefer_aes_gcm(client: paramiko.SSHClient) -> None:
    """The AEAD cipher is what keeps a Python sender near the wire (docs/benchmarks.md)."""
    transport = client.get_transport()
    assert transport is not None
    assert transport.local_cipher == transport.remote_cipher == "aes128-gcm@openssh.com"


@pytest.mark.parametrize("openssh", [True, False], ids=["openssh", "paramiko"])
def test_environment_values_reach_the_streaming_command(client: paramiko.SSHClient, remote_dir: str, openssh: bool) -> None:
    secret = f"stream-secret-{uuid.uuid4().hex}"
    path = f"{remote_dir}/env"
    stream_to_remote(
        client,
        io.BytesIO(b"payload"),
        f'cat > /dev/null; printf %s "$TOKEN" > {shlex.quote(path)}',
        env={"TOKEN": secret},
        timeout_s=30,
        openssh=openssh,
    )
    assert run_remote(client, f"cat {shlex.quote(path)}", timeout_s=30).stdout_tail == secret
