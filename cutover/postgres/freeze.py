"""Freezing a source database (no more writes) and the cheap proof that it stayed frozen.

The freeze is ``ALTER DATABASE ... SET default_transaction_read_only = on`` followed by
ending every other session on that database, so that no session keeps writing under the
old default. It stops applications, not a determined user: any session may still run
``SET default_transaction_read_only = off`` or ``BEGIN READ WRITE``, and a role- or
role-in-database-level setting of the same parameter overrides the database's. That is why
the source is checked again before the DNS switch.

The check has two levels. :func:`change_marker` is the cheap one, and it is about *this
database only* (a cluster-wide position such as the WAL's moves with every other database,
a checkpoint, autovacuum, so it proves nothing here). Two markers are equal, and
:func:`marker_moved` is empty, only when all of this holds between them:

* every table, partition and materialized view of the database, and the large-object
  catalogs, has the same storage (``relfilenode``: TRUNCATE, VACUUM FULL, a rewriting ALTER
  and a plain REFRESH give a new one) and the same cumulative write counters
  (``n_tup_ins``, ``n_tup_upd``, ``n_tup_del``: every inserted, updated or deleted row,
  COPY included, committed or not), and no relation came or went;
* nothing can have reset or lost those counters: the database's ``stats_reset`` (set by
  ``pg_stat_reset()`` and by resetting a single table's counters), the cluster's shared
  ``stats_reset`` (``pg_stat_bgwriter``: set when crash recovery throws all counters away)
  and the server's start time are unchanged;
* the sequence states and the schema objects are the fingerprint's own
  (:func:`cutover.postgres.fingerprint.catalog_state`: ``nextval()`` moves no counter, and
  ``ALTER TABLE ... ADD COLUMN`` no storage), and the prepared transactions are the same;
* no other session is connected to the database at the check (autovacuum aside, which
  changes no counter above): a session publishes its counters when it goes idle or exits,
  so only then is a write it committed sure to be counted.

Equal markers prove that no row, sequence, large object or schema object changed: what
the fingerprint compares. A moved marker proves nothing: the full fingerprint decides.
Both need PostgreSQL 15 or later, where the counters live in shared memory and none is
lost; before 15 they travelled over UDP to a collector that may drop them, so there the
marker always counts as moved. Reading a database (the fingerprint, pg_dump) moves nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg import sql

from cutover.errors import PermanentStepError, TransientStepError
from cutover.postgres import fingerprint
from cutover.postgres._errors import first_line as _first_line
from cutover.postgres._errors import where as _where

log = structlog.get_logger()

_SETTING = "default_transaction_read_only"
_TRUE = {"on", "true", "yes", "1"}
_TERMINATE_WAIT_MS = 5000
_EXACT_FROM_SERVER = 150000  # PostgreSQL 15: statistics in shared memory


def set_read_only(admin_conn: psycopg.Connection[Any], dbname: str) -> int:
    """Make ``dbname`` read-only for every new transaction and end every other session on
    it (waiting for them to exit). Idempotent. Returns how many sessions were ended.

    Raises TransientStepError if a session that predates the freeze is still there after
    being told to end, PermanentStepError if the database does not exist.
    ``admin_conn``: autocommit, a superuser or the database owner, on another database."""
    _require_database(admin_conn, dbname)
    frozen_at = _one(admin_conn, "select clock_timestamp()", None, dbname)
    _run(
        admin_conn,
        sql.SQL("alter database {} set default_transaction_read_only = on").format(sql.Identifier(dbname)),
        None,
        dbname,
    )
    ended = _end_sessions(admin_conn, dbname, started_before=None)
    survivors = _one(
        admin_conn,
        "select count(*) from pg_stat_activity where datname = %s and pid <> pg_backend_pid() and backend_start < %s",
        (dbname, frozen_at),
        dbname,
    )
    if survivors:
        raise TransientStepError(f"freeze of database {dbname} on {_where(admin_conn)}: {survivors} session(s) did not end")
    prepared = _one(admin_conn, "select count(*) from pg_prepared_xacts where database = %s", (dbname,), dbname)
    if prepared:
        # A prepared transaction can still commit its writes after the freeze.
        log.warning("prepared_transactions_at_freeze", database=dbname, count=prepared)
    log.info("database_frozen", database=dbname, sessions_ended=ended)
    return ended


def set_writable(admin_conn: psycopg.Connection[Any], dbname: str) -> int:
    """Undo :func:`set_read_only`: remove the database-level setting (restoring whatever
    the server default is) and end the sessions opened during the freeze, which still carry
    the read-only default. Idempotent. Returns how many sessions were ended."""
    _require_database(admin_conn, dbname)
    was_frozen = is_read_only(admin_conn, dbname)
    changed_at = _one(admin_conn, "select clock_timestamp()", None, dbname)
    _run(
        admin_conn, sql.SQL("alter database {} reset default_transaction_read_only").format(sql.Identifier(dbname)), None, dbname
    )
    ended = _end_sessions(admin_conn, dbname, started_before=changed_at) if was_frozen else 0
    log.info("database_unfrozen", database=dbname, sessions_ended=ended, was_frozen=was_frozen)
    return ended


def is_read_only(admin_conn: psycopg.Connection[Any], dbname: str) -> bool:
    """Whether ``dbname`` carries the database-level read-only default set by the freeze."""
    _require_database(admin_conn, dbname)
    rows = _run(
        admin_conn,
        """select unnest(s.setconfig) from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
           where d.datname = %s and s.setrole = 0""",
        (dbname,),
        dbname,
    ).fetchall()
    for (item,) in rows:
        name, _, value = str(item).partition("=")
        if name.strip().lower() == _SETTING:
            return value.strip().lower() in _TRUE
    return False


@dataclass(frozen=True)
class ChangeMarker:
    """The cheap "did anything change" evidence of one database, now; see the module
    docstring for what equal and unequal markers mean. Compare with :func:`marker_moved`."""

    database: str
    exact: bool  # False before PostgreSQL 15: the counters may have lost writes
    database_oid: int = 0
    server_started: str = ""
    cluster_stats_reset: str | None = None
    stats_reset: str | None = None
    relations: int = 0
    writes: int = 0  # rows inserted + updated + deleted, over the relations
    relations_digest: str = ""  # (oid, relfilenode, ins, upd, del) of every relation
    sequences_digest: str = ""
    schema_hash: str = ""
    prepared: list[str] = field(default_factory=list)  # gids of prepared transactions
    other_sessions: list[str] = field(default_factory=list)  # "pid backend_type application state"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COMPARED = (
    "database",
    "exact",
    "database_oid",
    "server_started",
    "cluster_stats_reset",
    "stats_reset",
    "relations",
    "writes",
    "relations_digest",
    "sequences_digest",
    "schema_hash",
    "prepared",
)

_RELATIONS = """
    select c.oid::bigint, pg_relation_filenode(c.oid)::bigint,
           coalesce(s.n_tup_ins, 0), coalesce(s.n_tup_upd, 0), coalesce(s.n_tup_del, 0)
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    left join pg_stat_all_tables s on s.relid = c.oid
    where (c.relkind in ('r', 'm') and c.relpersistence <> 't'
           and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast' and n.nspname !~ '^pg_temp_')
       or c.oid in ('pg_catalog.pg_largeobject'::regclass, 'pg_catalog.pg_largeobject_metadata'::regclass)
    order by 1
"""

_SERVER = """
    select d.oid::bigint, pg_postmaster_start_time()::text, (select stats_reset::text from pg_stat_bgwriter), s.stats_reset::text
    from pg_database d left join pg_stat_database s on s.datid = d.oid
    where d.datname = current_database()
"""

# Autovacuum changes none of the compared counters; anything else connected may hold
# counters it has not published yet.
_OTHER_SESSIONS = """
    select pid || ' ' || coalesce(backend_type, '') || ' ' || coalesce(nullif(application_name, ''), '-') || ' ' || coalesce(state, '-')
    from pg_stat_activity
    where datname = current_database() and pid <> pg_backend_pid() and backend_type is distinct from 'autovacuum worker'
    order by pid
"""


def change_marker(admin_conn: psycopg.Connection[Any], dbname: str) -> ChangeMarker:
    """The write proof of ``dbname`` now (see the module docstring). ``admin_conn`` is a
    connection to another database of the same cluster (a superuser, or a role that may
    connect to ``dbname`` and read its catalog); a connection to ``dbname`` itself is
    opened with its parameters, and closed."""
    _require_database(admin_conn, dbname)
    if admin_conn.info.server_version < _EXACT_FROM_SERVER:
        return ChangeMarker(database=dbname, exact=False)
    with _connection_to(admin_conn, dbname) as conn:
        # Statistics are cached per transaction; drop the cache so this reads current values.
        _run(conn, "select pg_stat_clear_snapshot()", None, dbname)
        row = _run(conn, _SERVER, None, dbname).fetchone()
        assert row is not None
        relations = _run(conn, _RELATIONS, None, dbname).fetchall()
        prepared = [
            r[0]
            for r in _run(conn, "select gid from pg_prepared_xacts where database = current_database() order by 1", None, dbname)
        ]
        sessions = [r[0] for r in _run(conn, _OTHER_SESSIONS, None, dbname)]
        try:
            schema_hash, sequences = fingerprint.catalog_state(conn)
        except psycopg.OperationalError as exc:
            raise TransientStepError(f"database {dbname} on {_where(conn)}: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise PermanentStepError(f"database {dbname} on {_where(conn)}: {_first_line(exc)}") from exc
    return ChangeMarker(
        database=dbname,
        exact=True,
        database_oid=int(row[0]),
        server_started=str(row[1]),
        cluster_stats_reset=row[2],
        stats_reset=row[3],
        relations=len(relations),
        writes=sum(int(r[2]) + int(r[3]) + int(r[4]) for r in relations),
        relations_digest=_digest([list(map(int, r)) for r in relations]),
        sequences_digest=_digest(sorted([name, s.last_value, s.is_called] for name, s in sequences.items())),
        schema_hash=schema_hash,
        prepared=prepared,
        other_sessions=sessions,
    )


def marker_moved(before: ChangeMarker | dict[str, Any], after: ChangeMarker | dict[str, Any]) -> list[str]:
    """Why ``after`` does not prove that nothing was written since ``before`` (dicts from
    ``to_dict`` accepted), e.g. ``["writes 1200 -> 1201"]``; empty when it proves it.
    Non-empty means: take a full fingerprint and compare. A marker of an older kind (one
    persisted by an earlier version) never proves anything."""
    a = before.to_dict() if isinstance(before, ChangeMarker) else before
    b = after.to_dict() if isinstance(after, ChangeMarker) else after
    if not b.get("exact"):
        return ["no exact write counters before PostgreSQL 15"]
    moved = [f"{key} {_short(a.get(key))} -> {_short(b.get(key))}" for key in _COMPARED if a.get(key) != b.get(key)]
    if b.get("other_sessions"):
        sessions = b["other_sessions"]
        moved.append(
            f"{len(sessions)} other session(s) connected, whose latest writes may not be counted yet: {', '.join(sessions[:5])}"
        )
    return moved


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] + "..." if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def _connection_to(admin_conn: psycopg.Connection[Any], dbname: str) -> psycopg.Connection[Any]:
    """An autocommit connection to ``dbname`` with the parameters of ``admin_conn``."""
    params = admin_conn.info.get_parameters()
    params["dbname"] = dbname
    password = admin_conn.info.password
    if password:
        params["password"] = password
    try:
        return psycopg.connect(**params, autocommit=True)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise TransientStepError(f"cannot connect to database {dbname} on {_where(admin_conn)}: {_first_line(exc)}") from exc


def _end_sessions(admin_conn: psycopg.Connection[Any], dbname: str, *, started_before: Any) -> int:
    query = "select pg_terminate_backend(pid, %s) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()"
    params: tuple[Any, ...] = (_TERMINATE_WAIT_MS, dbname)
    if started_before is not None:
        query += " and backend_start < %s"
        params += (started_before,)
    # pg_terminate_backend(pid, timeout) waits until that backend has exited (or warns).
    results = _run(admin_conn, query, params, dbname).fetchall()
    return len(results)


def _require_database(admin_conn: psycopg.Connection[Any], dbname: str) -> None:
    if _run(admin_conn, "select 1 from pg_database where datname = %s", (dbname,), dbname).fetchone() is None:
        raise PermanentStepError(f"database {dbname} does not exist on {_where(admin_conn)}")


def _one(conn: psycopg.Connection[Any], query: Any, params: Any, dbname: str) -> Any:
    row = _run(conn, query, params, dbname).fetchone()
    return None if row is None else row[0]


def _run(conn: psycopg.Connection[Any], query: Any, params: Any, dbname: str) -> psycopg.Cursor[Any]:
    try:
        return conn.execute(query, params)
    except psycopg.OperationalError as exc:
        raise TransientStepError(f"database {dbname} on {_where(conn)}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"database {dbname} on {_where(conn)}: {_first_line(exc)}") from exc
