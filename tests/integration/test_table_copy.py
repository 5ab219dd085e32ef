"""The ``copy`` method: tables copied with COPY, several at a time, through an SSH tunnel to
the target cluster. Real sandbox clusters (onprem -> cloud) and its real sshd.

What is proven: a database with every kind of object that makes a table copy go wrong
(inheritance children whose columns pg_dump reorders, generated columns, partitions, large
objects, sequences, a zero-column table, names that need quoting, a source database with
another DateStyle) comes out with the source's fingerprint; a copy cut off after a table
resumes with the tables it finished, and only those; the tunnel trusts the pinned host key
only and proves it reaches a PostgreSQL server before anything is copied.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cutover.errors import PermanentStepError, TransientStepError
from cutover.phases import database
from cutover.postgres import dump, table_copy
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.postgres.fingerprint import compare, fingerprint
from cutover.runbook.loader import load_runbook
from cutover.sandbox.info import SandboxInfo
from cutover.sandbox.reset import reset
from cutover.ssh import tunnel
from cutover.ssh.target import SshTarget

pytestmark = pytest.mark.integration

P = f"tc{uuid.uuid4().hex[:6]}"
OTHER_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

TRICKY_SQL = '''
create schema "Odd ""Schema"".x";
create table "Odd ""Schema"".x"."ta.ble ""q""" (id int primary key, "col ""q""" text, "É" text);
insert into "Odd ""Schema"".x"."ta.ble ""q""" select g, 'v' || g, 'é' || g from generate_series(1, 500) g;
create table public.base (id int, note text);
create table public.child (extra text) inherits (public.base);
alter table public.base add column late int;
insert into public.base values (1, 'b1', 10);
insert into public.child (id, note, extra, late) values (3, 'c3', 'x', 30), (4, 'c4', 'y', 40);
create table public.gen (a int, b int generated always as (a * 2) stored, c text default 'd');
insert into public.gen (a) select g from generate_series(1, 300) g;
create table public.events (id bigserial, at date not null, what text) partition by range (at);
create table public.events_a partition of public.events for values from ('2020-01-01') to ('2021-01-01');
create table public.events_b partition of public.events for values from ('2021-01-01') to ('2022-01-01');
insert into public.events (at, what) select date '2020-01-01' + (g % 700), 'e' || g from generate_series(1, 3000) g;
create table public.people (id bigint generated always as identity primary key, born date, stay interval,
  score float8, photo bytea, tags text[], extra jsonb, seen timestamptz);
insert into public.people (born, stay, score, photo, tags, extra, seen)
select date '1950-01-01' + g, g * interval '90 minutes', 1.0 / 3 * g, decode(md5(g::text), 'hex'),
  array['a', 'b' || g], jsonb_build_object('k', g), timestamptz '2020-03-01 00:00+02' + g * interval '1 minute'
