"""A PostgreSQL cluster of the sandbox: created with ``initdb``, run with ``pg_ctl``.

PostgreSQL refuses to run as root, so when we are root every server binary runs as the
``postgres`` user (``runuser -u postgres --``) and the cluster's files belong to it. That
user must be able to reach the files: when it cannot traverse the sandbox directory's
parents (a 0700 home or pytest temp dir), the clusters live in a directory under the
system temp dir instead, and ``<sandbox>/postgres`` is a symlink to it.

Clusters listen on 127.0.0.1 only, with SCRAM password authentication everywhere, and
set ``cluster_name`` to their site so a query can tell which cluster answered.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import structlog

from cutover.errors import SandboxError
from cutover.sandbox import processes
from cutover.sandbox.info import PostgresInfo

log = structlog.get_logger()

CLUSTER_OS_USER = os.environ.get("CUTOVER_SANDBOX_PG_OS_USER", "postgres")
# Marks a directory that ``down --purge`` may delete although it is outside the sandbox dir.
FALLBACK_MARKER = ".cutover-sandbox-postgres"
# A Unix socket path must fit in sun_path (108 bytes on Linux); keep a margin.
_MAX_SOCKET_PATH = 100

# What the sandbox changes from initdb's defaults, and why.
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # A throwaway estate on a laptop or CI runner: durability buys nothing and costs
    # seconds at every ``up``. Tables stay ordinary logged tables (pg_dump must see them).
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # Container /dev/shm is often 64 MB; parallel query must not depend on it.
    "dynamic_shared_memory_type": "mmap",
    "password_encryption": "'scram-sha-256'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "max_connections": "100",
}


def running_as_root() -> bool:
    return os.geteuid() == 0


def find_bin_dir() -> str:
    """The directory of ``initdb``/``pg_ctl``/``pg_dump``: ``$CUTOVER_SANDBOX_PG_BIN``, else the
    newest ``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``, else the one on PATH."""
    configured = os.environ.get("CUTOVER_SANDBOX_PG_BIN")
    candidates: list[Path] = [Path(configured)] if configured else []
    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    candidates += debian
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout
            candidates.append(Path(out.strip()))
        except (OSError, subprocess.CalledProcessError):
            pass
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return str(candidate)
    raise SandboxError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql-15 or set CUTOVER_SANDBOX_PG_BIN"
    )


def _as_owner(argv: list[str]) -> list[str]:
    if running_as_root():
        return ["runuser", "-u", CLUSTER_OS_USER, "--", *argv]
    return argv


def _owner_ids() -> tuple[int, int]:
    if not running_as_root():
        return os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam(CLUSTER_OS_USER)
    except KeyError as exc:
        raise SandboxError(f"running as root needs the OS user {CLUSTER_OS_USER!r} to run PostgreSQL; it does not exist") from exc
    return entry.pw_uid, entry.pw_gid


def _owner_can_write(path: Path) -> bool:
    if not running_as_root():
        return os.access(path, os.W_OK | os.X_OK)
    probe = subprocess.run(_as_owner(["test", "-w", str(path), "-a", "-x", str(path)]), capture_output=True)
    return probe.returncode == 0


def clusters_root(sandbox_dir: Path) -> Path:
    """Where the clusters' data, sockets and logs live (created if needed, owned by the
    cluster's OS user): ``<sandbox>/postgres``, or the fallback that symlink points to."""
    link = sandbox_dir / "postgres"
    if link.is_symlink():
        target = link.resolve()
        if target.is_dir():
            return target
        link.unlink()
    uid, gid = _owner_ids()
    socket_probe = link / "onprem" / "socket" / ".s.PGSQL.65535"
    link.mkdir(mode=0o700, exist_ok=True)
    os.chown(link, uid, gid)
    if len(str(socket_probe)) <= _MAX_SOCKET_PATH and _owner_can_write(link):
        return link
    link.rmdir()
    fallback = Path(tempfile.mkdtemp(prefix="cutover-sandbox-pg-"))
    (fallback / FALLBACK_MARKER).write_text(str(sandbox_dir.resolve()) + "\n")
    for path in (fallback, fallback / FALLBACK_MARKER):
        os.chown(path, uid, gid)
    link.symlink_to(fallback)
    log.info("sandbox_postgres_fallback_dir", path=str(fallback), reason="cluster user cannot reach the sandbox dir")
    if not _owner_can_write(fallback):
        raise SandboxError(f"PostgreSQL user {CLUSTER_OS_USER!r} cannot write {fallback}")
    return fallback


