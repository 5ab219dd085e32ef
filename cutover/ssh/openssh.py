"""The OpenSSH client as the carrier of a transfer's bytes, beside paramiko's connection.

paramiko encrypts and frames every 32 KiB packet in Python: about 2.2 s of CPU per GiB on
the benchmark machine, where ``ssh`` with the same AES-GCM cipher needs 0.9 s; on a host
that also runs pg_dump, the hashing and (in the sandbox) the receiving side, that CPU is
the transfer's speed (docs/benchmarks.md). So a stream or an upload, when ``ssh`` is
installed, sends its bytes through an ``ssh`` process that runs the same remote wrapper
(:mod:`cutover.ssh.remote_process`: own process group, watchdog, environment on stdin);
everything else (stat, rename, the kill of a remote group, short commands) stays on
paramiko's connection, which also watches the transfer.

The ``ssh`` process gets exactly the trust of the paramiko connection, nothing from the
user's or the system's configuration (``-F /dev/null``):

* the host key is the pinned one only: a one-line known_hosts (a public key) in a private
  temporary directory, ``StrictHostKeyChecking=yes``, ``HostKeyAlgorithms`` limited to the
  pinned key's type, no other known_hosts file;
* the identity is the runbook's private key only, offered from an anonymous memory file
  (``memfd_create``, mode 0600) that ``ssh`` opens as ``/proc/<our pid>/fd/N``: it never
  reaches a disk and is gone when the carrier closes; no agent, ``IdentitiesOnly``;
* ``BatchMode``: never a prompt;
* the environment is the allow-list of :mod:`cutover.child_env`, nothing of the flow run's.

A carrier is set up only for transfers of at least :data:`MIN_BYTES`, and used only after a
probe over it succeeded; otherwise (smaller, no ``ssh``, not Linux, a refusal) paramiko
carries the bytes, with a warning when a probe failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import paramiko
import structlog

from cutover.child_env import program_environment
from cutover.process import guard_group, unguard_group
from cutover.ssh.target import SshTarget, known_hosts_name

log = structlog.get_logger()

PROBE_TIMEOUT_S = 30.0
# Setting a carrier up costs two SSH handshakes (the probe and the transfer's own), 0.1 s
# on an idle machine and over a second on a loaded one; it saves about 1.3 s of CPU per
# GiB. Below this many bytes paramiko's own channel is as quick.
MIN_BYTES = 256 * 1024 * 1024
_READ = 256 * 1024
_CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
_HOST_KEY_ALGORITHMS = {"ssh-rsa": "rsa-sha2-512,rsa-sha2-256"}


def target_of(client: paramiko.SSHClient) -> SshTarget | None:
    """The target a client of :func:`cutover.ssh.target.connect` was opened for, or None."""
    target = getattr(client, "cutover_target", None)
    return target if isinstance(target, SshTarget) else None


class Carrier:
    """``ssh`` command lines for one target, with its key in memory; a context manager.
    :meth:`open` starts a remote command and gives a channel-like handle on it."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self._dir = Path(tempfile.mkdtemp(prefix="cutover-ssh-"))  # 0700
        self._known_hosts = self._dir / "known_hosts"
        self._known_hosts.write_text(f"{known_hosts_name(target.host, target.port)} {target.host_key.strip()}\n")
        self._key_fd: int | None = os.memfd_create("cutover-ssh-identity", os.MFD_CLOEXEC)
        os.fchmod(self._key_fd, 0o600)  # ssh refuses a key others could read
        key = target.private_key if target.private_key.endswith("\n") else target.private_key + "\n"
        os.write(self._key_fd, key.encode())

    @classmethod
    def for_client(cls, client: paramiko.SSHClient) -> Carrier | None:
        """A carrier to the host ``client`` is connected to, when ``ssh`` is installed and a
        probe over it works; None otherwise (paramiko then carries the bytes)."""
        target = target_of(client)
        if target is None:
            return None
        if not sys.platform.startswith("linux") or not hasattr(os, "memfd_create") or shutil.which("ssh") is None:
            log.info("openssh_carrier_unavailable", address=target.address, reason="no ssh client, or not Linux")
            return None
        carrier = cls(target)
        reason = carrier.probe()
        if reason is not None:
            carrier.close()
            log.warning("openssh_carrier_unavailable", address=target.address, reason=reason)
            return None
        return carrier

    def argv(self, remote_command: str) -> list[str]:
        """The ``ssh`` command line that runs ``remote_command`` on the target."""
        return ["ssh", *self.options(), "--", remote_command]

    def forward_argv(self, local_port: int, remote: str) -> list[str]:
        """The ``ssh`` command line that forwards 127.0.0.1:``local_port`` to ``remote``
        (``host:port`` or a socket path, as the target host sees it) and runs nothing;
        ``ssh`` exits when the listener cannot be set up."""
        return ["ssh", *self.options(), "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local_port}:{remote}"]

    def options(self) -> list[str]:
        """Every ``ssh`` option but the command: the pinned key, the identity, no prompt."""
        if self._key_fd is None:
            raise RuntimeError("the carrier is closed")
        key_type = self.target.host_key.split()[0]
        return [
            "-F", "/dev/null", "-T", "-x", "-a",
            "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self._known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "CheckHostIP=no",
            "-o", "UpdateHostKeys=no",
            "-o", f"HostKeyAlgorithms={_HOST_KEY_ALGORITHMS.get(key_type, key_type)}",
            "-o", f"IdentityFile=/proc/{os.getpid()}/fd/{self._key_fd}",
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
            "-o", f"Ciphers={_CIPHERS}",
            "-o", f"ConnectTimeout={int(self.target.connect_timeout_s)}",
            "-o", "ServerAliveInterval=15",
            "-o", "LogLevel=ERROR",
            "-p", str(self.target.port), "-l", self.target.user, self.target.host,
        ]  # fmt: skip

    def probe(self) -> str | None:
        """None when a trivial command runs over the carrier, else why not (ssh's words)."""
        try:
            done = subprocess.run(
                self.argv("true"),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
                start_new_session=True,
                env=program_environment(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return type(exc).__name__
        if done.returncode != 0:
            return done.stderr.decode("utf-8", "replace").strip()[-300:] or f"ssh exited {done.returncode}"
        return None

    def open(self, remote_command: str) -> OpenSshChannel:
        """Start ``remote_command`` over a new ``ssh`` process."""
        return OpenSshChannel(self.argv(remote_command))

    def close(self) -> None:
        if self._key_fd is not None:
            os.close(self._key_fd)
            self._key_fd = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Carrier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenSshChannel:
    """What :func:`cutover.ssh.remote_process.execute` uses of a paramiko channel, over a
    running ``ssh`` process: stdin to write, stdout and stderr to read without blocking,
    the exit status. The process is in a session of its own, known to the guardian of
    :mod:`cutover.process` (killed if we die), and killed by :meth:`close`."""

    def __init__(self, argv: list[str]) -> None:
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
            env=program_environment(),  # the key is in a memory file; the flow run's secrets stay here
        )
        guard_group(self._proc.pid)
        self._lock = threading.Lock()
        self._out = bytearray()
        self._err = bytearray()
        self._readers = [
            threading.Thread(target=self._pump, args=(self._proc.stdout, self._out), name="cutover-ssh-stdout", daemon=True),
            threading.Thread(target=self._pump, args=(self._proc.stderr, self._err), name="cutover-ssh-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.closed = False

    def _pump(self, stream: Any, into: bytearray) -> None:
        fd = stream.fileno()
        while True:
            try:
                data = os.read(fd, _READ)
            except OSError:
                data = b""
            if not data:
                return
            with self._lock:
                into.extend(data)

    @staticmethod
    def _take(buffer: bytearray, lock: threading.Lock, size: int) -> bytes:
        with lock:
            data = bytes(buffer[:size])
            del buffer[:size]
        return data

    def recv_ready(self) -> bool:
        with self._lock:
            return bool(self._out)

    def recv(self, size: int) -> bytes:
        return self._take(self._out, self._lock, size)

    def recv_stderr_ready(self) -> bool:
        with self._lock:
            return bool(self._err)

    def recv_stderr(self, size: int) -> bytes:
        return self._take(self._err, self._lock, size)

    def exit_status_ready(self) -> bool:
        """The process ended and all it wrote has been read in (``recv`` gets the rest)."""
        return self._proc.poll() is not None and not any(r.is_alive() for r in self._readers)

    def recv_exit_status(self) -> int:
        """ssh's exit status: the remote command's, or 255 for ssh's own failures."""
        self._proc.wait()
        for reader in self._readers:
            reader.join()
        return self._proc.returncode if self._proc.returncode >= 0 else -1

    def sendall(self, data: bytes) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        view = memoryview(data)
        while view:
            written = stdin.write(view)
            view = view[written or 0 :]

    def shutdown_write(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()

    def close(self) -> None:
        """Stop the ``ssh`` process if it still runs (the remote side is stopped by the
        caller, over paramiko, before) and release its pipes."""
        if self.closed:
            return
        self.closed = True
        if self._proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self._proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._proc.wait()
        unguard_group(self._proc.pid)
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