from generate_series(1, 20000) g;
create table public.addresses (id serial primary key, person_id bigint references public.people(id), line text);
insert into public.addresses (person_id, line) select g, 'street ' || g from generate_series(1, 2000) g;
create materialized view public.decades as select extract(decade from born) d, count(*) from public.people group by 1;
alter table public.addresses enable row level security;
create policy some_rows on public.addresses for select using (person_id > 1000);
create sequence public.case_numbers start 1000;
select nextval('public.case_numbers'), nextval('public.case_numbers');
create table public.nothing ();
insert into public.nothing default values;
insert into public.nothing default values;
create unlogged table public.scratch (k int);
insert into public.scratch values (1), (2);
select lo_from_bytea(0, 'hello large object');
'''


@pytest.fixture(scope="module")
def ends(sandbox: SandboxInfo) -> tuple[PgEndpoint, PgEndpoint, SshTarget]:
    on, cl, ssh = sandbox.onprem, sandbox.cloud, sandbox.ssh
    return (
        PgEndpoint(on.host, on.port, on.user, on.password, bin_dir=on.bin_dir),
        PgEndpoint(cl.host, cl.port, cl.user, cl.password, bin_dir=cl.bin_dir),
        SshTarget(ssh.host, ssh.port, ssh.user, ssh.private_key, ssh.host_key),
    )


@pytest.fixture(scope="module")
def tricky(ends: tuple[PgEndpoint, PgEndpoint, SshTarget]) -> Iterator[str]:
    source, target, _ = ends
    db = f"{P}_src"
    with connect(source, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {db}")
        # a session that did not set its own would read and write dates day first
        admin.execute(f"alter database {db} set datestyle = 'SQL, DMY'")
    with connect(source, db, autocommit=True) as conn:
        conn.execute(TRICKY_SQL)
    yield db
    for where, name in ((source, db), (target, f"{P}_copy"), (target, f"{P}_resume")):
        with connect(where, "postgres", autocommit=True) as admin:
            dump.drop_database(admin, name)


def copy_into(ends: tuple[PgEndpoint, PgEndpoint, SshTarget], db: str, target_db: str, tmp: Path, **kwargs):
    source, target, ssh = ends
    journal = kwargs.pop("journal", None) or table_copy.CopyJournal(tmp / "journal.json")
    with tunnel.forward(ssh, tunnel.remote_address(target.host, target.port), hello=tunnel.POSTGRES_HELLO) as fwd:
        through = target.through_tunnel(fwd.port)
        return table_copy.copy_database(
            source, db, through, target_db, archive=tmp / "schema.dump", journal=journal, timeout_s=300, **kwargs
        )


def test_a_table_copy_has_the_fingerprint_of_its_source(ends, tricky: str, tmp_path: Path) -> None:
    source, target, _ = ends
    with connect(target, "postgres", autocommit=True) as admin:
        dump.ensure_empty_database(admin, f"{P}_copy", target.user, marker=f"cutover:{P}")
    told: list[int] = []
    inside = threading.Lock()
    overlapped: list[int] = []

    def progress(done: int) -> None:  # a step's reporter runs in the step's context: one caller at a time
        if not inside.acquire(blocking=False):
            overlapped.append(done)
            return
        try:
            told.append(done)
            time.sleep(0.05)
        finally:
            inside.release()

    outcome = copy_into(ends, tricky, f"{P}_copy", tmp_path, jobs=3, progress=progress)

    with connect(source, tricky, autocommit=True) as conn:
        before = fingerprint(conn)
    with connect(target, f"{P}_copy", autocommit=True) as conn:
        after = fingerprint(conn, algorithm=before.algorithm)
        child_columns = [
            r[0]
            for r in conn.execute(
                "select attname from pg_attribute where attrelid = 'public.child'::regclass and attnum > 0 order by attnum"
            )
        ]
        generated = conn.execute("select sum(b) = 2 * sum(a) from public.gen").fetchone()
        next_case = conn.execute("select nextval('public.case_numbers')").fetchone()
        copied_dates = conn.execute("select min(born)::text from public.people").fetchone()
    assert compare(before, after) == []
    assert outcome.tables == 10 and outcome.tables_copied == 10  # every table with rows of its own, partitions too
    assert child_columns == ["id", "note", "late", "extra"], "pg_dump reorders the child: columns are named"
    assert generated == (True,) and next_case == (1002,) and copied_dates == ("1950-01-02",)
    assert after.large_objects.rows == 1 and after.tables["public.nothing"].rows == 2
    assert after.tables['Odd "Schema".x.ta.ble "q"'].rows == 500
    assert table_copy.CopyJournal(tmp_path / "journal.json").state["post_data"] == "done"
    # progress: the COPY text counted as it went, at least once per table, never backwards
    assert not overlapped, "progress was called from two threads at once"
    assert len(told) >= outcome.tables and told == sorted(told) and told[-1] == outcome.bytes > 2_000_000


def test_a_copy_cut_off_after_a_table_resumes_with_only_the_tables_it_had_not_finished(ends, tricky: str, tmp_path: Path) -> None:
    source, target, _ = ends
    with connect(target, "postgres", autocommit=True) as admin:
        dump.ensure_empty_database(admin, f"{P}_resume", target.user, marker=f"cutover:{P}")
    journal = table_copy.CopyJournal(tmp_path / "journal.json")

    def connection_lost(_done: int) -> None:  # once the first (largest) table is in: the network goes
        if journal.done("public.people"):
            raise TransientStepError("connection to the target lost")

    with pytest.raises(TransientStepError, match="lost"):
        copy_into(ends, tricky, f"{P}_resume", tmp_path, jobs=1, journal=journal, progress=connection_lost)
    tables_done = [item for item in journal.state["done"] if item != table_copy.DATA_SECTION]
    assert journal.resumable and tables_done == ["public.people"], journal.state
    with connect(target, f"{P}_resume", autocommit=True) as conn:
        written_by_first = conn.execute("select min(xmin::text), count(*) from public.people").fetchone()

    people_bytes = journal.state["bytes"]["public.people"]
    again = copy_into(ends, tricky, f"{P}_resume", tmp_path, jobs=2, journal=table_copy.CopyJournal(tmp_path / "journal.json"))
    assert (again.tables, again.tables_copied) == (10, 9)
    assert again.bytes > people_bytes > 1_000_000, "the bytes count the table the first attempt moved, too"
    with connect(target, f"{P}_resume", autocommit=True) as conn:
        assert conn.execute("select min(xmin::text), count(*) from public.people").fetchone() == written_by_first, (
            "the finished table was kept, not copied again"
        )
        after = fingerprint(conn)
    with connect(source, tricky, autocommit=True) as conn:
        assert compare(fingerprint(conn, algorithm=after.algorithm), after) == []


def test_the_tunnel_trusts_only_the_pinned_host_key_and_proves_it_reaches_postgres(ends) -> None:
    _, target, ssh = ends
    remote = tunnel.remote_address(target.host, target.port)
    with (
        tunnel.forward(ssh, remote, hello=tunnel.POSTGRES_HELLO) as fwd,
        connect(target.through_tunnel(fwd.port), "postgres", autocommit=True) as conn,
    ):
        assert conn.execute("select inet_server_port()").fetchone() == (target.port,)
    wrong = replace(ssh, host_key=OTHER_HOST_KEY)
    with (
        pytest.raises(PermanentStepError, match=r"(?i)host key verification failed"),
        tunnel.forward(wrong, remote, hello=tunnel.POSTGRES_HELLO),
    ):
        pass
    # nothing listens there: the listener is ssh's own, only the server's answer counts
    with (
        pytest.raises(TransientStepError, match=r"(?i)tunnel"),
        tunnel.forward(ssh, tunnel.remote_address("127.0.0.1", 9), hello=tunnel.POSTGRES_HELLO, timeout_s=5),
    ):
        pass


@pytest.fixture
def estate(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    reset(sandbox)
    yield sandbox
    reset(sandbox)


def test_the_copy_step_resumes_within_its_attempt_and_its_result_is_verified(estate: SandboxInfo) -> None:
    runbook = load_runbook("runbooks/demo.yaml")
    app = runbook.application("gis")
    db = app.database("gis").model_copy(update={"method": "copy", "jobs": 1})
    move = database.Move(runbook, app, db, f"{P}-attempt")
    frozen = database.freeze_database(move)

    def cut_off(_done: int) -> None:  # once the first (largest) table is in
        if "public.parcels" in move.copy_journal().state["done"]:
            raise TransientStepError("worker lost its network")

    with pytest.raises(TransientStepError):
        database.copy_tables(move, cut_off)
    with connect(move.target(), "postgres", autocommit=True) as admin:
        assert dump.database_comment(admin, "gis") == move.marker(), "unfinished: this attempt's, not imported"
    result = database.copy_tables(move)
    assert result.method == "copy" and result.tables == 2 and result.tables_resumed == 1
    assert database.copy_tables(move).skipped, "imported by this attempt: kept"
    verified = database.verify_database(move, frozen)
    assert verified.rows == frozen.rows
    assert not move.copy_journal().path.exists(), "nothing of the copy is left at rest"
    assert not list(move.copy_journal().path.parent.glob("*.schema.dump"))
