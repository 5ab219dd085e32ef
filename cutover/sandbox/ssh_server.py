"""The OpenSSH server that stands for the cloud host.

Its own ``sshd -D -e -f <config>`` on a loopback port: an ed25519 host key and a client key
made at ``up`` with ``ssh-keygen``, public-key login for the current user only (root in CI,
hence ``PermitRootLogin prohibit-password``), no passwords, no PAM, ``internal-sftp``.
``StrictModes no`` because the keys live in the sandbox dir, whose parents we do not control.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from cutover.child_env import program_environment
from cutover.errors import SandboxError
from cutover.sandbox import processes
from cutover.sandbox.info import SshInfo

log = structlog.get_logger()

SSHD = os.environ.get("CUTOVER_SANDBOX_SSHD", "/usr/sbin/sshd")


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _keygen(path: Path, comment: str) -> None:
    if path.exists() and path.with_suffix(".pub").exists():
        return
    path.unlink(missing_ok=True)
    try:
        result = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise SandboxError(f"cannot run ssh-keygen for {path}: {exc.strerror}") from exc
    if result.returncode != 0:
        raise SandboxError(f"ssh-keygen for {path} failed: {result.stderr.strip()}")


def config_file(ssh_dir: Path) -> Path:
    return ssh_dir / "sshd_config"


def prepare(ssh_dir: Path, work_dir: Path, host: str, port: int, pg_bin_dir: str) -> SshInfo:
    """Make the keys, the config and the work dir (keeping what exists); returns the
    SshInfo without a pid."""
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = ssh_dir / "host_ed25519", ssh_dir / "client_ed25519"
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda args: _keygen(*args), [(host_key, "cutover-sandbox-host"), (client_key, "cutover-sandbox-client")]))
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    user = current_user()
    config_file(ssh_dir).write_text(
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {host}",
                f"HostKey {host_key}",
                "PidFile none",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "Subsystem sftp internal-sftp",
                "X11Forwarding no",
                "AllowAgentForwarding no",
                "PrintMotd no",
                "PrintLastLog no",
                # Cutover steps open several sessions at once (parallel dumps, sftp workers).
                "MaxStartups 100:30:200",
                "MaxSessions 64",
                "ClientAliveInterval 30",
                "LogLevel INFO",
                "",
            ]
        )
    )
    public = host_key.with_suffix(".pub").read_text().split()
    return SshInfo(
        host=host,
        port=port,
        user=user,
        private_key=client_key.read_text(),
        private_key_file=str(client_key),
        host_key=f"{public[0]} {public[1]}",
        work_dir=str(work_dir),
        pg_bin_dir=pg_bin_dir,
    )


def start(info: SshInfo, ssh_dir: Path) -> int:
    """Start sshd unless our sshd for this config runs; wait for its banner; returns its pid."""
    config = config_file(ssh_dir)
    if processes.is_ours(info.pid, str(config)):
        assert info.pid is not None
        return info.pid
    if os.geteuid() == 0:
        # sshd insists on its privilege separation directory when started as root.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    # The target host knows nothing of the orchestrator's environment (it may be restarted
    # from a process that holds the estate's secrets, as the tests do): its sessions start clean.
    pid = processes.start_detached([SSHD, "-D", "-e", "-f", str(config)], ssh_dir / "sshd.log", env=program_environment())
    wait_banner(info.host, info.port, pid, ssh_dir / "sshd.log")
    log.info("sandbox_sshd_started", port=info.port, pid=pid)
    return pid


def wait_banner(host: str, port: int, pid: int, log_file: Path, timeout_s: float = 15) -> None:
    """Wait until the server at host:port sends an SSH banner; SandboxError if the process
    dies or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] if log_file.exists() else []
            raise SandboxError(f"sshd on {host}:{port} exited at start ({log_file}: {tail[0] if tail else 'no output'})")
        if banner(host, port):
            return
        time.sleep(0.05)
    raise SandboxError(f"sshd on {host}:{port} sent no SSH banner within {timeout_s:.0f}s (log: {log_file})")


def banner(host: str, port: int) -> bool:
    """True when an SSH server answers on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False
