"""Real faults for the sandbox estate, and the invariants a fault scenario checks afterwards.

Every injector breaks something with the mechanism that breaks it in production (a
stopped server, a killed process, a conflicting DNS record, a write by a determined user,
damaged bytes), never with a mock, and puts back what it broke: the context managers on
exit, the others through the function named in their docstring. The proof that each one
works is tests/integration/test_fault_injectors.py.

The invariants: :func:`estate_snapshot` records what a rollback must restore, and
:func:`assert_rolled_back` and :func:`assert_no_processes_left` check it after the fault.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from cutover.dns.provider import fqdn
from cutover.dns.query import query
from cutover.postgres import fingerprint as fp
from cutover.postgres import freeze
from cutover.sandbox import postgres_cluster, powerdns_server, processes
from cutover.sandbox.estate import MAIN_TABLE
from cutover.sandbox.info import PostgresInfo, SandboxInfo

SITES = ("onprem", "cloud")
# The old site serves, the new one waits in maintenance: before a cutover and after a rollback.
MAINTENANCE_BEFORE = {"onprem": False, "cloud": True}
_SAVING = threading.Lock()  # sandbox.json is rewritten through one temp file


# --- applications ---------------------------------------------------------------------


def site_url(sandbox: SandboxInfo, app: str, site: str) -> str:
    """``http://address:port`` of ``app`` at ``site`` ("onprem" or "cloud")."""
    if app not in sandbox.apps:
        raise ValueError(f"no application {app!r} in the sandbox (known: {', '.join(sorted(sandbox.apps))})")
    if site not in SITES:
        raise ValueError(f"site must be 'onprem' or 'cloud', not {site!r}")
    return sandbox.apps[app].old_url if site == "onprem" else sandbox.apps[app].new_url


@contextmanager
def app_fault(
    sandbox: SandboxInfo, app: str, site: str, path: str, method: str, status: int = 500, count: int | None = None
) -> Iterator[str]:
    """The next ``count`` requests (None: all, until exit) for ``method path`` of ``app`` at
    ``site`` answer ``status``.

    Mechanism: the site process's own fault switch (``POST /fault``, see
    cutover/sandbox/site_apps.py); the request never reaches the application. On exit this
    fault (and only this one) is cleared with ``DELETE /fault?path=&method=``. Yields the
    application's base URL."""
    url = site_url(sandbox, app, site)
    fault = {"path": path, "method": method, "status": status, "count": count}
    response = httpx.post(f"{url}/fault", json=fault, timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"app_fault: {url}/fault refused {fault}: {response.status_code} {response.text[:200]}")
    try:
        yield url
    finally:
        httpx.delete(f"{url}/fault", params={"path": path, "method": method}, timeout=10).raise_for_status()


# --- PostgreSQL clusters -----------------------------------------------------------------


def _cluster(sandbox: SandboxInfo, site: str) -> PostgresInfo:
    if site not in SITES:
        raise ValueError(f"site must be 'onprem' or 'cloud', not {site!r}")
    return sandbox.onprem if site == "onprem" else sandbox.cloud


def _record(sandbox: SandboxInfo) -> None:
    """Write a restarted service's new pid to sandbox.json, so `down` still stops it."""
    with _SAVING:
        sandbox.save()


def _connect(pg: PostgresInfo, dbname: str = "postgres", connect_timeout: int = 5) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=pg.host,
        port=pg.port,
        user=pg.user,
        password=pg.password,
        dbname=dbname,
        autocommit=True,
        sslmode="disable",
        connect_timeout=connect_timeout,
    )


