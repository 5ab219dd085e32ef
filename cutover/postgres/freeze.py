"""Freezing a source database (no more writes) and the cheap proof that it stayed frozen.

The freeze is ``ALTER DATABASE ... SET default_transaction_read_only = on`` followed by
ending every other session on that database, so that no session keeps writing under the
old default. It stops applications, not a determined user: any session may still run
``SET default_transaction_read_only = off`` or ``BEGIN READ WRITE``, and a role- or
role-in-database-level setting of the same parameter overrides the database's. That is why
the source is checked again before the DNS switch.

The check has two levels. :func:`change_marker` is cheap: the database's cumulative write
counters (rows inserted, updated, deleted, which also count DDL through the catalogs) and
the cluster's WAL position. Equal markers mean nothing was written. A moved marker does
*not* mean the data changed: the WAL position moves with any activity in the whole cluster
(another database, autovacuum, a checkpoint), autovacuum's ANALYZE bumps the counters, and
statistics can be reset. So a moved marker means "take a full fingerprint and compare",
and only the fingerprint decides. Limits: the counters of a session that is still running
are published with a delay (up to a few seconds; a session that ends publishes them at
exit), ``nextval()`` on its own moves no counter, and writes to unlogged tables write no
WAL. The transaction counter ``xact_commit`` is deliberately not part of the marker:
read-only transactions (taking the fingerprint, to begin with) move it. Two markers are
equal (as dataclasses or as their ``to_dict()``) exactly when :func:`marker_moved` is empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
import structlog
from psycopg import sql

from cutover.errors import PermanentStepError, TransientStepError
from cutover.postgres._errors import first_line as _first_line
from cutover.postgres._errors import where as _where

log = structlog.get_logger()

_SETTING = "default_transaction_read_only"
_TRUE = {"on", "true", "yes", "1"}
_TERMINATE_WAIT_MS = 5000


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
    """The cheap "did anything change" evidence of one database; see the module docstring
    for what equal and unequal markers mean. Compare with :func:`marker_moved`."""

    database: str
    tup_inserted: int
    tup_updated: int
    tup_deleted: int
    stats_reset: str | None
    wal_lsn: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_COMPARED = ("database", "tup_inserted", "tup_updated", "tup_deleted", "stats_reset", "wal_lsn")


def change_marker(admin_conn: psycopg.Connection[Any], dbname: str) -> ChangeMarker:
    """The database's write counters and the cluster's WAL position, now."""
    _require_database(admin_conn, dbname)
    # Statistics are cached per transaction; drop the cache so this reads current values,
    # and publish this backend's own pending counters first.
    _run(admin_conn, "select pg_stat_clear_snapshot()", None, dbname)
    row = _run(
        admin_conn,
        """select d.tup_inserted, d.tup_updated, d.tup_deleted, d.stats_reset::text,
                  (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text
           from pg_stat_database d where d.datname = %s""",
        (dbname,),
        dbname,
    ).fetchone()
    if row is None:
        raise PermanentStepError(f"database {dbname} has no statistics on {_where(admin_conn)}")
    return ChangeMarker(
        database=dbname,
        tup_inserted=int(row[0]),
        tup_updated=int(row[1]),
        tup_deleted=int(row[2]),
        stats_reset=row[3],
        wal_lsn=str(row[4]),
    )


def marker_moved(before: ChangeMarker | dict[str, Any], after: ChangeMarker | dict[str, Any]) -> list[str]:
    """What moved between two markers (dicts from ``to_dict`` accepted), e.g.
    ``["tup_updated 10 -> 12", "wal_lsn 0/1A2B -> 0/1C00"]``; empty when nothing that
    signals a write moved. Non-empty means: take a full fingerprint."""
    a = before.to_dict() if isinstance(before, ChangeMarker) else before
    b = after.to_dict() if isinstance(after, ChangeMarker) else after
    return [f"{key} {a.get(key)} -> {b.get(key)}" for key in _COMPARED if a.get(key) != b.get(key)]


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
