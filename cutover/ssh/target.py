"""Where an SSH connection goes, and opening it with the host key pinned.

The host key is the one line the runbook (or the sandbox) gives; nothing is ever read from
or written to ``~/.ssh/known_hosts`` and an unknown key is rejected, never added. No agent
and no key files are consulted: the private key passed in is the only identity offered.
"""

from __future__ import annotations

import base64
import binascii
import io
import socket
from dataclasses import dataclass, field

import paramiko
import structlog
from paramiko.pkey import UnknownKeyType

from cutover.errors import PermanentStepError, TransientStepError

log = structlog.get_logger()

KEEPALIVE_S = 15
# AES-GCM first: one AEAD pass per packet, where paramiko's default aes-ctr + hmac-sha2 makes
# a second pass in Python per 32 KiB packet (bench/transfer.py: about 1.3x the throughput).
# Servers without it (OpenSSH < 6.2) negotiate the next in paramiko's own order.
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# paramiko rekeys after 512 MiB whatever the cipher, and a CHANNEL_CLOSE that arrives while
# its own rekey is under way blocks its transport thread until the connection dies
# ("Key-exchange timed out"): seen at the end of 1 GiB streams. For a 128-bit block
# cipher RFC 4344 (3.2) allows 2**32 blocks (64 GiB) per key, as OpenSSH uses.
_AES_REKEY_BYTES = 2**36
# paramiko raises a plain AuthenticationException with these words when auth_timeout passes.
_AUTH_TIMEOUT = "Authentication timeout."
_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


@dataclass(frozen=True)
class SshTarget:
    """One SSH endpoint and the credentials to reach it.

    ``private_key`` is the key TEXT (OpenSSH or PEM; ed25519, ecdsa or rsa; unencrypted);
    ``host_key`` is a public key line such as ``"ssh-ed25519 AAAA... comment"``.
    The repr never shows the private key.
    """

    host: str
    port: int
    user: str
    private_key: str = field(repr=False)
    host_key: str
    connect_timeout_s: float = 10

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"


def known_hosts_name(host: str, port: int) -> str:
    """The name a host key is filed under, as OpenSSH spells it (``[host]:port`` off port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


def parse_host_key(line: str) -> paramiko.PKey:
    """The public key in a ``"TYPE BASE64 [comment]"`` line; PermanentStepError if unreadable."""
    parts = line.split()
    if len(parts) < 2:
        raise PermanentStepError("pinned SSH host key is not a 'TYPE BASE64' public key line")
    key_type, blob = parts[0], parts[1]
    try:
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(blob, validate=True))
    except (binascii.Error, ValueError, paramiko.SSHException, UnknownKeyType) as exc:
        raise PermanentStepError(f"pinned SSH host key of type {key_type} cannot be read") from exc


def load_private_key(text: str, where: str = "") -> paramiko.PKey:
    """The private key in ``text`` (ed25519, ecdsa or rsa). The error never quotes the key."""
    for key_class in _KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    suffix = f" for {where}" if where else ""
    # `from None`: the parsers' messages may quote parts of the key.
    raise PermanentStepError(f"SSH private key{suffix} is not an unencrypted ed25519, ecdsa or rsa key") from None


def connect(target: SshTarget) -> paramiko.SSHClient:
    """An authenticated client for ``target`` whose host key matched the pinned one.

    Raises PermanentStepError when the host key differs from the pinned one or the key is
    refused (retrying cannot fix either), TransientStepError when the host cannot be
    reached (refused, timed out, reset). The caller closes the client.
    """
    where = f"{target.user}@{target.address}"
    host_key = parse_host_key(target.host_key)
    private_key = load_private_key(target.private_key, where)
    client = paramiko.SSHClient()
    # Only the pinned key is known; the system known_hosts is deliberately never loaded.
    client.get_host_keys().add(known_hosts_name(target.host, target.port), host_key.get_name(), host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            pkey=private_key,
            timeout=target.connect_timeout_s,
            banner_timeout=target.connect_timeout_s,
            auth_timeout=target.connect_timeout_s,
            allow_agent=False,
            look_for_keys=False,
            transport_factory=_fast_transport,  # type: ignore[arg-type]  # paramiko's stub is narrower than its code
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise PermanentStepError(
            f"host key of {target.address} does not match the pinned key "
            f"(server offered {exc.key.get_name()} {exc.key.fingerprint}, pinned {host_key.fingerprint})"
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        if str(exc) == _AUTH_TIMEOUT:
            # The server did not answer in time (a slow line, a slow key lookup behind
            # it): that may pass, a refused key does not.
            raise TransientStepError(f"SSH authentication as {where} got no answer within {target.connect_timeout_s:g}s") from exc
        raise PermanentStepError(f"SSH authentication as {where} was refused") from exc
    except paramiko.SSHException as exc:
        client.close()
        # Includes "Server ... not found in known_hosts" (key type mismatch, RejectPolicy) and
        # negotiation failures: a retry cannot change the server's keys or algorithms...
        if "known_hosts" in str(exc):
            raise PermanentStepError(
                f"host key of {target.address} does not match the pinned key (no {host_key.get_name()} key offered)"
            ) from exc
        # ...but a banner or handshake cut short is a network problem.
        raise TransientStepError(f"SSH handshake with {target.address} failed: {exc}") from exc
    except (OSError, EOFError) as exc:  # refused, timeout, reset, unreachable, DNS
        client.close()
        raise TransientStepError(f"cannot connect to SSH at {target.address}: {_reason(exc)}") from exc
    transport = client.get_transport()
    assert transport is not None
    # Keepalives keep NAT/firewall state alive during long silent restores and let a dead
    # peer be noticed.
    transport.set_keepalive(KEEPALIVE_S)
    if transport.local_cipher in _PREFERRED_CIPHERS and getattr(transport, "remote_cipher", None) in _PREFERRED_CIPHERS:
        transport.packetizer.REKEY_BYTES = _AES_REKEY_BYTES
    # What it was opened for: a transfer may send its bytes through OpenSSH with the same
    # pinned key and identity (cutover.ssh.openssh).
    client.cutover_target = target  # type: ignore[attr-defined]
    log.debug("ssh_connected", address=target.address, user=target.user)
    return client


def _fast_transport(sock: socket.socket, **kwargs: object) -> paramiko.Transport:
    """A transport that offers the AEAD ciphers first (the host key check is unchanged)."""
    transport = paramiko.Transport(sock, **kwargs)  # type: ignore[arg-type]
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    options.ciphers = tuple(c for c in _PREFERRED_CIPHERS if c in offered) + tuple(
        c for c in offered if c not in _PREFERRED_CIPHERS
    )
    return transport


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        return _reason(errors[0]) if errors else "connection refused"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, EOFError):
        return "connection closed during the handshake"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
