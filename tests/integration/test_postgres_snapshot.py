"""An exported snapshot shared by pg_dump and the fingerprint: both describe the database as
it was when the snapshot was taken, whatever was committed after. Real sandbox clusters;
databases of its own, dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cutover.postgres import dump
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.postgres.fingerprint import compare, fingerprint, fingerprint_parallel
from cutover.postgres.passfile import client_environment
from cutover.process import run_program, start_program
from cutover.sandbox.info import SandboxInfo

pytestmark = pytest.mark.integration


def endpoint(pg) -> PgEndpoint:  # type: ignore[no-untyped-def]
    return PgEndpoint(pg.host, pg.port, pg.user, pg.password, bin_dir=pg.bin_dir)


@pytest.fixture()
def source_db(sandbox: SandboxInfo) -> Iterator[str]:
    onprem = endpoint(sandbox.onprem)
    db = f"pgt{uuid.uuid4().hex[:6]}_snap"
    with connect(onprem, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {db}")
    with connect(onprem, db, autocommit=True) as conn:
        conn.execute("create table persons (id int primary key, name text)")
        conn.execute("insert into persons select g, 'p' || g from generate_series(1, 500) g")
        conn.execute("create table notes (id int, body text)")
        conn.execute("insert into notes select g, repeat('n', g) from generate_series(1, 50) g")
    yield db
    with connect(onprem, "postgres", autocommit=True) as admin:
        dump.drop_database(admin, db)


def test_the_dump_and_the_fingerprint_read_the_same_snapshot(sandbox: SandboxInfo, source_db: str) -> None:
    onprem, cloud = endpoint(sandbox.onprem), endpoint(sandbox.cloud)
    target_db = f"{source_db}_copy"
    try:
        with dump.exported_snapshot(onprem, source_db) as snapshot:
            # A write committed after the snapshot: neither the dump nor the fingerprint sees it.
            with connect(onprem, source_db, autocommit=True) as writer:
                writer.execute("update persons set name = 'later' where id = 7")
                writer.execute("insert into notes values (51, 'later')")
            with connect(onprem, source_db, autocommit=True) as conn:
                in_snapshot = fingerprint(conn, snapshot=snapshot)
            assert in_snapshot == fingerprint_parallel(lambda: connect(onprem, source_db, autocommit=True), 2, snapshot=snapshot)
            with connect(cloud, "postgres", autocommit=True) as admin:
                dump.ensure_empty_database(admin, target_db, cloud.user, marker="cutover:snapshot-test")
            argv = dump.pg_dump_argv(onprem, source_db, format="custom", snapshot=snapshot)
            assert f"--snapshot={snapshot}" in argv
            with (
                client_environment(onprem) as source_env,
                client_environment(cloud) as target_env,
                start_program(argv, env=source_env, timeout_s=120, log_name="pg_dump") as producer,
            ):
                run_program(
                    dump.pg_restore_argv(target_db, bin_dir=sandbox.cloud.bin_dir),
                    env=target_env,
                    stdin=producer.stdout,
                    timeout_s=120,
                    log_name="pg_restore",
                )
                producer.wait()
        assert in_snapshot.tables["public.notes"].rows == 50
        with connect(cloud, target_db, autocommit=True) as conn:
            assert compare(in_snapshot, fingerprint(conn)) == []
        with connect(onprem, source_db, autocommit=True) as conn:
            now = fingerprint(conn)
        assert compare(in_snapshot, now) == [
            "table public.notes: rows 50 != 51",
            "table public.persons: content differs (500 rows on both)",
        ]
    finally:
        with connect(cloud, "postgres", autocommit=True) as admin:
            dump.drop_database(admin, target_db)


def test_a_snapshot_id_is_checked_before_it_reaches_a_command_line(sandbox: SandboxInfo) -> None:
    with pytest.raises(ValueError, match="not a snapshot id"):
        dump.pg_dump_argv(endpoint(sandbox.onprem), "bzk", format="custom", snapshot="x; rm -rf /")


def test_dumps_are_compressed_at_the_cheap_level_unless_asked_otherwise(sandbox: SandboxInfo) -> None:
    onprem = endpoint(sandbox.onprem)
    assert "--compress=1" in dump.pg_dump_argv(onprem, "bzk", format="custom")
    assert not any(a.startswith("--compress") for a in dump.pg_dump_argv(onprem, "bzk", format="custom", compress=None))
    with pytest.raises(ValueError, match="0-9"):
        dump.pg_dump_argv(onprem, "bzk", format="custom", compress=10)
