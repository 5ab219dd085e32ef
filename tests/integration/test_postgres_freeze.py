"""Freezing a real source database: writes fail, open sessions end, and a write that
slips past the freeze is caught. Works on a database of its own on the onprem cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from cutover.errors import PermanentStepError
from cutover.postgres import dump, freeze
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.postgres.fingerprint import compare, fingerprint
from cutover.sandbox.info import SandboxInfo

pytestmark = pytest.mark.integration


@pytest.fixture()
def onprem(sandbox: SandboxInfo) -> PgEndpoint:
    pg = sandbox.onprem
    return PgEndpoint(pg.host, pg.port, pg.user, pg.password, bin_dir=pg.bin_dir)


@pytest.fixture()
def source_db(onprem: PgEndpoint) -> Iterator[str]:
    db = f"pgt{uuid.uuid4().hex[:6]}_frozen"
    with connect(onprem, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {db}")
    with connect(onprem, db, autocommit=True) as conn:
        # No autovacuum: its ANALYZE would move the write counters under the test.
        conn.execute("create table persons (id int primary key, name text) with (autovacuum_enabled = false)")
        conn.execute("insert into persons select g, 'p' || g from generate_series(1, 100) g")
    yield db
    with connect(onprem, "postgres", autocommit=True) as admin:
        dump.drop_database(admin, db)


def session(endpoint: PgEndpoint, db: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(endpoint.conninfo(db), autocommit=True)


def test_freeze_makes_new_writes_fail_and_ends_open_sessions(onprem: PgEndpoint, source_db: str) -> None:
    app = session(onprem, source_db)
    app.execute("select 1")
    busy = psycopg.connect(onprem.conninfo(source_db))  # in a transaction with an uncommitted write
    busy.execute("insert into persons values (1000, 'uncommitted')")
    with connect(onprem, "postgres", autocommit=True) as admin:
        assert freeze.is_read_only(admin, source_db) is False
        assert freeze.set_read_only(admin, source_db) == 2
        assert freeze.is_read_only(admin, source_db) is True
        for old in (app, busy):
            with pytest.raises(psycopg.OperationalError):
                old.execute("select 1")
        with session(onprem, source_db) as new, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            new.execute("insert into persons values (1001, 'late')")
        # a closed connection's backend exits asynchronously: wait for it, then freezing
        # again must find nothing left to end
        deadline = time.monotonic() + 10
        while admin.execute("select count(*) from pg_stat_activity where datname = %s", (source_db,)).fetchone()[0]:
            assert time.monotonic() < deadline, "sessions of the closed connections did not exit"
            time.sleep(0.05)
        assert freeze.set_read_only(admin, source_db) == 0  # again: nothing left to end
        assert freeze.is_read_only(admin, source_db) is True
    with session(onprem, source_db) as check:
        assert check.execute("select count(*) from persons").fetchone() == (100,)  # the uncommitted row is gone


def test_unfreeze_makes_writes_work_again_and_ends_sessions_opened_while_frozen(onprem: PgEndpoint, source_db: str) -> None:
    with connect(onprem, "postgres", autocommit=True) as admin:
        freeze.set_read_only(admin, source_db)
        during = session(onprem, source_db)
        during.execute("select 1")
        assert freeze.set_writable(admin, source_db) == 1
        assert freeze.is_read_only(admin, source_db) is False
        with pytest.raises(psycopg.OperationalError):
            during.execute("select 1")
        with session(onprem, source_db) as new:
            new.execute("insert into persons values (1002, 'after rollback')")
        assert freeze.set_writable(admin, source_db) == 0
        row = admin.execute(
            "select count(*) from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase where d.datname = %s",
            (source_db,),
        ).fetchone()
        assert row == (0,)  # the source is exactly as before: no leftover setting


def test_a_write_that_slips_past_the_freeze_moves_the_marker_and_the_fingerprint_names_the_table(
    onprem: PgEndpoint, source_db: str
) -> None:
    with connect(onprem, "postgres", autocommit=True) as admin:
        freeze.set_read_only(admin, source_db)
        marker = freeze.change_marker(admin, source_db)
        with connect(onprem, source_db, autocommit=True) as conn:
            frozen = fingerprint(conn)
        # A session that overrides the default, as any user may.
        with session(onprem, source_db) as sneaky:
            sneaky.execute("set default_transaction_read_only = off")
            sneaky.execute("update persons set name = 'sneaky' where id = 7")
        # A backend publishes its counters as it exits, just after the client hung up; until
        # then its session alone moves the marker.
        deadline = time.monotonic() + 5
        moved = freeze.marker_moved(marker, freeze.change_marker(admin, source_db).to_dict())
        assert moved
        while not any(m.startswith("writes ") for m in moved) and time.monotonic() < deadline:
            time.sleep(0.05)
            moved = freeze.marker_moved(marker, freeze.change_marker(admin, source_db).to_dict())
        assert any(m.startswith("writes ") for m in moved), moved
        with connect(onprem, source_db, autocommit=True) as conn:
            assert compare(frozen, fingerprint(conn)) == ["table public.persons: content differs (100 rows on both)"]


def test_reading_a_frozen_database_leaves_its_write_counters_alone(onprem: PgEndpoint, source_db: str) -> None:
    with connect(onprem, "postgres", autocommit=True) as admin:
        freeze.set_read_only(admin, source_db)
        time.sleep(0.2)
        before = freeze.change_marker(admin, source_db)
        with connect(onprem, source_db, autocommit=True) as conn:
            fingerprint(conn)
            conn.execute("select * from persons").fetchall()
        after = freeze.change_marker(admin, source_db)
    assert freeze.marker_moved(before, after) == []


def test_freezing_a_missing_database_is_a_permanent_error(onprem: PgEndpoint) -> None:
    with connect(onprem, "postgres", autocommit=True) as admin, pytest.raises(PermanentStepError, match="does not exist"):
        freeze.set_read_only(admin, "pgt_no_such_database")


def wait_alone(admin: psycopg.Connection[tuple[object, ...]], db: str) -> None:
    """Until the backends of the sessions just closed on ``db`` have exited (and published
    their counters): a closed connection's backend exits asynchronously."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = admin.execute(
            "select count(*) from pg_stat_activity where datname = %s and backend_type <> 'autovacuum worker'", (db,)
        ).fetchone()
        if row == (0,):
            return
        time.sleep(0.05)
    raise AssertionError(f"sessions on {db} did not end")