def accepts_connections(pg: PostgresInfo) -> bool:
    """True when the cluster answers a query now."""
    try:
        with _connect(pg, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except psycopg.OperationalError:
        return False


def _wait_accepting(pg: PostgresInfo, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not accepts_connections(pg):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {pg.site} cluster on {pg.host}:{pg.port} refuses connections {timeout_s:g}s after its start")
        time.sleep(0.1)


class StoppedCluster:
    """A cluster that :func:`stop_cluster` stopped. Bring it back with :meth:`restart` (now)
    or :meth:`restart_after` (from a thread, later); :meth:`wait` blocks until it is back."""

    def __init__(self, sandbox: SandboxInfo, site: str) -> None:
        self.sandbox = sandbox
        self.site = site
        self.pg = _cluster(sandbox, site)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def restart(self) -> None:
        """Start the cluster (no-op when it runs) and wait until it accepts connections."""
        with self._lock:
            self.pg.pid = postgres_cluster.start(self.pg)
            _record(self.sandbox)
            _wait_accepting(self.pg)

    def restart_after(self, seconds: float) -> threading.Thread:
        """Restart the cluster ``seconds`` from now, from a daemon thread (returned); an
        error there is raised again by :meth:`wait`."""

        def later() -> None:
            time.sleep(seconds)
            try:
                self.restart()
            except BaseException as exc:  # handed to wait(), which the test calls
                self._error = exc

        self._thread = threading.Thread(target=later, name=f"restart-{self.site}-cluster", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout_s: float = 120) -> None:
        """Block until the cluster accepts connections again: after a pending
        :meth:`restart_after`, else by restarting it now."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"the {self.site} cluster's restart did not finish within {timeout_s:g}s")
            if self._error is not None:
                raise self._error
        self.restart()


def stop_cluster(sandbox: SandboxInfo, site: str) -> StoppedCluster:
    """Stop the ``site`` cluster now ("onprem" or "cloud"); returns the handle that brings
    it back.

    Mechanism: the sandbox's own ``postgres_cluster.stop`` (``pg_ctl stop -m fast``: open
    sessions are ended, new connections refused), which returns once every backend is gone."""
    stopped = StoppedCluster(sandbox, site)
    postgres_cluster.stop(stopped.pg)
    stopped.pg.pid = None
    return stopped


@contextmanager
def cluster_stopped(sandbox: SandboxInfo, site: str) -> Iterator[StoppedCluster]:
    """The ``site`` cluster is down inside the block (see :func:`stop_cluster`); on exit it
    runs and accepts connections again. ``restart_after`` on the yielded handle brings it
    back earlier, from a thread."""
    stopped = stop_cluster(sandbox, site)
    try:
        yield stopped
    finally:
        stopped.wait()


# --- SSH ---------------------------------------------------------------------------------


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _sshd_descendants(sandbox: SandboxInfo) -> list[int]:
    listener = sandbox.ssh.pid
    if not processes.is_ours(listener, sandbox.dir):
        raise RuntimeError(f"the sandbox's sshd (pid {listener}) is not running")
    assert listener is not None
    return sorted(processes.descendants(listener))


def _ssh_sessions(sandbox: SandboxInfo) -> list[int]:
    """The per-connection ``sshd`` processes of the sandbox's daemon (privileged monitor
    and session child): its descendants named ``sshd*``."""
    return [pid for pid in _sshd_descendants(sandbox) if _comm(pid).startswith("sshd")]


def _remote_commands(sandbox: SandboxInfo) -> list[int]:
    """The processes that connections to the sandbox's sshd run (shells, ``cat``,
    ``python3``, ``sftp-server``, ``pg_restore``): the daemon's descendants not named ``sshd*``."""
    return [pid for pid in _sshd_descendants(sandbox) if not _comm(pid).startswith("sshd")]


def _signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


