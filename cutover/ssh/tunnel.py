"""A port forward to a server behind the target host, for as long as a ``with`` block.

The table copy (:mod:`cutover.postgres.table_copy`) speaks PostgreSQL's protocol to the
target cluster from the orchestrator. The target cluster is where the target SSH host can
reach it (``sites.<to>.postgres``, the same address ``pg_restore`` on that host uses), not
necessarily anywhere the orchestrator can, so the connection goes through ``ssh -L``: the
carrier of :mod:`cutover.ssh.openssh` with its pinned host key and in-memory identity.

The listener is on 127.0.0.1 (TCP, not a socket file) so that libpq keeps the runbook's
``sslmode`` and checks the server's certificate against the cluster's own name
(``host`` = that name, ``hostaddr`` = the tunnel): TLS from end to end, inside SSH. A local
user could connect to the port while it is open; the cluster still asks for its password.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from cutover.child_env import program_environment
from cutover.errors import PermanentStepError, TransientStepError
from cutover.process import guard_group, unguard_group
from cutover.ssh.openssh import Carrier
from cutover.ssh.target import SshTarget

log = structlog.get_logger()

# ssh's words for what waiting cannot fix: another host key, a refused identity, a server
# that does not forward
_REFUSED = re.compile(
    r"host key verification failed|permission denied|administratively prohibited|forwarding .*(disabled|denied)",
    re.IGNORECASE,
)
_TRIES = 3  # a port taken between our pick and ssh's bind: pick another
_POLL_S = 0.02


# PostgreSQL's SSLRequest: any server answers it with one byte ("S" or "N") before it
# asks who we are, so it proves the forward reaches a PostgreSQL server without logging in.
POSTGRES_HELLO = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


@dataclass(frozen=True)
class Forward:
    """An open forward: connect to 127.0.0.1:``port`` to reach ``remote``."""

    port: int
    remote: str


def remote_address(host: str, port: int) -> str:
    """``-L``'s remote part for a libpq ``host``/``port``: ``host:port``, or the socket file
    ``<dir>/.s.PGSQL.<port>`` when ``host`` is a socket directory."""
    if host.startswith("/"):
        return f"{host.rstrip('/')}/.s.PGSQL.{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def forward(target: SshTarget, remote: str, *, hello: bytes | None = None, timeout_s: float | None = None) -> Iterator[Forward]:
    """Forward 127.0.0.1:<free port> over SSH to ``remote`` (see :func:`remote_address`)
    until the block ends; with ``hello`` (e.g. :data:`POSTGRES_HELLO`), only once a
    connection through it got an answer to those bytes. Raises TransientStepError when
    ``ssh`` cannot connect or nothing answers within the target's connect timeout (twice
    over), PermanentStepError when ``ssh`` is not installed, the host key or identity is
    refused, or the server does not forward."""
    if shutil.which("ssh") is None:
        raise PermanentStepError("the table copy needs the OpenSSH client (ssh) on the orchestrator; install openssh-client")
    wait_s = timeout_s if timeout_s is not None else 2 * target.connect_timeout_s + 5
    with Carrier(target) as carrier:
        for attempt in range(_TRIES):
            port = _free_port()
            proc = subprocess.Popen(
                carrier.forward_argv(port, remote),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=program_environment(),
            )
            guard_group(proc.pid)
            try:
                failure = _wait_listening(proc, port, wait_s, hello)
                if failure is None:
                    log.info("tunnel_opened", address=target.address, remote=remote, local_port=port)
                    yield Forward(port, remote)
                    return
                if "Address already in use" in failure and attempt + 1 < _TRIES:
                    continue
                if _REFUSED.search(failure):  # no retry changes a key or the server's rules
                    raise PermanentStepError(f"SSH tunnel through {target.address} to {remote} refused: {failure}")
                raise TransientStepError(f"cannot open an SSH tunnel through {target.address} to {remote}: {failure}")
            finally:
                _stop(proc)
    raise TransientStepError(f"cannot open an SSH tunnel through {target.address}: no free local port")  # pragma: no cover


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int, wait_s: float, hello: bytes | None) -> str | None:
    """None once 127.0.0.1:``port`` accepts (ssh binds it after authentication) and, with
    ``hello``, the far end answers it; else why not, in ssh's words where it gave any."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return _last_words(proc) or f"ssh exited {proc.returncode}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(max(1.0, deadline - time.monotonic()))
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                time.sleep(_POLL_S)
                continue
            if hello is None:
                return None
            # the listener is ssh's own: only an answer proves the server forwards, and
            # that something listens at the far end
            try:
                probe.sendall(hello)
                answered = bool(probe.recv(1))
            except OSError:
                answered = False
            if answered:
                return None
            return _last_words(proc, wait_s=1.0) or "the connection through the tunnel was closed without an answer"
    return f"the listener did not come up within {wait_s:.0f} s"


def _last_words(proc: subprocess.Popen[bytes], wait_s: float = 0.0) -> str:
    """The last line ssh wrote to stderr (read without blocking past ``wait_s``)."""
    if proc.stderr is None:
        return ""
    chunks: list[bytes] = []
    deadline = time.monotonic() + wait_s
    fd = proc.stderr.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    lines = b"".join(chunks).decode("utf-8", "replace").strip().splitlines()
    return lines[-1][-300:] if lines else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    unguard_group(proc.pid)
    if proc.stderr is not None:
        proc.stderr.close()
