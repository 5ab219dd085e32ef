"""A database copied with the real pg_dump | pg_restore has the source's fingerprint, and
any difference on the copy is named by compare(). Real sandbox clusters: onprem -> cloud.

Each test works on databases and roles of its own (unique names) and drops them after.
"""

from __future__ import annotations

import shlex
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from cutover.errors import PermanentStepError, TransientStepError, UnsafeChange
from cutover.postgres import dump, roles
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.postgres.fingerprint import HASH64, MD5_64, Fingerprint, compare, fingerprint, fingerprint_parallel
from cutover.postgres.passfile import client_environment, passfile_line
from cutover.process import run_program, start_program
from cutover.sandbox.info import PostgresInfo, SandboxInfo

pytestmark = pytest.mark.integration

# Roles are cluster-wide: every name carries this run's prefix.
P = f"pgt{uuid.uuid4().hex[:6]}"

ROLES_SQL = f"""
create role {P}_owner nologin;
create role {P}_app login;
create role {P}_readers nologin;
grant {P}_readers to {P}_app;
"""

# Something of every kind the fingerprint covers: partitions, inheritance, enum, domain,
# identity, odd column types, a view, a materialized view, a trigger, sequences, large
# objects, comments, table/column/default privileges and a row-security policy.
ESTATE_SQL = f"""
create schema reg authorization {P}_owner;
create type reg.status as enum ('new', 'active', 'gone');
create domain reg.postcode as text check (value ~ '^[0-9]{{4}}[A-Z]{{2}}$');
create table reg.persons (id bigint generated always as identity primary key, name text not null, born date,
  status reg.status default 'new', pc reg.postcode, balance numeric(12,2), score float8, photo bytea, seen timestamptz,
  stay interval, pay money, tags text[], extra jsonb, kind regclass);
insert into reg.persons (name, born, status, pc, balance, score, photo, seen, stay, pay, tags, extra, kind)
select 'p' || g, date '1950-01-01' + g, (array['new','active','gone'])[1 + g % 3]::reg.status, '1234AB', g * 1.5,
  1.0 / 3 * g, decode(md5(g::text), 'hex'), timestamptz '2020-01-01 00:00+02' + g * interval '1 minute',
  g * interval '1 hour', g, array['a', 'b' || g], jsonb_build_object('k', g), 'reg.persons'::regclass
from generate_series(1, 3000) g;
create table reg.events (id bigserial, at date not null, what text) partition by range (at);
create table reg.events_2020 partition of reg.events for values from ('2020-01-01') to ('2021-01-01');
create table reg.events_2021 partition of reg.events for values from ('2021-01-01') to ('2022-01-01');
insert into reg.events (at, what) select date '2020-01-01' + (g % 700), 'e' || g from generate_series(1, 2000) g;
create table public.base (id int, note text);
create table public.child (extra text) inherits (public.base);
insert into public.base values (1, 'b1'), (2, 'b2');
insert into public.child values (3, 'c3', 'x');
create view reg.active as select id, name from reg.persons where status = 'active';
create materialized view reg.counts as select status, count(*) from reg.persons group by status;
create function reg.touch() returns trigger language plpgsql as $$ begin new.seen := now(); return new; end $$;
create trigger persons_touch before update on reg.persons for each row execute function reg.touch();
create table reg.addresses (id serial primary key, person_id bigint references reg.persons(id), line text);
insert into reg.addresses (person_id, line) select g, 'street ' || g from generate_series(1, 100) g;
create sequence reg.case_numbers start 1000;
select nextval('reg.case_numbers');
comment on table reg.persons is 'people';
comment on column reg.persons.name is 'full name';
grant usage on schema reg to {P}_readers;
grant select on reg.persons, reg.active to {P}_readers;
grant select (line) on reg.addresses to {P}_app;
alter default privileges for role {P}_owner in schema reg grant select on tables to {P}_readers;
alter table reg.persons owner to {P}_owner;
alter table reg.addresses enable row level security;
create policy own_rows on reg.addresses for select to {P}_app using (person_id > 0);
select lo_from_bytea(0, 'hello large object');
select lo_from_bytea(0, convert_to(repeat('x', 10000), 'UTF8'));
create table public.empty_one ();
create unlogged table public.scratch (k int);
insert into public.scratch values (1);
"""