@contextmanager
def slow_ssh(sandbox: SandboxInfo, share: float = 0.1, period_s: float = 0.05) -> Iterator[None]:
    """What connections to the sandbox's sshd run on the cloud host, commands started
    meanwhile included, gets ``share`` of the time until exit: an upload or a stream slows
    to a crawl (its bytes wait in the SSH channel's window, as on a thin line), so that a
    test can catch it half-way however fast the machine is. Logins are not slowed. On
    exit everything runs freely again.

    Mechanism: a thread stops the remote commands (SIGSTOP) for ``(1 - share) * period_s``
    and lets them run (SIGCONT) for ``share * period_s``, over and over. sshd itself is
    left alone: a stop and continue in the middle of its authentication can make it refuse
    the login (an interrupted system call), which no slow line does."""
    if not 0 < share < 1:
        raise ValueError(f"slow_ssh: share must be between 0 and 1 (exclusive), not {share!r}")
    done = threading.Event()
    stopped: set[int] = set()
    failed: list[BaseException] = []

    def pace() -> None:
        try:
            while not done.is_set():
                commands = _remote_commands(sandbox)
                _signal_all(commands, signal.SIGSTOP)
                stopped.update(commands)
                if done.wait((1 - share) * period_s):
                    break
                _signal_all(commands, signal.SIGCONT)
                done.wait(share * period_s)
        except BaseException as exc:  # e.g. sshd gone: the link was not slow after all
            failed.append(exc)

    pacer = threading.Thread(target=pace, name="slow-ssh", daemon=True)
    pacer.start()
    try:
        yield
    finally:
        done.set()
        pacer.join(5)
        _signal_all(stopped, signal.SIGCONT)
    if failed:
        raise RuntimeError(f"slow_ssh stopped pacing: {failed[0]}") from failed[0]


def kill_ssh_sessions(sandbox: SandboxInfo) -> list[int]:
    """Break every open connection to the sandbox's sshd (an SFTP upload, a remote
    restore's channel); the daemon keeps listening, so new connections work. Returns the
    killed pids (empty when there was no connection). Nothing to restore.

    Mechanism: SIGKILL to the per-connection ``sshd`` processes, i.e. the listening
    daemon's descendants named ``sshd*`` (privileged monitor and session child); the
    commands they ran lose their sshd, which is what a dropped network link looks like to
    them. The listener is found by its recorded pid and its config path in the sandbox dir."""
    sessions = _ssh_sessions(sandbox)
    _signal_all(sessions, signal.SIGKILL)
    left = processes.wait_gone(sessions, 5)
    if left:
        raise RuntimeError(f"kill_ssh_sessions: sshd processes {sorted(left)} survived SIGKILL")
    return sessions


# --- PowerDNS ----------------------------------------------------------------------------


def _pdns_dir(sandbox: SandboxInfo) -> Path:
    return Path(sandbox.dir) / "powerdns"


def _pdns_marker(sandbox: SandboxInfo) -> str:
    return f"--config-dir={_pdns_dir(sandbox)}"


def _zone_url(sandbox: SandboxInfo) -> str:
    pdns = sandbox.powerdns
    return f"{pdns.api_url}/api/v1/servers/{pdns.server_id}/zones/{pdns.zone}"


def zone_rrsets(sandbox: SandboxInfo) -> list[tuple[str, str, int, tuple[tuple[str, bool], ...]]]:
    """The zone's rrsets through the API, sorted: (name, type, ttl, ((content, disabled), ...)).
    Without the SOA, whose serial every change through the API bumps."""
    response = httpx.get(_zone_url(sandbox), headers={"X-API-Key": sandbox.powerdns.api_key}, timeout=10)
    response.raise_for_status()
    return sorted(
        (r["name"], r["type"], r["ttl"], tuple(sorted((rec["content"], rec["disabled"]) for rec in r["records"])))
        for r in response.json()["rrsets"]
        if r["type"] != "SOA"
    )


@contextmanager
def powerdns_stopped(sandbox: SandboxInfo) -> Iterator[None]:
    """PowerDNS is down inside the block: its HTTP API refuses connections and its DNS
    port does not answer.

    Mechanism: the sandbox's ``processes.stop_group`` on the recorded ``pdns_server``
    (SIGTERM). On exit it is started again with ``powerdns_server.start`` (same config,
    same sqlite database, hence the same zone, which is checked), and its new pid recorded
    in sandbox.json."""
    pdns = sandbox.powerdns
    marker = _pdns_marker(sandbox)
    if not processes.is_ours(pdns.pid, marker):
        raise RuntimeError(f"powerdns_stopped: the sandbox's pdns_server (pid {pdns.pid}) is not running")
    zone = zone_rrsets(sandbox)
    processes.stop_group(pdns.pid, marker, "powerdns")
    try:
        yield
    finally:
        pdns.pid = powerdns_server.start(pdns, _pdns_dir(sandbox))
        _record(sandbox)
        after = zone_rrsets(sandbox)
        if after != zone:
            raise RuntimeError(f"powerdns_stopped: the zone differs after the restart: {sorted(set(zone) ^ set(after))}")


