"""pg_dump and pg_restore command lines, and the database-level operations around a restore.

The argv builders only build: where and how a command runs (locally with
:func:`cutover.process.run_program`, or on the target host over SSH) is the caller's
choice. Connection parameters and the password travel in the environment
(:meth:`PgEndpoint.libpq_env`), never in argv.

:func:`exported_snapshot` holds a snapshot open on a connection of its own, so that
``pg_dump --snapshot`` (:func:`pg_dump_argv`) and a fingerprint
(:func:`cutover.postgres.fingerprint.fingerprint` with ``snapshot=``) read exactly the same
data at the same time, instead of one after the other.

A database the importer creates carries the comment ``cutover:<run key>`` (the *marker*)
from its creation on. :func:`ensure_empty_database` uses it to tell this run's own
half-finished attempt (dropped and created again) from somebody else's database (refused).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
import structlog
from psycopg import sql

from cutover.errors import PermanentStepError, TransientStepError, UnsafeChange
from cutover.postgres._errors import first_line as _first_line
from cutover.postgres._errors import where as _where
from cutover.postgres.endpoint import PgEndpoint, client_program, connect
from cutover.process import run_program

log = structlog.get_logger()

MARKER_PREFIX = "cutover:"

# pg_dump's zlib level. Its own default (6 for the custom and directory formats) spends
# twice the CPU of level 1 for about 12% fewer bytes (the sandbox's zaken database: 3.1 s
# and 21.5 MB against 1.7 s and 24.3 MB); the dump is CPU-bound long before a network of
# a few hundred Mbit/s is full, and on two cores it competes with everything else.
DEFAULT_COMPRESSION = 1


def dbname_arg(dbname: str) -> str:
    """``--dbname`` as a connection string, so that a database name containing ``=`` or
    spaces is taken as a name and not parsed as connection parameters."""
    escaped = dbname.replace("\\", "\\\\").replace("'", "\\'")
    return f"--dbname=dbname='{escaped}'"


def pg_dump_argv(
    endpoint: PgEndpoint,
    dbname: str,
    *,
    format: Literal["custom", "directory"],
    jobs: int = 1,
    out: str | None = None,
    snapshot: str | None = None,
    compress: int | None = DEFAULT_COMPRESSION,
) -> list[str]:
    """pg_dump of ``dbname`` with large objects, never prompting for a password.

    ``custom`` writes to stdout when ``out`` is None (for streaming) and runs in one job;
    ``directory`` needs ``out`` (a directory that must not exist or be empty) and dumps
    ``jobs`` tables at a time. ``compress`` is the zlib level (0-9; None: pg_dump's own
    default; see :data:`DEFAULT_COMPRESSION`). ``snapshot`` (from :func:`exported_snapshot`) makes it dump
    that snapshot; its transaction must stay open until pg_dump has connected (all its
    jobs), so keep the ``with`` around the whole dump."""
    if format not in ("custom", "directory"):
        raise ValueError(f"unknown pg_dump format {format!r}")
    argv = [endpoint.tool("pg_dump"), f"--format={format}", "--no-password", "--blobs", dbname_arg(dbname)]
    if format == "directory":
        if out is None:
            raise ValueError("a directory-format dump needs an output directory")
        argv += [f"--jobs={max(1, jobs)}", f"--file={out}"]
    elif out is not None:
        argv.append(f"--file={out}")
    if compress is not None:
        if not 0 <= compress <= 9:
            raise ValueError(f"pg_dump compression is 0-9, not {compress}")
        argv.append(f"--compress={compress}")
    if snapshot is not None:
        if not re.fullmatch(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9A-Fa-f]+)?", snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        argv.append(f"--snapshot={snapshot}")
    return argv


@contextmanager
def exported_snapshot(endpoint: PgEndpoint, dbname: str) -> Iterator[str]:
    """Open a REPEATABLE READ, READ ONLY transaction on a connection of its own, export its
    snapshot and give its id (``pg_export_snapshot()``) for the ``with`` block; the
    transaction ends, and the connection closes, when the block does.

    Every reader that imports the id (``pg_dump --snapshot``, ``SET TRANSACTION SNAPSHOT``)
    sees the database exactly as this transaction does. Raises TransientStepError when the
    server cannot be reached, PermanentStepError when it refuses (see
    :func:`cutover.postgres.endpoint.connect`)."""
    conn = connect(endpoint, dbname, autocommit=True)
    try:
        _execute(conn, "begin isolation level repeatable read, read only", None, dbname)
        row = _execute(conn, "select pg_export_snapshot()", None, dbname).fetchone()
        assert row is not None
        log.info("snapshot_exported", database=dbname, snapshot=row[0])
        yield str(row[0])
    finally:
        try:
            conn.execute("rollback")
        except psycopg.Error:
            pass  # a lost connection has no transaction left to end
        conn.close()


def pg_restore_argv(dbname: str, *, jobs: int = 1, path: str | None = None, bin_dir: str | None = None) -> list[str]:
    """pg_restore into the existing database ``dbname``, stopping at the first error.

    Meant to run on the target host, so the program path is built from ``bin_dir`` without
    looking it up here. Reads the archive from stdin when ``path`` is None (a custom-format
    stream, one job); ``jobs`` > 1 needs a ``path``. Owners and privileges are restored as
    dumped, so the roles must exist first (see :mod:`cutover.postgres.roles`)."""
    program = f"{bin_dir.rstrip('/')}/pg_restore" if bin_dir else "pg_restore"
    argv = [program, "--no-password", "--exit-on-error", dbname_arg(dbname)]
    if path is None:
        return argv
    if jobs > 1:
        argv.append(f"--jobs={jobs}")
    argv.append(path)
    return argv


def pg_restore_command(dbname: str, *, jobs: int = 1, path: str | None = None, bin_dir: str | None = None) -> str:
    """:func:`pg_restore_argv` as one shell-quoted string, for running over SSH."""
    return shlex.join(pg_restore_argv(dbname, jobs=jobs, path=path, bin_dir=bin_dir))


# --- versions -----------------------------------------------------------------------


def pg_dump_version(bin_dir: str | None = None, *, timeout_s: float = 30) -> tuple[int, int]:
    """(major, minor) of the pg_dump in ``bin_dir`` (or on PATH)."""
    program = client_program("pg_dump", bin_dir)
    result = run_program([program, "--version"], timeout_s=timeout_s, log_name="pg_dump --version", capture_stdout=True)
    text = (result.stdout or b"").decode("utf-8", "replace")
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", text)
    if not match:
        raise PermanentStepError(f"cannot tell the version of {program} from {text.strip()!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def server_version(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(major, minor) of the server ``conn`` is connected to."""
    number = conn.info.server_version  # e.g. 150008
    return number // 10000, number % 10000


