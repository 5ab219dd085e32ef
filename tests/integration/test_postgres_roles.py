"""Roles a database uses, found on the real source and created on the real target."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from structlog.testing import capture_logs

from cutover.errors import PermanentStepError
from cutover.postgres import dump, roles
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.sandbox.info import ESTATE, PostgresInfo, SandboxInfo

pytestmark = pytest.mark.integration

P = f"pgt{uuid.uuid4().hex[:6]}"
# One role per way a database can refer to a role, so that each route is proven.
ROUTES = {
    "dbowner": "owner of the database",
    "schemaowner": "owner of a schema",
    "tableowner": "owner of a table",
    "reader": "grantee on a table",
    "colreader": "grantee on a column",
    "policyrole": "named in a row-security policy",
    "defaults": "default privileges for",
    "defgrantee": "grantee in default privileges",
    "executor": "grantee on a function",
    "loowner": "owner of a large object",
    "sequser": "grantee on a sequence",
    "typeuser": "grantee on a type",
    "member": "only a member of reader (not used by the database)",
}


MIXED = f'{P} Mixed "Case"'
MIXED_SQL = '"' + MIXED.replace('"', '""') + '"'


def endpoint(pg: PostgresInfo) -> PgEndpoint:
    return PgEndpoint(pg.host, pg.port, pg.user, pg.password, bin_dir=pg.bin_dir)


def drop_roles(admin: psycopg.Connection[tuple[object, ...]], names: list[str]) -> None:
    for name in names:
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def onprem(sandbox: SandboxInfo) -> PgEndpoint:
    return endpoint(sandbox.onprem)


@pytest.fixture(scope="module")
def cloud(sandbox: SandboxInfo) -> PgEndpoint:
    return endpoint(sandbox.cloud)


@pytest.fixture(scope="module")
def routes_db(onprem: PgEndpoint, cloud: PgEndpoint) -> Iterator[str]:
    db = f"{P}_routes"
    names = [f"{P}_{r}" for r in ROUTES] + [MIXED]
    with connect(onprem, "postgres", autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("create role {}").format(sql.Identifier(name)))
        admin.execute(f"alter role {P}_reader login")
        admin.execute(f"comment on role {P}_reader is 'reads; it''s all it does'")
        admin.execute(f"alter role {P}_reader set work_mem = '8MB'")
        admin.execute(f"grant {P}_reader to {P}_colreader")
        admin.execute(f"grant {P}_reader to {P}_member")
        admin.execute(f"create database {db} owner {P}_dbowner")
    with connect(onprem, db, autocommit=True) as conn:
        conn.execute(f"""
            create schema app authorization {P}_schemaowner;
            create table app.t (id int, secret text, note text);
            alter table app.t owner to {P}_tableowner;
            grant select on app.t to {P}_reader;
            grant select (note) on app.t to {P}_colreader;
            grant update on app.t to {MIXED_SQL};
            alter table app.t enable row level security;
            create policy p on app.t to {P}_policyrole using (true);
            alter default privileges for role {P}_defaults grant select on tables to {P}_defgrantee;
            create function app.f() returns int language sql as 'select 1';
            revoke execute on function app.f() from public;
            grant execute on function app.f() to {P}_executor;
            create sequence app.s;
            grant usage on sequence app.s to {P}_sequser;
            create type app.e as enum ('a');
            grant usage on type app.e to {P}_typeuser;
            select lo_create(0);
        """)
        (lo,) = conn.execute("select max(oid)::int from pg_largeobject_metadata").fetchone()  # type: ignore[misc]
        conn.execute(f"alter large object {lo} owner to {P}_loowner")
    yield db
    with connect(onprem, "postgres", autocommit=True) as admin:
        dump.drop_database(admin, db)
        drop_roles(admin, names)
    with connect(cloud, "postgres", autocommit=True) as admin:
        drop_roles(admin, [*names, f"{P}_limited"])


def test_roles_in_use_follow_every_route(onprem: PgEndpoint, routes_db: str, sandbox: SandboxInfo) -> None:
    with connect(onprem, routes_db, autocommit=True) as conn:
        found = roles.roles_in_use(conn)
    expected = {f"{P}_{r}" for r in ROUTES if r != "member"} | {MIXED}
    assert found == expected
    assert sandbox.onprem.user not in found  # the bootstrap superuser exists everywhere


def test_roles_in_use_find_each_sandbox_applications_roles(onprem: PgEndpoint, sandbox: SandboxInfo) -> None:
    for app_name, databases in ESTATE.items():
        app = sandbox.apps[app_name]
        for db in databases:
            with connect(onprem, db, autocommit=True) as conn:
                found = roles.roles_in_use(conn)
                owner = conn.execute(
                    "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
                ).fetchone()
            assert app.db_user in found, db
            assert owner is not None and owner[0] in found, db
            assert all(r.startswith(app_name) for r in found), (db, found)


def test_role_definitions_keep_only_the_roles_asked_for(onprem: PgEndpoint, routes_db: str) -> None:
    wanted = {f"{P}_reader", f"{P}_colreader"}
    script = roles.role_definitions(onprem, wanted)
    statements = roles.parse_role_statements(script)
    assert {s.role for s in statements} == wanted
    assert f"GRANT {P}_reader TO {P}_colreader;" in script  # membership among them, no GRANTED BY
    assert f"{P}_member" not in script  # the other side of that membership was not asked for
    assert f"COMMENT ON ROLE {P}_reader IS 'reads; it''s all it does';" in script
    assert "PASSWORD" not in script.upper()


def test_ensure_roles_creates_the_missing_ones_on_the_target_with_a_password(
    onprem: PgEndpoint, cloud: PgEndpoint, routes_db: str
) -> None:
    with connect(onprem, routes_db, autocommit=True) as conn:
        needed = roles.roles_in_use(conn)
    definitions = roles.role_definitions(onprem, needed)
    password = f"pw-{uuid.uuid4().hex}"
    with connect(cloud, "postgres", autocommit=True) as admin:
        # One of them exists on the target already, made differently: it is left alone.
        admin.execute(f"create role {P}_executor createdb")
        assert roles.missing_roles(admin, needed) == needed - {f"{P}_executor"}
        with capture_logs() as logs:
            created = roles.ensure_roles(admin, definitions, needed, {f"{P}_reader": password, f"{P}_dbowner": ""})
        assert set(created) == needed - {f"{P}_executor"}
        assert roles.missing_roles(admin, needed) == set()
        assert admin.execute(f"select rolcreatedb from pg_roles where rolname = '{P}_executor'").fetchone() == (True,)
        assert admin.execute(
            f"select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid "
            f"join pg_roles u on u.oid = m.member where u.rolname = '{P}_colreader'"
        ).fetchall() == [(f"{P}_reader",)]
        assert admin.execute(
            f"select rolcanlogin, rolconfig, shobj_description(oid, 'pg_authid') from pg_roles where rolname = '{P}_reader'"
        ).fetchone() == (True, ["work_mem=8MB"], "reads; it's all it does")
        stored = admin.execute(f"select rolpassword from pg_authid where rolname = '{P}_reader'").fetchone()
        assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")
        assert roles.ensure_roles(admin, definitions, needed, {}) == []  # again: nothing to do
    assert password not in repr(logs)
    login = PgEndpoint(cloud.host, cloud.port, f"{P}_reader", password)
    with connect(login, "postgres") as conn:
        assert conn.execute("select current_user").fetchone() == (f"{P}_reader",)


def test_a_role_the_target_cannot_get_is_reported_before_any_data_moves(
    onprem: PgEndpoint, cloud: PgEndpoint, routes_db: str
) -> None:
    with connect(onprem, routes_db, autocommit=True) as conn:
        needed = roles.roles_in_use(conn)
    definitions = roles.role_definitions(onprem, needed)
    limited_password = f"pw-{uuid.uuid4().hex}"
    with connect(cloud, "postgres", autocommit=True) as admin:
        drop_roles(admin, sorted(needed))
        admin.execute(
            sql.SQL("create role {} login createdb password {}").format(
                sql.Identifier(f"{P}_limited"), sql.Literal(limited_password)
            )
        )
    # A target login that may create databases but not roles, as on some managed services.
    limited = PgEndpoint(cloud.host, cloud.port, f"{P}_limited", limited_password)
    with connect(limited, "postgres", autocommit=True) as admin:
        with pytest.raises(PermanentStepError, match=rf"creating roles on {cloud.host}:{cloud.port}: permission denied"):
            roles.ensure_roles(admin, definitions, needed, {})
        assert roles.missing_roles(admin, needed) == needed  # all or nothing
        assert not dump.database_exists(admin, routes_db)
    # Definitions that lack a role leave it missing, and missing_roles names it.
    partial = roles.filter_role_definitions(definitions, needed - {f"{P}_loowner"})
    with connect(cloud, "postgres", autocommit=True) as admin:
        roles.ensure_roles(admin, partial, needed, {})
        assert roles.missing_roles(admin, needed) == {f"{P}_loowner"}


def test_an_admin_with_createrole_but_not_superuser_can_create_them(
    onprem: PgEndpoint, cloud: PgEndpoint, routes_db: str
) -> None:
    """As on managed services: pg_dumpall's NOSUPERUSER/NOBYPASSRLS must not reach it."""
    with connect(onprem, routes_db, autocommit=True) as conn:
        needed = roles.roles_in_use(conn)
    definitions = roles.role_definitions(onprem, needed)
    assert "NOBYPASSRLS" in definitions
    admin_password = f"pw-{uuid.uuid4().hex}"
    with connect(cloud, "postgres", autocommit=True) as admin:
        drop_roles(admin, sorted(needed))
        drop_roles(admin, [f"{P}_limited"])
        admin.execute(
            sql.SQL("create role {} login createrole password {}").format(
                sql.Identifier(f"{P}_limited"), sql.Literal(admin_password)
            )
        )
    limited = PgEndpoint(cloud.host, cloud.port, f"{P}_limited", admin_password)
    with connect(limited, "postgres", autocommit=True) as admin:
        assert set(roles.ensure_roles(admin, definitions, needed, {})) == needed
        assert roles.missing_roles(admin, needed) == set()
        assert admin.execute(f"select rolcanlogin from pg_roles where rolname = '{P}_reader'").fetchone() == (True,)


def test_role_script_parsing_handles_quotes_settings_and_grantors() -> None:
    script = (
        '--\n-- Roles\n--\n\nCREATE ROLE "Odd ""One""";\n'
        'ALTER ROLE "Odd ""One""" WITH NOSUPERUSER INHERIT LOGIN;\n'
        "CREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nALTER ROLE app IN DATABASE x SET work_mem TO '1MB';\n"
        "COMMENT ON ROLE app IS 'semi; colon -- not a comment';\n"
        'GRANT app TO "Odd ""One""" WITH ADMIN OPTION GRANTED BY postgres;\nGRANT app TO stranger GRANTED BY postgres;\n'
    )
    kept = roles.filter_role_definitions(script, {'Odd "One"', "app"})
    assert kept.splitlines() == [
        'CREATE ROLE "Odd ""One""";',
        'ALTER ROLE "Odd ""One""" WITH NOSUPERUSER INHERIT LOGIN;',
        "CREATE ROLE app;",
        "ALTER ROLE app WITH LOGIN;",
        "COMMENT ON ROLE app IS 'semi; colon -- not a comment';",
        'GRANT app TO "Odd ""One""" WITH ADMIN OPTION;',
    ]