def endpoint(pg: PostgresInfo) -> PgEndpoint:
    return PgEndpoint(pg.host, pg.port, pg.user, pg.password, bin_dir=pg.bin_dir)


def copy_database(source: PgEndpoint, source_db: str, target: PgEndpoint, target_db: str, bin_dir: str) -> None:
    """pg_dump -Fc | pg_restore, the stream method's programs, run locally."""
    with connect(target, "postgres", autocommit=True) as admin:
        dump.ensure_empty_database(admin, target_db, target.user, marker=f"cutover:{P}")
    with client_environment(source) as source_env, client_environment(target) as target_env:
        producer = start_program(
            dump.pg_dump_argv(source, source_db, format="custom"), env=source_env, timeout_s=300, log_name="pg_dump"
        )
        with producer:
            run_program(
                dump.pg_restore_argv(target_db, bin_dir=bin_dir),
                env=target_env,
                stdin=producer.stdout,
                timeout_s=300,
                log_name="pg_restore",
            )
            producer.wait()


def take(where: PgEndpoint, db: str) -> Fingerprint:
    with connect(where, db, autocommit=True) as conn:
        return fingerprint(conn)


@pytest.fixture(scope="module")
def onprem(sandbox: SandboxInfo) -> PgEndpoint:
    return endpoint(sandbox.onprem)


@pytest.fixture(scope="module")
def cloud(sandbox: SandboxInfo) -> PgEndpoint:
    return endpoint(sandbox.cloud)


@pytest.fixture(scope="module")
def databases(onprem: PgEndpoint, cloud: PgEndpoint) -> Iterator[Callable[[PgEndpoint, str], str]]:
    """This module's roles on both clusters; hands out database names on either cluster.
    At the end drops the databases, then the roles (which the databases depend on)."""
    for where in (onprem, cloud):
        with connect(where, "postgres", autocommit=True) as admin:
            admin.execute(ROLES_SQL)
    made: list[tuple[PgEndpoint, str]] = []

    def name(where: PgEndpoint, label: str) -> str:
        db = f"{P}_{label}"
        made.append((where, db))
        return db

    yield name
    for where, db in reversed(made):
        with connect(where, "postgres", autocommit=True) as admin:
            dump.drop_database(admin, db)
    for where in (onprem, cloud):
        with connect(where, "postgres", autocommit=True) as admin:
            for role in ("app", "readers", "owner"):
                admin.execute(f"drop role if exists {P}_{role}")