def check_dump_compatible(dump_version: tuple[int, int], source_version: tuple[int, int]) -> None:
    """Raise PermanentStepError unless pg_dump's major version is at least the source
    server's: an older pg_dump refuses, or worse, misses what it does not know."""
    if dump_version[0] < source_version[0]:
        raise PermanentStepError(
            f"pg_dump {dump_version[0]}.{dump_version[1]} is older than the source server "
            f"{source_version[0]}.{source_version[1]}; install pg_dump {source_version[0]} or newer"
        )


# --- database-level operations ---------------------------------------------------------


def database_size(conn: psycopg.Connection[Any], dbname: str) -> int:
    """Size of ``dbname`` in bytes, as the server counts it. PermanentStepError if missing."""
    row = _execute(conn, "select pg_database_size(datname) from pg_database where datname = %s", (dbname,), dbname).fetchone()
    if row is None:
        raise PermanentStepError(f"database {dbname} does not exist on {_where(conn)}")
    return int(row[0])


def database_comment(admin_conn: psycopg.Connection[Any], dbname: str) -> str | None:
    """The comment on ``dbname`` (where the importer's marker lives), or None."""
    row = _execute(
        admin_conn, "select shobj_description(oid, 'pg_database') from pg_database where datname = %s", (dbname,), dbname
    ).fetchone()
    return None if row is None else row[0]


def database_exists(admin_conn: psycopg.Connection[Any], dbname: str) -> bool:
    return _execute(admin_conn, "select 1 from pg_database where datname = %s", (dbname,), dbname).fetchone() is not None


def ensure_empty_database(admin_conn: psycopg.Connection[Any], dbname: str, owner: str, *, marker: str | None = None) -> str:
    """Make sure ``dbname`` exists, is empty and is ready for pg_restore; return what was
    done: ``"created"``, ``"recreated"`` or ``"existing-empty"``.

    * missing: created from template0 with ``owner``, and ``marker`` as its comment;
    * carrying ``marker`` (this run's earlier, unfinished attempt): dropped, sessions
      ended, and created again;
    * existing and empty (no user objects): kept, and given the marker;
    * anything else: UnsafeChange, because restoring into it would mix two databases.

    ``admin_conn`` must be an autocommit connection of a role allowed to create databases,
    connected to another database (e.g. ``postgres``)."""
    if marker is not None and not marker.startswith(MARKER_PREFIX):
        raise ValueError(f"a marker starts with {MARKER_PREFIX!r}")
    if not database_exists(admin_conn, dbname):
        _create(admin_conn, dbname, owner, marker)
        return "created"
    comment = database_comment(admin_conn, dbname)
    if marker is not None and comment == marker:
        log.info("database_recreated", database=dbname, reason="unfinished attempt of this run")
        drop_database(admin_conn, dbname)
        _create(admin_conn, dbname, owner, marker)
        return "recreated"
    contents = _user_object_count(admin_conn, dbname)
    if contents:
        raise UnsafeChange(
            f"database {dbname} on {_where(admin_conn)} already exists and is not empty ({contents}); "
            f"it was not created by this run (comment {comment!r}); drop or rename it to go on"
        )
    if marker is not None:
        _set_comment(admin_conn, dbname, marker)
    log.info("database_reused", database=dbname, reason="exists and is empty")
    return "existing-empty"


