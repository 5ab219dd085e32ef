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
        # A backend publishes its counters as it exits, just after the client hung up.
        deadline = time.monotonic() + 5
        moved = freeze.marker_moved(marker, freeze.change_marker(admin, source_db).to_dict())
        while not any(m.startswith("tup_updated ") for m in moved) and time.monotonic() < deadline:
            time.sleep(0.05)
            moved = freeze.marker_moved(marker, freeze.change_marker(admin, source_db).to_dict())
        assert any(m.startswith("tup_updated ") for m in moved), moved
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
    # The WAL position is cluster-wide and may move with any other database's activity.
    assert [m for m in freeze.marker_moved(before, after) if not m.startswith("wal_lsn ")] == []


def test_freezing_a_missing_database_is_a_permanent_error(onprem: PgEndpoint) -> None:
    with connect(onprem, "postgres", autocommit=True) as admin, pytest.raises(PermanentStepError, match="does not exist"):
        freeze.set_read_only(admin, "pgt_no_such_database")