def _pdns_database(sandbox: SandboxInfo) -> Path:
    """The gsqlite3 database, as the running server's pdns.conf names it."""
    for line in (_pdns_dir(sandbox) / "pdns.conf").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "gsqlite3-database":
            return Path(value.strip())
    raise RuntimeError(f"no gsqlite3-database in {_pdns_dir(sandbox) / 'pdns.conf'}")


FAULT_ALIAS_LABEL = "cutover-fault-alias"


@contextmanager
def powerdns_refuses(sandbox: SandboxInfo, name: str) -> Iterator[str]:
    """Inside the block, the PowerDNS API refuses any change of the A records of ``name``
    with 422 ``RRset NAME IN A: Conflicts with pre-existing RRset``; reading them still
    works and DNS still answers their values. Yields the alias name used.

    Mechanism: a CNAME at ``name`` next to its A rrset, a conflict the API refuses to
    create, hence written straight into the server's gsqlite3 database (as a hand edit
    in the backend would). The CNAME points at an alias holding the A values ``name`` has
    now, so resolvers still get those values. On exit the CNAME row and the alias go."""
    name = fqdn(name)
    pdns = sandbox.powerdns
    headers = {"X-API-Key": pdns.api_key}
    current = [r for r in zone_rrsets(sandbox) if r[0] == name and r[1] == "A"]
    if not current:
        raise ValueError(f"powerdns_refuses: {name} has no A records in zone {pdns.zone}")
    _, _, ttl, records = current[0]
    alias = f"{FAULT_ALIAS_LABEL}.{pdns.zone}"
    rrset = {"name": alias, "type": "A", "ttl": ttl, "records": [{"content": c, "disabled": d} for c, d in records]}
    httpx.patch(
        _zone_url(sandbox), headers=headers, json={"rrsets": [rrset | {"changetype": "REPLACE"}]}, timeout=10
    ).raise_for_status()
    database = sqlite3.connect(_pdns_database(sandbox), timeout=10)
    try:
        with database:
            row = database.execute("select id from domains where name = ?", (pdns.zone.rstrip("."),)).fetchone()
            if row is None:
                raise RuntimeError(f"powerdns_refuses: zone {pdns.zone} is not in {_pdns_database(sandbox)}")
            record_id = database.execute(
                "insert into records (domain_id, name, type, content, ttl, prio, disabled, auth) values (?, ?, 'CNAME', ?, ?, 0, 0, 1)",
                (row[0], name.rstrip("."), alias.rstrip("."), ttl),
            ).lastrowid
        try:
            yield alias
        finally:
            with database:
                database.execute("delete from records where id = ?", (record_id,))
    finally:
        database.close()
        httpx.patch(
            _zone_url(sandbox),
            headers=headers,
            json={"rrsets": [{"name": alias, "type": "A", "changetype": "DELETE"}]},
            timeout=10,
        ).raise_for_status()


# --- writes where nobody may write -------------------------------------------------------


@dataclass(frozen=True)
class RowWrite:
    """One row changed by :func:`write_on_source` or :func:`change_target_row`, with what
    :func:`undo_row_writes` needs to put it back."""

    site: str
    database: str
    table: str  # schema-qualified
    key: dict[str, Any]  # primary key column -> value
    original: str  # the row before, as to_jsonb(row) text


_WRITES: list[RowWrite] = []


_NUMBERS = frozenset({"smallint", "integer", "bigint", "numeric", "real", "double precision"})


