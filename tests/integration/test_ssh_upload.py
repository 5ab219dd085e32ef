"""Resumable uploads against the sandbox's OpenSSH server, with real faults: the sshd
process serving the connection is killed mid-upload, and a partial file is damaged."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from cutover.errors import PermanentStepError, TransientStepError
from cutover.ssh.remote import run_remote
from cutover.ssh.target import SshTarget, connect
from cutover.ssh.upload import MANIFEST, upload_file, upload_tree

pytestmark = pytest.mark.integration

SIZE = 12 * 1024 * 1024
CHUNK = 256 * 1024


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


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "dump.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remote_sha256(client: paramiko.SSHClient, path: str) -> str | None:
    result = run_remote(client, f"sha256sum < {shlex.quote(path)}", timeout_s=60)
    return result.stdout_tail.split()[0] if result.exit_status == 0 else None


def remote_exists(client: paramiko.SSHClient, path: str) -> bool:
    return run_remote(client, f"test -e {shlex.quote(path)}", timeout_s=30).exit_status == 0


def sshd_serving(client: paramiko.SSHClient) -> int:
    """The pid of the sshd process serving this connection: the first ``sshd*`` ancestor
    of a command run over it."""
    result = run_remote(
        client,
        "p=$$; while [ \"$p\" -gt 1 ] && ! grep -qs '^sshd' /proc/$p/comm; do p=$(cut -d' ' -f4 /proc/$p/stat); done; echo $p",
        timeout_s=30,
    )
    pid = int(result.stdout_tail)
    assert pid > 1 and Path(f"/proc/{pid}/comm").read_text().startswith("sshd")
    return pid


def upload_cut_halfway(target: SshTarget, local: Path, remote: str) -> None:
    """Start an upload and kill -9 the sshd process serving it once half the file is written."""
    client = connect(target)
    serving = sshd_serving(client)

    def kill_halfway(offset: int) -> None:
        if offset >= SIZE // 2:
            os.kill(serving, signal.SIGKILL)

    try:
        with pytest.raises(TransientStepError, match="broke while uploading"):
            upload_file(client, local, remote, progress=kill_halfway, chunk_size=CHUNK)
    finally:
        client.close()


@pytest.mark.parametrize("remote_python", [True, False], ids=["python-append", "cat-then-hash"])
def test_retry_after_killed_connection_resumes_from_the_partial_file(
    target: SshTarget, big_file: Path, remote_dir: str, remote_python: bool
) -> None:
    remote = f"{remote_dir}/nested/dump.bin"
    upload_cut_halfway(target, big_file, remote)
    with connect(target) as client:
        assert remote_exists(client, remote + ".part") and not remote_exists(client, remote)
        result = upload_file(client, big_file, remote, chunk_size=CHUNK, remote_python=remote_python)
        assert 0 < result.resumed_from < SIZE
        assert result.bytes_sent == SIZE - result.resumed_from < SIZE
        assert result.size == SIZE and result.sha256 == sha256_of(big_file)
        assert remote_sha256(client, remote) == sha256_of(big_file)
        assert not remote_exists(client, remote + ".part")


def test_damaged_partial_file_is_not_resumed_into_a_corrupt_result(target: SshTarget, big_file: Path, remote_dir: str) -> None:
    remote = f"{remote_dir}/dump.bin"
    upload_cut_halfway(target, big_file, remote)
    original = big_file.read_bytes()[100]
    with connect(target) as client:
        # Flip byte 100 of the partial file on the remote side.
        flip = (
            f"printf '\\{(original ^ 0xFF):03o}' | dd of={shlex.quote(remote + '.part')} bs=1 seek=100 conv=notrunc 2>/dev/null"
        )
        assert run_remote(client, flip, timeout_s=30).exit_status == 0
        result = upload_file(client, big_file, remote, chunk_size=CHUNK)
        assert result.resumed_from == 0 and result.bytes_sent == SIZE
        assert remote_sha256(client, remote) == sha256_of(big_file)


def test_complete_remote_file_is_recognised_and_not_sent_again(target: SshTarget, big_file: Path, remote_dir: str) -> None:
    remote = f"{remote_dir}/dump.bin"
    with connect(target) as client:
        first = upload_file(client, big_file, remote)
        again = upload_file(client, big_file, remote)
    assert first.bytes_sent == SIZE and first.resumed_from == 0
    assert again.bytes_sent == 0 and again.sha256 == first.sha256


def test_changed_local_file_replaces_the_remote_one(target: SshTarget, big_file: Path, remote_dir: str) -> None:
    remote = f"{remote_dir}/dump.bin"
    with connect(target) as client:
        upload_file(client, big_file, remote)
        big_file.write_bytes(os.urandom(SIZE // 3))
        result = upload_file(client, big_file, remote)
        assert result.bytes_sent == SIZE // 3
        assert remote_sha256(client, remote) == sha256_of(big_file)


def test_directory_upload_writes_a_checkable_manifest_and_skips_finished_files(
    target: SshTarget, tmp_path: Path, remote_dir: str
) -> None:
    dump = tmp_path / "dump.dir"
    (dump / "sub").mkdir(parents=True)
    files = {"toc.dat": os.urandom(5000), "3001.dat.gz": os.urandom(300_000), "sub/extra": b""}
    for name, body in files.items():
        (dump / name).write_bytes(body)
    with connect(target) as client:
        first = upload_tree(client, dump, remote_dir)
        assert sorted(first.files) == sorted(files)
        assert first.size == first.bytes_sent == sum(map(len, files.values()))
        check = run_remote(client, f"cd {shlex.quote(remote_dir)} && sha256sum -c {MANIFEST}", timeout_s=60)
        assert check.exit_status == 0, check.stdout_tail + check.stderr_tail
        assert check.stdout_tail.count(": OK") == len(files)
        again = upload_tree(client, dump, remote_dir)
    assert again.bytes_sent == 0
    assert {name: r.sha256 for name, r in again.files.items()} == {
        name: hashlib.sha256(body).hexdigest() for name, body in files.items()
    }


def test_path_under_a_regular_file_is_a_permanent_error(target: SshTarget, big_file: Path, remote_dir: str) -> None:
    with connect(target) as client:
        upload_file(client, big_file, f"{remote_dir}/plain")
        with pytest.raises(PermanentStepError, match="not a directory"):
            upload_file(client, big_file, f"{remote_dir}/plain/inside.bin")
