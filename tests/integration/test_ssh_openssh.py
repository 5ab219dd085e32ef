"""The OpenSSH carrier of a transfer's bytes, against the sandbox's sshd: the same pinned
host key and identity as paramiko's connection, the key kept off the disk, and a carrier
that breaks mid-upload leaving a resumable partial file."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from cutover.errors import TransientStepError
from cutover.ssh.openssh import Carrier
from cutover.ssh.remote import run_remote
from cutover.ssh.target import SshTarget, connect
from cutover.ssh.upload import upload_file

pytestmark = pytest.mark.integration

# Not the sandbox's host key: any other ed25519 public key.
OTHER_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def target(sandbox) -> SshTarget:
    ssh = sandbox.ssh
    return SshTarget(ssh.host, ssh.port, ssh.user, ssh.private_key, ssh.host_key)


@pytest.fixture
def remote_dir(sandbox, target: SshTarget) -> Iterator[str]:
    path = f"{sandbox.ssh.work_dir}/test-{uuid.uuid4().hex[:12]}"
    yield path
    with connect(target) as cleanup:
        run_remote(cleanup, f"rm -rf {shlex.quote(path)}", timeout_s=30)


def test_a_carrier_trusts_only_the_pinned_host_key(target: SshTarget) -> None:
    with Carrier(target) as pinned:
        assert pinned.probe() is None
    wrong = SshTarget(target.host, target.port, target.user, target.private_key, OTHER_HOST_KEY)
    with Carrier(wrong) as carrier:
        reason = carrier.probe()
    assert reason is not None and "host key" in reason.lower(), reason


def test_a_carrier_keeps_the_private_key_off_the_disk(target: SshTarget) -> None:
    with Carrier(target) as carrier:
        argv = carrier.argv("true")
        identity = next(a.split("=", 1)[1] for a in argv if a.startswith("IdentityFile="))
        assert identity.startswith(f"/proc/{os.getpid()}/fd/")
        assert Path(identity).read_text().strip() == target.private_key.strip()  # in memory, readable by us
        on_disk = list(carrier._dir.iterdir())
        assert [p.name for p in on_disk] == ["known_hosts"]
        assert target.host_key.split()[1] in on_disk[0].read_text()
        assert not any(target.private_key.strip().splitlines()[1] in a for a in argv)
        kept = carrier._dir
    assert not kept.exists()


def ssh_children() -> list[int]:
    """This process's ``ssh`` child processes (the carriers' connections)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "ssh" and int(fields[1]) == os.getpid():
                found.append(int(entry))
    return found


def test_a_carrier_cut_mid_upload_leaves_a_part_the_retry_resumes(target: SshTarget, tmp_path: Path, remote_dir: str) -> None:
    size = 12 * 1024 * 1024
    local = tmp_path / "dump.bin"
    local.write_bytes(os.urandom(size))
    remote = f"{remote_dir}/dump.bin"
    cut = threading.Event()

    def kill_carrier_halfway(offset: int) -> None:
        if offset >= size // 2 and not cut.is_set():
            cut.set()
            for pid in ssh_children():
                os.kill(pid, signal.SIGKILL)

    with connect(target) as client:
        with pytest.raises(TransientStepError, match="broke while uploading"):
            upload_file(client, local, remote, progress=kill_carrier_halfway, chunk_size=256 * 1024, openssh=True)
        assert cut.is_set()
        time.sleep(0.5)  # the remote side sees end of file and stops
        result = upload_file(client, local, remote, chunk_size=256 * 1024, openssh=True)
        assert 0 < result.resumed_from < size and result.bytes_sent == size - result.resumed_from
        on_disk = run_remote(client, f"sha256sum < {shlex.quote(remote)}", timeout_s=30).stdout_tail.split()[0]
        assert on_disk == hashlib.sha256(local.read_bytes()).hexdigest() == result.sha256
    assert ssh_children() == []


def test_without_a_working_carrier_the_bytes_go_over_paramiko(
    target: SshTarget, tmp_path: Path, remote_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ssh client on PATH: the upload still happens, over paramiko's channel."""
    local = tmp_path / "small.bin"
    local.write_bytes(os.urandom(100_000))
    monkeypatch.setenv("PATH", str(tmp_path))
    with connect(target) as client:
        assert Carrier.for_client(client) is None
        result = upload_file(client, local, f"{remote_dir}/small.bin", openssh=True)
    assert result.bytes_sent == 100_000


def test_a_client_not_opened_by_cutover_gets_no_carrier(target: SshTarget) -> None:
    client = paramiko.SSHClient()
    assert Carrier.for_client(client) is None
