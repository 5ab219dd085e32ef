"""Free loopback ports, picked at ``up`` so that several sandboxes can run side by side."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from cutover.errors import SandboxError


def _bindable(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_is_free(port: int, hosts: Iterable[str], udp: bool = False) -> bool:
    """True when TCP (and UDP, if asked) ``port`` can be bound on every one of ``hosts``."""
    for host in hosts:
        if not _bindable(host, port, socket.SOCK_STREAM):
            return False
        if udp and not _bindable(host, port, socket.SOCK_DGRAM):
            return False
    return True


class PortPicker:
    """Hands out distinct ports that are free right now on the given loopback addresses.

    The kernel picks each candidate (bind to port 0), so two pickers in two processes
    rarely collide; a port handed out once is never handed out again by the same picker.
    """

    def __init__(self) -> None:
        self._given: set[int] = set()

    def pick(self, hosts: Iterable[str] = ("127.0.0.1",), udp: bool = False) -> int:
        hosts = tuple(hosts)
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((hosts[0], 0))
                port = int(probe.getsockname()[1])
            if port not in self._given and port_is_free(port, hosts, udp=udp):
                self._given.add(port)
                return port
        raise SandboxError(f"no free port found on {', '.join(hosts)}")


def wait_listening(host: str, port: int, timeout_s: float, what: str) -> None:
    """Wait until a TCP connection to host:port succeeds; SandboxError at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise SandboxError(f"{what} did not start listening on {host}:{port}: {exc.strerror or exc}") from exc
            time.sleep(0.05)


def accepts_connections(host: str, port: int, timeout_s: float = 1) -> bool:
    """True when a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