def layout(root: Path, site: str) -> tuple[Path, Path, Path]:
    """(data dir, socket dir, log file) of the ``site`` cluster under ``root``."""
    base = root / site
    return base / "data", base / "socket", base / "postgres.log"


def create(pg: PostgresInfo) -> None:
    """Run initdb for a new cluster and configure it; no-op when the data dir is initialised."""
    data = Path(pg.data_dir)
    if (data / "PG_VERSION").exists():
        return
    base = data.parent
    uid, gid = _owner_ids()
    for directory in (base, Path(pg.socket_dir)):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(directory, uid, gid)
    pwfile = base / "initdb.pw"
    pwfile.write_text(pg.password + "\n")
    os.chown(pwfile, uid, gid)
    pwfile.chmod(0o600)
    try:
        _run(
            [
                f"{pg.bin_dir}/initdb",
                "-D",
                str(data),
                "-U",
                pg.user,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=base,
            what=f"initdb of the {pg.site} cluster in {data}",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    settings = dict(_SETTINGS)
    settings.update(
        {
            "port": str(pg.port),
            "unix_socket_directories": f"'{pg.socket_dir}'",
            "cluster_name": f"'{pg.site}'",
        }
    )
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n# cutover sandbox\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    # Password (SCRAM) authentication on the socket and on 127.0.0.1; nothing else.
    (data / "pg_hba.conf").write_text("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n")


def _log_file(pg: PostgresInfo) -> Path:
    return Path(pg.data_dir).parent / "postgres.log"


def postmaster_pid(pg: PostgresInfo) -> int | None:
    """The pid in ``postmaster.pid`` when that process is this cluster's postmaster."""
    try:
        pid = int((Path(pg.data_dir) / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, PermissionError):
        return None
    return pid if processes.is_ours(pid, pg.data_dir) else None


def start(pg: PostgresInfo) -> int:
    """Start the cluster (waiting until it accepts connections) unless it runs; returns the
    postmaster's pid."""
    pid = postmaster_pid(pg)
    if pid:
        return pid
    _run(
        [f"{pg.bin_dir}/pg_ctl", "start", "-D", pg.data_dir, "-l", str(_log_file(pg)), "-w", "-t", "60", "-s"],
        cwd=Path(pg.data_dir).parent,
        what=f"pg_ctl start of the {pg.site} cluster on 127.0.0.1:{pg.port} (log: {_log_file(pg)})",
    )
    pid = postmaster_pid(pg)
    if not pid:
        raise SandboxError(f"the {pg.site} cluster in {pg.data_dir} started but its postmaster.pid names no live postmaster")
    log.info("sandbox_postgres_started", site=pg.site, port=pg.port, pid=pid)
    return pid


def stop(pg: PostgresInfo) -> None:
    """Stop the cluster with ``pg_ctl stop -m fast`` and wait until the postmaster and every
    backend are gone; no-op when it does not run."""
    pid = postmaster_pid(pg)
    if not pid:
        return
    family = processes.descendants(pid) | {pid}
    _run(
        [f"{pg.bin_dir}/pg_ctl", "stop", "-D", pg.data_dir, "-m", "fast", "-w", "-t", "60", "-s"],
        cwd=Path(pg.data_dir).parent,
        what=f"pg_ctl stop of the {pg.site} cluster in {pg.data_dir}",
    )
    left = processes.wait_gone(family, 10)
    if left:
        raise SandboxError(f"the {pg.site} cluster's processes {sorted(left)} are still running after pg_ctl stop")
    log.info("sandbox_postgres_stopped", site=pg.site, pid=pid)


def _run(argv: list[str], cwd: Path, what: str) -> None:
    try:
        result = subprocess.run(_as_owner(argv), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise SandboxError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise SandboxError(f"{what} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