def _table_columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str, bool, bool]]:
    """(name, type, writable, constrained) of each column of ``table``: writable =
    not generated and not GENERATED ALWAYS AS IDENTITY; constrained = in a primary key,
    unique, foreign key or exclusion constraint."""
    return [
        (r[0], r[1], r[2], r[3])
        for r in conn.execute(
            """select a.attname, a.atttypid::regtype::text, a.attgenerated = '' and a.attidentity <> 'a',
                      exists (select 1 from pg_constraint c where c.conrelid = a.attrelid
                              and c.contype in ('p', 'u', 'f', 'x') and a.attnum = any (c.conkey))
               from pg_attribute a
               where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum""",
            (table,),
        )
    ]


def _primary_key(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            """select a.attname from pg_constraint c join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
               where c.conrelid = %s::regclass and c.contype = 'p' order by array_position(c.conkey, a.attnum)""",
            (table,),
        )
    ]


def _write_row(sandbox: SandboxInfo, site: str, db: str, table: str | None) -> str:
    if table is None:
        if db not in MAIN_TABLE:
            raise ValueError(f"no default table for database {db!r}; name one (known databases: {', '.join(sorted(MAIN_TABLE))})")
        table = f"public.{MAIN_TABLE[db]}"
    with _connect(_cluster(sandbox, site), db) as conn:
        # What a determined user does on a frozen database: override the database default.
        conn.execute("set default_transaction_read_only = off")
        columns = _table_columns(conn, table)
        key = _primary_key(conn, table)
        # A text column gets a character appended, else a number column gets 1 added (char(n)
        # and varchar(n) may not grow). Not a key or unique column: the write must succeed.
        free = [c for c in columns if c[2] and not c[3]]
        choice = [c for c in free if c[1] == "text"] + [c for c in free if c[1] in _NUMBERS]
        if not key or not choice:
            raise ValueError(f"{site} {db}.{table}: no primary key or no unconstrained text or number column to change")
        column = choice[0][0]
        change = sql.SQL("{c} || '*'" if choice[0][1] == "text" else "{c} + 1").format(c=sql.Identifier(column))
        ident = sql.SQL(", ").join(sql.Identifier(k) for k in key)
        row = conn.execute(
            sql.SQL("select to_jsonb(t)::text, {k} from {t} t order by {k} limit 1").format(k=ident, t=_table(table))
        ).fetchone()
        if row is None:
            raise ValueError(f"{site} {db}.{table} has no rows to change")
        where = sql.SQL(" and ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key)
        updated = conn.execute(
            sql.SQL("update {t} set {c} = {change} where {where}").format(
                t=_table(table), c=sql.Identifier(column), change=change, where=where
            ),
            row[1:],
        ).rowcount
        if updated != 1:
            raise RuntimeError(f"{site} {db}.{table}: the update changed {updated} rows, not 1")
    _WRITES.append(RowWrite(site, db, table, dict(zip(key, row[1:], strict=False)), row[0]))
    return table


def _table(qualified: str) -> sql.Composable:
    schema, _, name = qualified.rpartition(".")
    return sql.Identifier(schema or "public", name)


def write_on_source(sandbox: SandboxInfo, db: str, table: str | None = None) -> str:
    """Change one row of ``db`` on the onprem (source) cluster, frozen or not; returns the
    schema-qualified table (default: the application's main table, e.g. ``public.parcels``).

    Mechanism: a session of the migration superuser runs ``SET default_transaction_read_only
    = off`` (overriding the freeze's database default, as any determined user can) and
    UPDATEs the first row by primary key: a text column gets ``*`` appended, else a number
    column gets 1 added; triggers fire as for any write. :func:`undo_row_writes` puts it back."""
    return _write_row(sandbox, "onprem", db, table)


def change_target_row(sandbox: SandboxInfo, db: str, table: str | None = None) -> str:
    """:func:`write_on_source` on the cloud (target) cluster's ``db``; returns the table."""
    return _write_row(sandbox, "cloud", db, table)


def undo_row_writes(sandbox: SandboxInfo) -> list[str]:
    """Put every row changed by :func:`write_on_source` / :func:`change_target_row` back
    as it was (all columns, with triggers off: ``session_replication_role = replica``), most
    recent first; a database that no longer exists (a dropped target) is skipped. Returns
    ``site/db/table`` of each row put back. The source's fingerprint is then as before."""
    restored = []
    while _WRITES:
        write = _WRITES.pop()
        pg = _cluster(sandbox, write.site)
        with _connect(pg) as admin:
            if admin.execute("select 1 from pg_database where datname = %s", (write.database,)).fetchone() is None:
                continue
        with _connect(pg, write.database) as conn:
            conn.execute("set default_transaction_read_only = off")
            conn.execute("set session_replication_role = replica")
            names = [c[0] for c in _table_columns(conn, write.table) if c[2] and c[0] not in write.key]
            cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
            where = sql.SQL(" and ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in write.key)
            conn.execute(
                sql.SQL(
                    "update {t} set ({cols}) = (select {cols} from jsonb_populate_record(null::{t}, %s::jsonb)) where {where}"
                ).format(t=_table(write.table), cols=cols, where=where),
                (write.original, *write.key.values()),
            )
        restored.append(f"{write.site}/{write.database}/{write.table}")
    return restored


# --- files -------------------------------------------------------------------------------


def corrupt_file(path: str | Path, flips: int = 16) -> list[int]:
    """Damage ``path`` in place, keeping its size: ``flips`` bytes spread over the file
    (none in its first or last eighth, so headers and trailers that some formats check first
    stay plausible where possible) are inverted. Returns the offsets. Nothing to restore:
    the damage is the point (the file is the cutover's upload, e.g. a dump on the target
    host, which is this machine: ``sandbox.ssh.work_dir``)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"corrupt_file: {path} is empty")
    start, span = size // 8, max(1, size - 2 * (size // 8))
    offsets = sorted({start + (span * i) // flips for i in range(flips)})
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))
    return offsets


# --- processes left behind -----------------------------------------------------------------

_PROGRAMS = frozenset({"pg_dump", "pg_restore", "pg_dumpall", "psql"})
_WRAPPERS = frozenset({"sh", "dash", "bash", "setsid"})


@dataclass(frozen=True)
class _Traces:
    """What marks a process as working on one sandbox."""

    pg_ports: frozenset[str]
    ssh_port: str
    dirs: tuple[str, ...]

    @classmethod
    def of(cls, sandbox: SandboxInfo | None) -> _Traces:
        if sandbox is not None:
            return cls(
                frozenset({str(sandbox.onprem.port), str(sandbox.cloud.port)}),
                str(sandbox.ssh.port),
                (sandbox.dir, sandbox.ssh.work_dir),
            )
        names = ("CUTOVER_ONPREM_PG_PORT", "CUTOVER_CLOUD_PG_PORT", "CUTOVER_CLOUD_SSH_PORT", "CUTOVER_CLOUD_SSH_WORK_DIR")
        missing = [n for n in names if not os.environ.get(n)]
        if missing:
            raise RuntimeError(f"leftover_processes: no sandbox given and {', '.join(missing)} not in the environment")
        env = os.environ
        return cls(frozenset({env[names[0]], env[names[1]]}), env[names[2]], (env[names[3]],))


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def leftover_processes(sandbox: SandboxInfo | None = None) -> list[tuple[int, str]]:
    """(pid, command line) of every live pg_dump, pg_restore, pg_dumpall, psql and shell
    wrapper (``sh -c``, ``setsid``, a ``sh`` script named like one of those programs) working
    on this sandbox, sorted by pid. Without ``sandbox``, the one whose environment is in
    ``os.environ`` (the session fixture puts it there).

    Mechanism: a scan of /proc. A process works on the sandbox when its environment points
    libpq at one of its clusters (``PGPORT``), or it runs under a session of its sshd
    (``SSH_CONNECTION`` ends in its port; this survives the session's death), or its
    command line names the sandbox dir or the cloud host's work dir."""
    traces = _Traces.of(sandbox)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        argv = _argv(pid)
        if not argv:
            continue
        names = [os.path.basename(a) for a in argv[:2]]
        wrapper = names[0] in _WRAPPERS and ("-c" in argv[1:4] or names[-1] in _PROGRAMS)
        if not (names[0] in _PROGRAMS or wrapper) or processes.cmdline(pid) is None:  # None: a zombie
            continue
        env = _environ(pid)
        line = " ".join(argv)
        ours = (
            env.get("PGPORT") in traces.pg_ports
            or env.get("SSH_CONNECTION", "").split(" ")[-1] == traces.ssh_port
            or any(d and d in line for d in traces.dirs)
        )
        if ours:
            found.append((pid, line[:500]))
    return sorted(found)


def assert_no_processes_left(sandbox: SandboxInfo | None = None, timeout_s: float = 10) -> None:
    """Fail unless :func:`leftover_processes` is empty within ``timeout_s`` (remote
    watchdogs notice a lost connection within a second or so)."""
    deadline = time.monotonic() + timeout_s
    while (left := leftover_processes(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {left}"


# --- the estate, before and after ------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseState:
    fingerprint: fp.Fingerprint
    read_only: bool  # carries the freeze's database-level default


@dataclass(frozen=True)
class AppState:
    dns: tuple[str, ...]  # the A answer of its hostname at the sandbox's PowerDNS
    maintenance: dict[str, bool]  # site -> maintenance flag


@dataclass(frozen=True)
class EstateSnapshot:
    """Compare with ``==``; :func:`assert_rolled_back` says what differs."""

    databases: dict[str, DatabaseState]  # source (onprem) database -> state
    apps: dict[str, AppState]


def estate_snapshot(sandbox: SandboxInfo, apps: Iterable[str] | None = None) -> EstateSnapshot:
    """Every source database of ``apps`` (default: all): its fingerprint and whether it is
    read-only; every application's DNS answer and maintenance flag at both sites."""
    names = list(apps) if apps is not None else list(sandbox.apps)
    unknown = [a for a in names if a not in sandbox.apps]
    if unknown:
        raise ValueError(f"estate_snapshot: unknown application(s) {', '.join(unknown)}")
    databases = {}
    with _connect(sandbox.onprem) as admin:
        for app in names:
            for db in sandbox.apps[app].databases:
                with _connect(sandbox.onprem, db) as conn:
                    databases[db] = DatabaseState(fp.fingerprint(conn), freeze.is_read_only(admin, db))
    pdns = sandbox.powerdns
    states = {}
    with httpx.Client(timeout=10) as client:
        for app in names:
            flags = {}
            for site in SITES:
                response = client.get(f"{site_url(sandbox, app, site)}/maintenance")
                response.raise_for_status()
                flags[site] = response.json()["maintenance"]
            answer = query(sandbox.apps[app].hostname, "A", server_host=pdns.dns_host, server_port=pdns.dns_port)
            states[app] = AppState(answer.values, flags)
    return EstateSnapshot(databases, states)


def assert_rolled_back(sandbox: SandboxInfo, before: EstateSnapshot, keep_targets: Iterable[str] = ()) -> None:
    """Fail, listing every difference, unless the estate of ``before``'s applications is
    rolled back: each source database equal to ``before`` and writable, each DNS answer as
    ``before``, the old site out of maintenance and the new one in it, and no database of
    those names on the cloud cluster (except ``keep_targets``)."""
    now = estate_snapshot(sandbox, before.apps)
    problems = []
    for db, was in before.databases.items():
        state = now.databases[db]
        problems += [f"source {db}: {d}" for d in fp.compare(was.fingerprint, state.fingerprint)[:5]]
        if state.read_only:
            problems.append(f"source {db} is still read-only")
    for app, was in before.apps.items():
        state = now.apps[app]
        if state.dns != was.dns:
            problems.append(f"{app}: DNS answers {list(state.dns)}, before {list(was.dns)}")
        if state.maintenance != MAINTENANCE_BEFORE:
            problems.append(f"{app}: maintenance {state.maintenance}, expected {MAINTENANCE_BEFORE}")
    with _connect(sandbox.cloud) as admin:
        targets = {r[0] for r in admin.execute("select datname from pg_database")}
    left = sorted((targets & set(before.databases)) - set(keep_targets))
    if left:
        problems.append(f"target database(s) {', '.join(left)} still on the cloud cluster")
    assert not problems, "not rolled back: " + "; ".join(problems)
