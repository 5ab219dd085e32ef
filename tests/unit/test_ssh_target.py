"""SSH targets: keys are read without ever showing up in a repr or an error message."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from cutover.errors import PermanentStepError, TransientStepError
from cutover.ssh.target import SshTarget, connect, known_hosts_name, load_private_key, parse_host_key


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    path = Path(tmp_path_factory.mktemp("keys")) / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.read_text(), (path.with_suffix(".pub")).read_text()


def test_repr_hides_the_private_key(keypair: tuple[str, str]) -> None:
    private, public = keypair
    target = SshTarget("127.0.0.1", 2222, "cutover", private, public)
    text = repr(target) + str(target)
    assert "PRIVATE KEY" not in text
    assert private.splitlines()[1] not in text
    assert "127.0.0.1" in text and "cutover" in text


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_private_keys_of_each_supported_type_load(tmp_path: Path, key_type: str) -> None:
    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)], check=True)
    key = load_private_key(path.read_text())
    assert key.get_name().startswith({"ed25519": "ssh-ed25519", "ecdsa": "ecdsa-sha2", "rsa": "ssh-rsa"}[key_type])


def test_unreadable_private_key_error_does_not_quote_it(keypair: tuple[str, str]) -> None:
    # a key made at run time, its body swapped for bytes that are no key
    lines = keypair[0].splitlines()
    garbage = f"{lines[0]}\nc2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3QtbGVhaw==\n{lines[-1]}\n"
    with pytest.raises(PermanentStepError) as caught:
        load_private_key(garbage, "cutover@host:22")
    assert "c2VjcmV0" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_host_key_line_parses_with_or_without_comment(keypair: tuple[str, str]) -> None:
    _, public = keypair
    with_comment = parse_host_key(public)
    without = parse_host_key(" ".join(public.split()[:2]))
    assert with_comment == without
    assert with_comment.get_name() == "ssh-ed25519"


@pytest.mark.parametrize("line", ["", "ssh-ed25519", "ssh-ed25519 not*base64", "ssh-unknown AAAAB3NzaC1yc2E="])
def test_bad_host_key_lines_are_permanent_errors(line: str) -> None:
    with pytest.raises(PermanentStepError):
        parse_host_key(line)


def test_host_keys_are_filed_under_openssh_names() -> None:
    assert known_hosts_name("10.0.0.1", 22) == "10.0.0.1"
    assert known_hosts_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_refused_connection_is_transient(keypair: tuple[str, str]) -> None:
    private, public = keypair
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientStepError, match=rf"127.0.0.1:{port}: connection refused"):
        connect(SshTarget("127.0.0.1", port, "cutover", private, public, connect_timeout_s=2))


def test_silent_server_times_out_as_transient(keypair: tuple[str, str]) -> None:
    """A listener that never speaks SSH: the banner wait must end in a retryable error."""
    private, public = keypair
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(TransientStepError, match=rf"127.0.0.1:{port}"):
            connect(SshTarget("127.0.0.1", port, "cutover", private, public, connect_timeout_s=0.5))