def test_the_proof_holds_while_another_database_of_the_cluster_is_written(onprem: PgEndpoint, source_db: str) -> None:
    """The source check's cheap proof is about its own database: writes, DDL, large objects
    and a checkpoint elsewhere on the cluster (all of which move the WAL) leave it equal."""
    other = f"{source_db}_other"
    with connect(onprem, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {other}")
        try:
            freeze.set_read_only(admin, source_db)
            frozen = freeze.change_marker(admin, source_db)
            assert frozen.exact and frozen.relations >= 3 and frozen.other_sessions == []
            with connect(onprem, other, autocommit=True) as busy:
                busy.execute("create table t (id int, body text)")
                busy.execute("insert into t select g, repeat('x', 100) from generate_series(1, 20000) g")
                busy.execute("update t set body = 'y' where id < 5000")
                busy.execute("select lo_from_bytea(0, 'elsewhere')")
                busy.execute("create sequence s; select nextval('s')")
            admin.execute("checkpoint")
            wait_alone(admin, other)
            assert freeze.marker_moved(frozen, freeze.change_marker(admin, source_db)) == []
        finally:
            dump.drop_database(admin, other)


# Each change on the frozen database, made by a session that overrides the read-only
# default, and what it moves in the marker.
PROOF_CHANGES = [
    ("insert into persons values (1001, 'late')", "writes "),
    ("update persons set name = 'x' where id = 3", "writes "),
    ("delete from persons where id = 4", "writes "),
    ("truncate persons", "relations_digest "),
    ("alter table persons add column note text", "schema_hash "),
    ("select nextval('numbers')", "sequences_digest "),
    ("select lo_from_bytea(0, 'late')", "writes "),
    ("create table more (k int)", "relations "),
    ("select pg_stat_reset_single_table_counters('persons'::regclass)", "stats_reset "),
]


def test_every_kind_of_write_moves_the_proof(onprem: PgEndpoint, source_db: str) -> None:
    with connect(onprem, source_db, autocommit=True) as setup:
        setup.execute("create sequence numbers")
    with connect(onprem, "postgres", autocommit=True) as admin:
        freeze.set_read_only(admin, source_db)
        wait_alone(admin, source_db)
        for change, moves in PROOF_CHANGES:
            before = freeze.change_marker(admin, source_db)
            with session(onprem, source_db) as writer:
                writer.execute("set default_transaction_read_only = off")
                writer.execute(change)
                # still connected: its counters may be unpublished, so nothing is proven
                assert any(
                    "other session(s) connected" in m for m in freeze.marker_moved(before, freeze.change_marker(admin, source_db))
                )
            wait_alone(admin, source_db)
            moved = freeze.marker_moved(before, freeze.change_marker(admin, source_db))
            assert any(m.startswith(moves) for m in moved), (change, moved)
            assert not any("session" in m for m in moved), moved
