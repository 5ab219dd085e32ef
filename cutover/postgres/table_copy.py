"""Copying a database table by table with ``COPY``, several tables at a time: the ``copy``
method, on pgcopydb's model.

``pg_dump | pg_restore`` moves a database through one process pair that compresses,
frames and replays it serially, then builds every index one after the other. Here:

1. the source exports a snapshot (:func:`cutover.postgres.dump.exported_snapshot`) that
   every reader below imports, so all of them see one instant of the database;
2. ``pg_dump -Fc`` in that snapshot writes the *schema archive*: everything but the rows of
   the tables copied here (``--exclude-table-data`` per table), so sequences' values, large
   objects and what extensions keep as data still come from pg_dump;
3. ``pg_restore --section=pre-data`` of that archive creates the tables, bare;
4. ``jobs`` pipes at a time, largest table first, ``psql -c "COPY t (columns) TO STDOUT"``
   in the snapshot feeds ``psql -1 -c "TRUNCATE ONLY t" -c "COPY t (columns) FROM STDIN
   WITH (FREEZE)"``, relayed and counted in 1 MiB reads (the step's progress), the rows
   written frozen (no later hint-bit rewrite), one transaction per table that commits only
   after the reader ended well, so a table is there whole or not at all; beside them
   ``pg_restore --section=data`` of the archive;
5. ``pg_restore --section=post-data -j jobs``: indexes, constraints, triggers and
   materialized views, built in parallel once the rows are in.

Columns are named on both ends (an inheritance child restored by pg_dump can come back with
its columns in another order) and generated columns are left to the target to compute.
Both ends render and read values under pg_dump's settings (ISO dates, postgres intervals,
exact floats, the source database's encoding, row security off so that a policy can never
silently hide rows).

Resuming: a :class:`CopyJournal` records what finished (the pre-data, each table, the
data section). A retry in a fresh snapshot (the source is frozen: the same rows) copies only
what is not recorded; a table cut off halfway is truncated and copied again inside its own
transaction. Once the post-data has begun a retry cannot tell what it built, and starts
the database over.

This module only moves rows; whether the copy equals the source is the verify step's
fingerprint (:mod:`cutover.postgres.fingerprint`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog

from cutover.errors import PermanentStepError, StepError, TransientStepError
from cutover.postgres import dump
from cutover.postgres.endpoint import PgEndpoint, connect, lost_server
from cutover.postgres.passfile import client_environment
from cutover.process import ProgramError, RunningProgram, run_program, start_program

log = structlog.get_logger()

# pg_dump's own session settings: what makes a value's text the same on both ends.
_RENDERING = "-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"
# Reading: never a policy filtering rows (an error instead), no timeout cutting a long COPY.
_SOURCE_OPTIONS = f"{_RENDERING} -c row_security=off -c statement_timeout=0 -c idle_in_transaction_session_timeout=0"
# Writing: the verify step proves the rows afterwards, so a commit need not wait for the
# WAL flush (a crash loses the last tables' commits, and the copy says so: not recorded).
_TARGET_OPTIONS = f"{_RENDERING} -c statement_timeout=0 -c synchronous_commit=off"

DATA_SECTION = "data section (sequences, large objects)"
_CHUNK = 1 << 20
_PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class Table:
    """A table whose rows this module copies."""

    schema: str
    name: str
    qualified: str  # "schema"."table", as quote_ident quotes it
    columns: tuple[str, ...]  # quoted, in attnum order, without generated columns
    bytes: int

    @property
    def key(self) -> str:
        """``schema.table``, for messages and the journal."""
        return f"{self.schema}.{self.name}"

    def column_list(self) -> str:
        return f" ({', '.join(self.columns)})" if self.columns else ""

    def exclude_pattern(self) -> str:
        """pg_dump's pattern for exactly this table: both names in double quotes, inside
        which no character is special (a ``"`` doubled)."""
        return '"{}"."{}"'.format(self.schema.replace('"', '""'), self.name.replace('"', '""'))


def tables_to_copy(conn: psycopg.Connection[Any]) -> list[Table]:
    """Every table of the connected database that holds rows of its own (ordinary tables and
    partitions; not partitioned roots, views, foreign tables, nor tables of extensions,
    whose data pg_dump handles), largest first."""
    rows = conn.execute(
        """select n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                  array(select quote_ident(a.attname) from pg_attribute a
                        where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
                        order by a.attnum),
                  pg_table_size(c.oid)
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
             and n.nspname !~ '^pg_toast' and n.nspname !~ '^pg_temp_'
             and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                             and d.objid = c.oid and d.deptype = 'e')
           order by 5 desc, 1, 2"""
    ).fetchall()
    return [Table(schema, name, qualified, tuple(columns), int(size)) for schema, name, qualified, columns, size in rows]


class CopyJournal:
    """What a copy of one database finished, in a 0600 JSON file beside the run's dumps:
    ``{"pre_data": bool, "done": [table keys and DATA_SECTION], "post_data": "started"|"done"}``.
    Written whole (temporary file, rename) after every item; safe from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.state: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {"pre_data": False, "done": [], "post_data": None}
        return state if isinstance(state, dict) else {"pre_data": False, "done": [], "post_data": None}

    @property
    def resumable(self) -> bool:
        """Whether an earlier attempt left work worth keeping: the tables were created and the
        post-data (which a retry cannot take up halfway) had not begun."""
        return bool(self.state.get("pre_data")) and not self.state.get("post_data")

    def done(self, item: str) -> bool:
        return item in self.state.get("done", [])

    def record(self, *, moved: int | None = None, **changes: Any) -> None:
        """Update the state and write it; ``done=ITEM`` appends an item, with ``moved`` the
        bytes it moved."""
        with self._lock:
            if "done" in changes:
                item = changes.pop("done")
                self.state["done"] = [*self.state.get("done", []), item]
                if moved is not None:
                    self.state["bytes"] = {**self.state.get("bytes", {}), item: moved}
            self.state.update(changes)
            temporary = self.path.with_suffix(".tmp")
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(handle, "w") as out:
                json.dump(self.state, out)
            os.replace(temporary, self.path)

    def reset(self) -> None:
        with self._lock:
            self.state = {"pre_data": False, "done": [], "post_data": None}
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class CopyOutcome:
    tables: int
    tables_copied: int  # this attempt; the rest were finished by an earlier one
    bytes: int  # of COPY text moved, by this attempt and the earlier ones it resumed


def copy_database(
    source: PgEndpoint,
    dbname: str,
    target: PgEndpoint,
    target_db: str,
    *,
    jobs: int,
    archive: Path,
    journal: CopyJournal,
    timeout_s: float | None,
    progress: Callable[[int], None] | None = None,
) -> CopyOutcome:
    """Copy ``dbname`` on ``source`` into the existing database ``target_db`` on ``target``
    (empty, or as an earlier attempt recorded in ``journal`` left it), as the module
    docstring says. ``archive`` is where the schema archive is written (a private file of
    the run). ``progress(bytes)`` gets the bytes of COPY text moved so far (about once a
    second, and at each table's end).

    A failure stops the other pipes and raises TransientStepError when a server could not
    be reached or went away, PermanentStepError otherwise, naming the database and table."""
    restore = target.tool("pg_restore")
    psql_source = source.tool("psql")
    psql_target = target.tool("psql")
    with dump.exported_snapshot(source, dbname) as snapshot:
        with connect(source, dbname, autocommit=True) as conn:
            conn.execute("begin isolation level repeatable read, read only")
            conn.execute(f"set transaction snapshot '{snapshot}'")
            tables = tables_to_copy(conn)
            row = conn.execute(
                "select pg_encoding_to_char(encoding) from pg_database where datname = current_database()"
            ).fetchone()
            conn.execute("rollback")
        assert row is not None
        encoding = str(row[0])
        with client_environment(source) as env:
            _run(
                [*dump.pg_dump_argv(source, dbname, format="custom", out=str(archive), snapshot=snapshot),
                 *(f"--exclude-table-data={t.exclude_pattern()}" for t in tables)],
                env, timeout_s, f"pg_dump schema archive {dbname}", dbname,
            )  # fmt: skip
        with client_environment(target) as env:
            if not journal.state.get("pre_data"):
                _run(
                    _restore_argv(restore, target_db, archive, "pre-data"),
                    env,
                    timeout_s,
                    f"pg_restore pre-data {target_db}",
                    dbname,
                )
                journal.record(pre_data=True)
        todo = [t for t in tables if not journal.done(t.key)]
        log.info("table_copy_started", database=dbname, tables=len(tables), to_copy=len(todo), jobs=jobs, snapshot=snapshot)
        copied = _copy_rows(
            todo,
            source=source,
            target=target,
            dbname=dbname,
            target_db=target_db,
            snapshot=snapshot,
            encoding=encoding,
            psql=(psql_source, psql_target),
            restore=restore,
            archive=archive,
            journal=journal,
            jobs=jobs,
            timeout_s=timeout_s,
            progress=progress,
        )
    journal.record(post_data="started")
    with client_environment(target) as env:
        _run(
            _restore_argv(restore, target_db, archive, "post-data", jobs=jobs),
            {**env, "PGOPTIONS": _RENDERING},
            timeout_s,
            f"pg_restore post-data {target_db}",
            dbname,
        )
    journal.record(post_data="done")
    earlier = sum(n for item, n in journal.state.get("bytes", {}).items() if item not in {t.key for t in todo})
    return CopyOutcome(tables=len(tables), tables_copied=len(todo), bytes=copied + earlier)


def _copy_rows(
    todo: list[Table],
    *,
    source: PgEndpoint,
    target: PgEndpoint,
    dbname: str,
    target_db: str,
    snapshot: str,
    encoding: str,
    psql: tuple[str, str],
    restore: str,
    archive: Path,
    journal: CopyJournal,
    jobs: int,
    timeout_s: float | None,
    progress: Callable[[int], None] | None,
) -> int:
    """The rows of ``todo`` and the archive's data section, ``jobs`` at a time; the bytes
    of COPY text moved."""
    cancel = threading.Event()
    done_bytes = [0]
    reported = [time.monotonic()]
    lock = threading.Lock()

    telling = threading.Lock()

    def moved(count: int, final: bool = False) -> None:
        """Count bytes on their way; tell ``progress`` at most every second, and at each
        table's end: from one thread at a time (a step's progress reporter runs in the
        step's context, which two threads cannot enter at once)."""
        with lock:
            done_bytes[0] += count
            now = time.monotonic()
            if progress is None or not (final or now - reported[0] >= _PROGRESS_EVERY_S):
                return
            reported[0] = now
        with telling:
            with lock:
                total = done_bytes[0]
            progress(total)

    def one_table(table: Table) -> None:
        reader = [
            psql[0], "-X", "-q", "-v", "ON_ERROR_STOP=1", dump.dbname_arg(dbname),
            "-c", "begin isolation level repeatable read, read only",
            "-c", f"set transaction snapshot '{snapshot}'",
            "-c", f"copy {table.qualified}{table.column_list()} to stdout",
        ]  # fmt: skip
        writer = [
            psql[1], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", dump.dbname_arg(target_db),
            "-c", f"truncate only {table.qualified}",
            "-c", f"copy {table.qualified}{table.column_list()} from stdin with (freeze)",
        ]  # fmt: skip
        mine = [0]

        def counted(count: int) -> None:
            mine[0] += count
            moved(count)

        with client_environment(source) as src_env, client_environment(target) as dst_env:
            producer = start_program(
                reader,
                env={**src_env, "PGOPTIONS": _SOURCE_OPTIONS, "PGCLIENTENCODING": encoding},
                timeout_s=timeout_s,
                log_name=f"COPY TO {dbname} {table.key}",
                cancel=cancel,
            )
            with producer:
                read_end, write_end = os.pipe()
                try:
                    consumer = start_program(
                        writer,
                        env={**dst_env, "PGOPTIONS": _TARGET_OPTIONS, "PGCLIENTENCODING": encoding},
                        stdin=read_end,
                        timeout_s=timeout_s,
                        log_name=f"COPY FROM {target_db} {table.key}",
                        cancel=cancel,
                    )
                finally:
                    os.close(read_end)
                with consumer:
                    try:
                        if not _relay(producer, write_end, counted):  # the writer stopped reading
                            producer.kill()
                            consumer.wait()
                            raise PermanentStepError(f"{dbname}: COPY into {table.key} stopped reading and exited 0")
                        # all read: only a reader that ended well may let the writer commit
                        producer.wait()
                        os.close(write_end)
                        write_end = -1
                        consumer.wait()
                    except BaseException as exc:
                        # the writer dies inside its transaction before its stdin closes: an
                        # end of file now would commit a table cut off halfway
                        consumer.kill()
                        if write_end >= 0:
                            os.close(write_end)
                        if isinstance(exc, ProgramError):
                            raise _failure(exc, dbname) from exc
                        raise
        journal.record(done=table.key, moved=mine[0])
        moved(0, final=True)

    def data_section() -> None:
        with client_environment(target) as env:
            _run(
                _restore_argv(restore, target_db, archive, "data"),
                {**env, "PGOPTIONS": _TARGET_OPTIONS},
                timeout_s,
                f"pg_restore data {target_db}",
                dbname,
                cancel=cancel,
            )
        journal.record(done=DATA_SECTION)

    work: list[Callable[[], None]] = [lambda t=t: one_table(t) for t in todo]  # type: ignore[misc]
    if not journal.done(DATA_SECTION):
        work.insert(min(1, len(work)), data_section)  # early, beside the largest table
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix=f"copy-{dbname[:20]}") as pool:
        futures: list[Future[None]] = [pool.submit(item) for item in work]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in finished if f.exception() is not None]
        if failed:
            cancel.set()
            for future in futures:
                future.cancel()
            wait(futures)
            error = failed[0].exception()
            assert error is not None
            raise error
    return done_bytes[0]