@pytest.fixture(scope="module")
def estate(onprem: PgEndpoint, databases: Callable[[PgEndpoint, str], str]) -> str:
    """A rich database of this module's own on the onprem cluster."""
    db = databases(onprem, "estate")
    with connect(onprem, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {db} owner {P}_owner")
    with connect(onprem, db, autocommit=True) as conn:
        conn.execute(ESTATE_SQL)
    return db


@pytest.fixture(scope="module")
def estate_copy(
    estate: str, onprem: PgEndpoint, cloud: PgEndpoint, sandbox: SandboxInfo, databases: Callable[[PgEndpoint, str], str]
) -> str:
    db = databases(cloud, "copy")
    copy_database(onprem, estate, cloud, db, sandbox.cloud.bin_dir)
    return db


def test_restored_copy_has_the_fingerprint_of_its_source(
    estate: str, estate_copy: str, onprem: PgEndpoint, cloud: PgEndpoint
) -> None:
    source, target = take(onprem, estate), take(cloud, estate_copy)
    assert compare(source, target) == []
    assert source.tables["reg.persons"].rows == 3000
    assert source.tables["reg.events"].rows == 2000  # partitioned: counted once, through the root
    assert "reg.events_2020" not in source.tables
    assert (source.tables["public.base"].rows, source.tables["public.child"].rows) == (2, 1)  # ONLY the parent
    assert source.large_objects.rows == 2
    assert source.sequences["reg.case_numbers"].last_value == 1000
    assert ("view", "reg.active") in {(k, n) for k, n, _ in source.schema_objects}
    assert source.schema_hash == target.schema_hash


def test_fingerprint_survives_a_json_round_trip(estate: str, onprem: PgEndpoint) -> None:
    import json

    taken = take(onprem, estate)
    again = Fingerprint.from_dict(json.loads(json.dumps(taken.to_dict())))
    assert again == taken
    assert compare(again, taken) == []


def test_a_fingerprint_over_several_connections_is_the_same_fingerprint(
    estate: str, estate_copy: str, onprem: PgEndpoint, cloud: PgEndpoint
) -> None:
    serial = take(onprem, estate)
    parallel = fingerprint_parallel(lambda: connect(onprem, estate, autocommit=True), 3)
    assert parallel == serial and parallel.tables == serial.tables and parallel.materialized_views == serial.materialized_views
    assert compare(parallel, fingerprint_parallel(lambda: connect(cloud, estate_copy, autocommit=True), 2)) == []


def test_both_row_hashes_prove_the_copy_and_do_not_compare_with_each_other(
    estate: str, estate_copy: str, onprem: PgEndpoint, cloud: PgEndpoint
) -> None:
    with connect(onprem, estate, autocommit=True) as src, connect(cloud, estate_copy, autocommit=True) as dst:
        fast, slow = fingerprint(src), fingerprint(src, algorithm=MD5_64)
        assert (fast.algorithm, slow.algorithm) == (HASH64, MD5_64) and fast.probe and not slow.probe
        assert fast.tables["reg.persons"].hash != slow.tables["reg.persons"].hash
        assert compare(slow, fingerprint(dst, algorithm=MD5_64)) == []
        assert compare(fast, fingerprint(dst)) == []
        assert compare(slow, fast) == [
            f"fingerprints not comparable: the source's was taken by {MD5_64}, the target's by {HASH64}; "
            f"take the target's with algorithm={MD5_64}"
        ]
    # A server that hashes differently (another byte order) gives another probe: never equal.
    other = Fingerprint.from_dict({**fast.to_dict(), "probe": "12345"})
    assert compare(fast, other)[0].startswith("fingerprints not comparable: the two servers' hash64 hashes differ")
    # A fingerprint persisted before algorithms were recorded was md5-64.
    legacy = {k: v for k, v in slow.to_dict().items() if k not in ("algorithm", "probe")}
    assert compare(Fingerprint.from_dict(legacy), slow) == []


def test_sandbox_database_copy_matches_with_roles_created_first(
    sandbox: SandboxInfo, onprem: PgEndpoint, cloud: PgEndpoint, databases: Callable[[PgEndpoint, str], str]
) -> None:
    with connect(onprem, "bzk", autocommit=True) as conn:
        needed = roles.roles_in_use(conn)
    assert sandbox.apps["burgerzaken"].db_user in needed
    with connect(cloud, "postgres", autocommit=True) as admin:
        created = roles.ensure_roles(admin, roles.role_definitions(onprem, needed), needed, {})
    try:
        db = databases(cloud, "bzk")
        copy_database(onprem, "bzk", cloud, db, sandbox.cloud.bin_dir)
        differences = compare(take(onprem, "bzk"), take(cloud, db))
        assert differences == []
    finally:
        with connect(cloud, "postgres", autocommit=True) as admin:
            dump.drop_database(admin, f"{P}_bzk")
            for role in created:
                admin.execute(psycopg.sql.SQL("drop role {}").format(psycopg.sql.Identifier(role)))


CHANGES = [
    ("update reg.persons set name = 'changed' where id = 17", "table reg.persons: content differs (3000 rows on both)"),
    ("delete from reg.addresses where id = 5", "table reg.addresses: rows 100 != 99"),
    ("delete from reg.events where id = 3", "table reg.events: rows 2000 != 1999"),
    ("update public.child set note = 'z'", "table public.child: content differs (1 rows on both)"),
    ("select setval('reg.case_numbers', 5000)", "sequence reg.case_numbers: last_value 1000 != 5000"),
    ("drop view reg.active", "schema object missing on target: view reg.active"),
    ("select lo_unlink((select min(oid) from pg_largeobject_metadata))", "large objects: count 2 != 1"),
    (
        "refresh materialized view reg.counts; update reg.persons set status = 'gone' where id = 1; refresh materialized view reg.counts",
        "materialized view reg.counts: content differs (3 rows on both)",
    ),
    (
        f"grant select on reg.persons to {P}_app",
        f"schema object differs: table reg.persons: privileges only on target: {P}_app:SELECT",
    ),
    ("alter type reg.status add value 'moved'", "schema object differs: enum reg.status: labels only on target: moved"),
    ("create index on public.base (note)", "schema object only on target: index public.base_note_idx"),
]


@pytest.mark.parametrize(("change", "reported"), CHANGES, ids=[c[1].split(":")[0] for c in CHANGES])
def test_a_change_on_the_copy_is_reported_naming_the_object(
    change: str,
    reported: str,
    estate: str,
    estate_copy: str,
    onprem: PgEndpoint,
    cloud: PgEndpoint,
    databases: Callable[[PgEndpoint, str], str],
) -> None:
    source = take(onprem, estate)
    source_md5 = fingerprint_parallel(lambda: connect(onprem, estate, autocommit=True), 2, algorithm=MD5_64)
    db = databases(cloud, f"chg{uuid.uuid4().hex[:6]}")
    with connect(cloud, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {db} template {estate_copy}")
    with connect(cloud, db, autocommit=True) as conn:
        conn.execute(change)
    differences = compare(source, take(cloud, db))
    assert reported in differences
    # the same by the other row hash, and over several connections
    assert reported in compare(source_md5, fingerprint_parallel(lambda: connect(cloud, db, autocommit=True), 2, algorithm=MD5_64))
    with connect(cloud, "postgres", autocommit=True) as admin:
        dump.drop_database(admin, db)


def test_directory_dump_with_jobs_restores_to_the_same_fingerprint(
    estate: str,
    onprem: PgEndpoint,
    cloud: PgEndpoint,
    sandbox: SandboxInfo,
    tmp_path: Path,
    databases: Callable[[PgEndpoint, str], str],
) -> None:
    out = tmp_path / "estate.dump"
    with client_environment(onprem) as env:
        run_program(
            dump.pg_dump_argv(onprem, estate, format="directory", jobs=2, out=str(out)),
            env=env,
            timeout_s=300,
            log_name="pg_dump -Fd",
        )
    # what pg_dump wrote is the estate's data: for this user only (cutover.process: umask 077)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in out.rglob("*")} == {"0o600"}
    assert (out / "toc.dat").is_file()
    db = databases(cloud, "fromdir")
    with connect(cloud, "postgres", autocommit=True) as admin:
        dump.ensure_empty_database(admin, db, cloud.user, marker=f"cutover:{P}")
    with client_environment(cloud) as env:
        run_program(
            dump.pg_restore_argv(db, jobs=2, path=str(out), bin_dir=sandbox.cloud.bin_dir),
            env=env,
            timeout_s=300,
            log_name="pg_restore -j2",
        )
    assert compare(take(onprem, estate), take(cloud, db)) == []


def test_password_travels_in_a_passfile_never_in_argv_or_the_environment(onprem: PgEndpoint) -> None:
    argv = dump.pg_dump_argv(onprem, "bzk", format="custom")
    assert onprem.password and onprem.password not in " ".join(argv)
    assert "--no-password" in argv
    assert onprem.password not in repr(onprem.libpq_env())
    with client_environment(onprem) as env:
        assert onprem.password not in repr(env)
        assert Path(env["PGPASSFILE"]).read_text() == passfile_line(onprem.password)
    assert onprem.password not in repr(onprem)
    argv = dump.pg_restore_argv("odd name's db", jobs=4, path="/srv/dumps/x y", bin_dir="/opt/pg/bin")
    assert argv == [
        "/opt/pg/bin/pg_restore",
        "--no-password",
        "--exit-on-error",
        "--dbname=dbname='odd name\\'s db'",
        "--jobs=4",
        "/srv/dumps/x y",
    ]
    command = dump.pg_restore_command("odd name's db", jobs=4, path="/srv/dumps/x y", bin_dir="/opt/pg/bin")
    assert shlex.split(command) == argv


def test_pg_dump_is_at_least_the_source_server_version(onprem: PgEndpoint, sandbox: SandboxInfo) -> None:
    tool = dump.pg_dump_version(sandbox.onprem.bin_dir)
    with connect(onprem, "postgres") as conn:
        server = dump.server_version(conn)
    assert tool[0] == server[0] == 15
    dump.check_dump_compatible(tool, server)
    with pytest.raises(PermanentStepError, match=r"pg_dump 14\.2 is older than the source server 15"):
        dump.check_dump_compatible((14, 2), server)


def test_ensure_empty_database_recreates_its_own_attempt_and_refuses_a_stranger(
    cloud: PgEndpoint, databases: Callable[[PgEndpoint, str], str]
) -> None:
    db = databases(cloud, "target")
    with connect(cloud, "postgres", autocommit=True) as admin:
        assert dump.ensure_empty_database(admin, db, cloud.user, marker=f"cutover:{P}") == "created"
        assert dump.database_comment(admin, db) == f"cutover:{P}"
        with connect(cloud, db, autocommit=True) as conn:
            conn.execute("create table half_restored (x int)")
        # The same run comes back after a crash: its half-filled database is started over.
        assert dump.ensure_empty_database(admin, db, cloud.user, marker=f"cutover:{P}") == "recreated"
        with connect(cloud, db, autocommit=True) as conn:
            assert conn.execute("select count(*) from pg_class where relname = 'half_restored'").fetchone() == (0,)
            conn.execute("create table somebody_elses (x int)")
        # Another run (or a person) must not have its database dropped.
        with pytest.raises(UnsafeChange, match=rf"database {db} .* not empty \(1 relations\)"):
            dump.ensure_empty_database(admin, db, cloud.user, marker="cutover:another-run")
        dump.drop_database(admin, db)
        admin.execute(f"create database {db}")
        assert dump.ensure_empty_database(admin, db, cloud.user, marker=f"cutover:{P}") == "existing-empty"
        assert dump.database_comment(admin, db) == f"cutover:{P}"


def test_rename_and_drop_are_idempotent(cloud: PgEndpoint, databases: Callable[[PgEndpoint, str], str]) -> None:
    old, new = databases(cloud, "old"), databases(cloud, "new")
    with connect(cloud, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {old}")
        dump.rename_database(admin, old, new)
        dump.rename_database(admin, old, new)  # already done
        assert not dump.database_exists(admin, old) and dump.database_exists(admin, new)
        assert dump.database_size(admin, new) > 0
        assert dump.drop_database(admin, new) is True
        assert dump.drop_database(admin, new) is False
        with pytest.raises(PermanentStepError, match=f"{new} does not exist"):
            dump.database_size(admin, new)


def test_connect_errors_name_the_place_and_never_the_password(onprem: PgEndpoint) -> None:
    wrong = PgEndpoint(onprem.host, onprem.port, onprem.user, "not-the-password-123")
    with pytest.raises(PermanentStepError) as bad_password:
        connect(wrong, "postgres")
    assert f"{onprem.host}:{onprem.port}/postgres" in str(bad_password.value)
    assert "password authentication failed" in str(bad_password.value)
    assert "not-the-password-123" not in str(bad_password.value)
    with pytest.raises(PermanentStepError, match="does not exist"):
        connect(onprem, f"{P}_no_such_db")
    refused = PgEndpoint("127.0.0.1", 1, onprem.user, onprem.password)
    with pytest.raises(TransientStepError, match=r"127\.0\.0\.1:1/postgres"):
        connect(refused, "postgres")


def test_copy_into_another_encoding_keeps_the_fingerprint(
    onprem: PgEndpoint, cloud: PgEndpoint, sandbox: SandboxInfo, databases: Callable[[PgEndpoint, str], str]
) -> None:
    source_db, target_db = databases(onprem, "latin1"), databases(cloud, "utf8")
    with connect(onprem, "postgres", autocommit=True) as admin:
        admin.execute(f"create database {source_db} encoding 'LATIN1' locale 'C' template template0")
    with connect(onprem, source_db, autocommit=True) as conn:
        conn.execute("create table names (s text); insert into names values ('café'), ('IJsselmonde ÿ'), ('ß')")
    copy_database(onprem, source_db, cloud, target_db, sandbox.cloud.bin_dir)
    with connect(cloud, target_db) as conn:
        assert conn.execute(
            "select pg_encoding_to_char(encoding) from pg_database where datname = current_database()"
        ).fetchone() == ("UTF8",)
    assert compare(take(onprem, source_db), take(cloud, target_db)) == []
