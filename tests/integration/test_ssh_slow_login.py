"""A real OpenSSH server whose key lookup is slow (an ``AuthorizedKeysCommand`` that takes
its time, as an LDAP-backed one can): a login that gets no answer in time is a transient
error, retried by the step, not a refused key."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover.errors import PermanentStepError, TransientStepError
from cutover.sandbox import processes, ssh_server
from cutover.sandbox.info import SshInfo
from cutover.sandbox.ports import PortPicker
from cutover.ssh.target import SshTarget, connect

pytestmark = [
    pytest.mark.integration,
    # sshd runs an AuthorizedKeysCommand only as root (it must own the command's path)
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd runs an AuthorizedKeysCommand only when it runs as root"),
]

LOOKUP_S = 3


@pytest.fixture(scope="module")
def slow_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshInfo]:
    base = tmp_path_factory.mktemp("slow-sshd")
    ssh_dir = base / "ssh"
    port = PortPicker().pick()
    info = ssh_server.prepare(ssh_dir, base / "work", "127.0.0.1", port, pg_bin_dir="")
    authorized = ssh_dir / "authorized_keys"
    lookup = f"sleep {LOOKUP_S}; cat {shlex.quote(str(authorized))}"
    config = ssh_server.config_file(ssh_dir)
    config.write_text(
        config.read_text().replace(f"AuthorizedKeysFile {authorized}", "AuthorizedKeysFile none")
        + f'AuthorizedKeysCommand /bin/sh -c "{lookup}"\nAuthorizedKeysCommandUser root\n'
    )
    info.pid = ssh_server.start(info, ssh_dir)
    try:
        yield info
    finally:
        processes.stop_group(info.pid, str(config), "the slow sshd")


def target(info: SshInfo, connect_timeout_s: float) -> SshTarget:
    return SshTarget(info.host, info.port, info.user, info.private_key, info.host_key, connect_timeout_s=connect_timeout_s)


def test_a_login_answered_too_late_is_transient_and_names_the_wait(slow_sshd: SshInfo) -> None:
    with pytest.raises(TransientStepError, match=r"got no answer within 1s"):
        connect(target(slow_sshd, connect_timeout_s=1))


def test_the_same_login_with_time_enough_gets_in(slow_sshd: SshInfo) -> None:
    # the key lookup works: it is only slow (so the error above is about time, not the key)
    with connect(target(slow_sshd, connect_timeout_s=LOOKUP_S + 10)) as client:
        assert client.get_transport() is not None and client.get_transport().is_authenticated()


def test_a_wrong_key_is_still_refused_for_good(slow_sshd: SshInfo, tmp_path: Path) -> None:
    import subprocess

    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = SshTarget(
        slow_sshd.host, slow_sshd.port, slow_sshd.user, other.read_text(), slow_sshd.host_key, connect_timeout_s=LOOKUP_S + 10
    )
    with pytest.raises(PermanentStepError, match="was refused"):
        connect(wrong)