def _relay(producer: RunningProgram, write_fd: int, moved: Callable[[int], None]) -> bool:
    """The reader's output into the writer's stdin, counted. True at the reader's end of
    file, False when the writer stopped reading (its wait says why)."""
    assert producer.stdout is not None, "started with its output piped"
    source = producer.stdout.fileno()
    while True:
        chunk = os.read(source, _CHUNK)
        if not chunk:
            return True
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(write_fd, view) :]
        except BrokenPipeError:
            return False
        moved(len(chunk))


def _restore_argv(program: str, target_db: str, archive: Path, section: str, jobs: int = 1) -> list[str]:
    argv = [program, "--no-password", "--exit-on-error", dump.dbname_arg(target_db), f"--section={section}"]
    if jobs > 1:
        argv.append(f"--jobs={jobs}")
    return [*argv, str(archive)]


def _run(
    argv: list[str],
    env: dict[str, str],
    timeout_s: float | None,
    name: str,
    dbname: str,
    cancel: threading.Event | None = None,
) -> None:
    try:
        run_program(argv, env=env, timeout_s=timeout_s, log_name=name, cancel=cancel)
    except ProgramError as exc:
        raise _failure(exc, dbname) from exc


def _failure(exc: ProgramError, what: str) -> StepError:
    """A lost or unreachable server is worth a retry; a refusal (bad data, a missing role)
    is not: an operator must look."""
    if isinstance(exc, TransientStepError) or lost_server(exc.stderr_tail):
        return TransientStepError(f"{what}: {exc}")
    return PermanentStepError(f"{what}: {exc}")
