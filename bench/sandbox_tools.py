"""The sandbox as the benchmarks reach it: its record, and OpenSSH/libpq options for the
plain tools they compare against (the host key pinned the same way as the project does)."""

from __future__ import annotations

import os
from pathlib import Path

from cutover.postgres.endpoint import PgEndpoint
from cutover.sandbox.info import PostgresInfo, SandboxInfo
from cutover.ssh.target import SshTarget, known_hosts_name


def load(directory: str) -> SandboxInfo:
    """The running sandbox in ``directory`` (``cutover sandbox up --dir DIR``)."""
    if not (Path(directory) / "sandbox.json").exists():
        raise SystemExit(f"no sandbox in {directory}: start one with  .venv/bin/cutover sandbox up --scale 20 --dir {directory}")
    return SandboxInfo.load(directory)


def ssh_target(info: SandboxInfo) -> SshTarget:
    ssh = info.ssh
    return SshTarget(ssh.host, ssh.port, ssh.user, ssh.private_key, ssh.host_key)


def pg_endpoint(pg: PostgresInfo) -> PgEndpoint:
    return PgEndpoint(pg.host, pg.port, pg.user, pg.password, bin_dir=pg.bin_dir)


def openssh_options(info: SandboxInfo, scratch: Path) -> list[str]:
    """``ssh``/``scp`` options: only the sandbox's host key is known (a known_hosts file of
    one line in ``scratch``), only the sandbox's client key is offered, never a prompt."""
    ssh = info.ssh
    known = scratch / "known_hosts"
    known.write_text(f"{known_hosts_name(ssh.host, ssh.port)} {ssh.host_key}\n")
    return [
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-i",
        ssh.private_key_file,
    ]


def libpq_env(pg: PostgresInfo) -> dict[str, str]:
    """The environment that points psql/pg_dump/pg_restore at a sandbox cluster."""
    return {**os.environ, **pg_endpoint(pg).libpq_env()}