def set_marker(admin_conn: psycopg.Connection[Any], dbname: str, marker: str) -> None:
    """Put ``marker`` on ``dbname`` as its comment (e.g. ``cutover:<run key>:imported``)."""
    _set_comment(admin_conn, dbname, marker)


def drop_database(admin_conn: psycopg.Connection[Any], dbname: str) -> bool:
    """Drop ``dbname`` and end its sessions; a missing database counts as dropped.
    Returns whether it existed."""
    existed = database_exists(admin_conn, dbname)
    _execute(admin_conn, sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)), None, dbname)
    if existed:
        log.info("database_dropped", database=dbname)
    return existed


def rename_database(admin_conn: psycopg.Connection[Any], old: str, new: str) -> None:
    """Rename ``old`` to ``new``, ending the sessions on ``old`` first (PostgreSQL refuses
    to rename a database in use). Already renamed (``old`` missing, ``new`` present) is
    success; both present, or neither, is an error."""
    has_old, has_new = database_exists(admin_conn, old), database_exists(admin_conn, new)
    if not has_old and has_new:
        return
    if not has_old:
        raise PermanentStepError(f"cannot rename database {old} on {_where(admin_conn)}: it does not exist")
    if has_new:
        raise UnsafeChange(f"cannot rename database {old} to {new} on {_where(admin_conn)}: {new} exists")
    _execute(
        admin_conn,
        "select pg_terminate_backend(pid, 5000) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
        (old,),
        old,
    )
    _execute(admin_conn, sql.SQL("alter database {} rename to {}").format(sql.Identifier(old), sql.Identifier(new)), None, old)
    log.info("database_renamed", database=old, to=new)


def _create(admin_conn: psycopg.Connection[Any], dbname: str, owner: str, marker: str | None) -> None:
    # template0: pg_restore expects a database without the local additions of template1.
    _execute(
        admin_conn,
        sql.SQL("create database {} owner {} template template0").format(sql.Identifier(dbname), sql.Identifier(owner)),
        None,
        dbname,
    )
    if marker is not None:
        _set_comment(admin_conn, dbname, marker)
    log.info("database_created", database=dbname, owner=owner)


def _set_comment(admin_conn: psycopg.Connection[Any], dbname: str, comment: str) -> None:
    _execute(
        admin_conn,
        sql.SQL("comment on database {} is {}").format(sql.Identifier(dbname), sql.Literal(comment)),
        None,
        dbname,
    )


def _user_object_count(admin_conn: psycopg.Connection[Any], dbname: str) -> str:
    """What the database holds beyond a fresh template0 copy, e.g. ``"3 relations"``; empty
    when it holds nothing. Connects to it with the admin connection's parameters."""
    params = admin_conn.info.get_parameters()
    params["dbname"] = dbname
    password = admin_conn.info.password
    if password:
        params["password"] = password
    try:
        with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
            row = conn.execute(
                """select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                           where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'),
                          (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                           where n.nspname not in ('pg_catalog', 'information_schema')),
                          (select count(*) from pg_namespace where oid >= 16384 and nspname !~ '^pg_'),
                          (select count(*) from pg_largeobject_metadata),
                          (select count(*) from pg_type t join pg_namespace n on n.oid = t.typnamespace
                           where n.nspname not in ('pg_catalog', 'information_schema') and t.typrelid = 0 and t.typcategory <> 'A')"""
            ).fetchone()
    except psycopg.OperationalError as exc:
        raise TransientStepError(f"cannot inspect database {dbname} on {_where(admin_conn)}: {_first_line(exc)}") from exc
    assert row is not None
    names = ("relations", "functions", "schemas", "large objects", "types")
    return ", ".join(f"{n} {name}" for n, name in zip(row, names, strict=False) if n)


def _execute(conn: psycopg.Connection[Any], query: Any, params: Any, dbname: str) -> psycopg.Cursor[Any]:
    try:
        return conn.execute(query, params)
    except psycopg.OperationalError as exc:
        raise TransientStepError(f"database {dbname} on {_where(conn)}: {_first_line(exc)}") from exc
    except psycopg.errors.ObjectInUse as exc:
        raise TransientStepError(f"database {dbname} on {_where(conn)}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"database {dbname} on {_where(conn)}: {_first_line(exc)}") from exc


def database_owner(conn: psycopg.Connection[Any]) -> str:
    """The owner of the database ``conn`` is connected to."""
    row = _execute(
        conn, "select pg_get_userbyid(datdba) from pg_database where datname = current_database()", None, "current"
    ).fetchone()
    assert row is not None, "the connected database is in pg_database"
    return str(row[0])


def rows_written(conn: psycopg.Connection[Any]) -> int:
    """Rows inserted, updated and deleted in the database ``conn`` is connected to, from the
    statistics counters (they lag by up to a second and restart after a stats reset; good
    enough to tell an operator "the new site took N writes")."""
    row = _execute(
        conn, "select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables", None, "current"
    ).fetchone()
    return int(row[0]) if row else 0
