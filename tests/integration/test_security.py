"""Hostile names, copies at rest, least privilege: the phases driven directly (no Prefect),
against the sandbox's real PostgreSQL clusters and OpenSSH host.

One database with the nastiest names PostgreSQL and a runbook allow (quotes, ``;``,
``$(...)``, backticks, newlines, unicode in its schema, table, column and role names, a
database name that needs quoting, a role password full of shell) moves through freeze,
export, transfer, import and verify, and an application's files with such names move to the
target host: a canary file that any shell evaluating a name would create never appears, and
the target holds exactly the source. On the way the dump is private on both hosts (0700
directories, 0600 files) and gone from both once verified; the rollback drops the roles the
attempt created and leaves the one that was there before. Files paths that try to leave
their roots through symbolic links are refused on both ends. Smoke SQL cannot write, and runs
as the smoke role where the site names one.
"""

from __future__ import annotations

import os
import pwd
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from cutover.errors import PermanentStepError
from cutover.phases import actions, database, files
from cutover.postgres import fingerprint, roles
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.runbook.loader import load_runbook
from cutover.runbook.model import Application, Runbook, SqlStep
from cutover.sandbox.info import SandboxInfo
from cutover.sandbox.reset import reset

pytestmark = pytest.mark.integration

ATTEMPT = "security-tests"
HOSTILE_DB = "hostile-db.1"
PLAIN_ROLE = "hostile_app"
ROLE_PASSWORD = 'it\'s "$(touch CANARY)" `touch CANARY` \\ ; -- ünï'


def hostile_names(canary: Path) -> dict[str, str]:
    """Names of at most 63 bytes (PostgreSQL would cut longer ones), each with shell in it."""
    names = {
        "schema": f'it\'s; $(touch {canary}) "x"',
        "table": f"persons\n;drop table x;--ü `touch {canary}`",
        "column": f'na"me;$(touch {canary})',
        "owner": f'evil"; drop role migrate; -- $(touch {canary})',
        "reader": f"reader\n`touch {canary}` 名前",
    }
    assert all(len(name.encode()) <= 63 for name in names.values()), {k: len(v.encode()) for k, v in names.items()}
    return names


def admin_of(pg: object) -> PgEndpoint:
    return PgEndpoint(host=pg.host, port=pg.port, user=pg.user, password=pg.password, sslmode="disable")  # type: ignore[attr-defined]


@pytest.fixture
def canary() -> Iterator[Path]:
    """A file that any shell evaluating a name creates; names quote its full path, or (in
    file names, which cannot hold a '/') its name, which lands in the shell's directory.
    Short, because names hold it and PostgreSQL names have 63 bytes."""
    path = Path("/tmp") / f"pw-{uuid.uuid4().hex[:8]}"
    yield path
    path.unlink(missing_ok=True)


def canary_appeared(canary: Path, sandbox: SandboxInfo) -> list[str]:
    places = [canary, Path.home() / canary.name, Path.cwd() / canary.name, Path(sandbox.ssh.work_dir) / canary.name]
    places.append(Path(pwd.getpwnam(sandbox.ssh.user).pw_dir) / canary.name)
    return [str(p) for p in places if p.exists()]


@pytest.fixture
def hostile_source(sandbox: SandboxInfo, canary: Path) -> Iterator[dict[str, str]]:
    """A database on the old site full of hostile names, its roles, and a role that already
    exists on the target (it must survive the rollback)."""
    reset(sandbox)
    names = hostile_names(canary)
    source = admin_of(sandbox.onprem)
    ident = sql.Identifier
    with connect(source, "postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(ident(HOSTILE_DB)))
        for role in (names["owner"], names["reader"], PLAIN_ROLE):
            admin.execute(sql.SQL("drop role if exists {}").format(ident(role)))
        admin.execute(sql.SQL("create role {}").format(ident(names["owner"])))
        admin.execute(sql.SQL("create role {} login").format(ident(names["reader"])))
        admin.execute(sql.SQL("create role {} login").format(ident(PLAIN_ROLE)))
        admin.execute(sql.SQL("create database {}").format(ident(HOSTILE_DB)))
    with connect(source, HOSTILE_DB, autocommit=True) as conn:
        schema, table, column = names["schema"], names["table"], names["column"]
        conn.execute(sql.SQL("create schema {} authorization {}").format(ident(schema), ident(names["owner"])))
        conn.execute(sql.SQL("create table {} (id int primary key, {} text)").format(ident(schema, table), ident(column)))
        conn.execute(sql.SQL("alter table {} owner to {}").format(ident(schema, table), ident(names["owner"])))
        conn.execute(
            sql.SQL("insert into {} select g, {} || g from generate_series(1, 200) g").format(
                ident(schema, table), sql.Literal(f"'; $(touch {canary}) \n ünï ")
            )
        )
        conn.execute(
            sql.SQL("grant usage on schema {} to {}, {}").format(ident(schema), ident(names["reader"]), ident(PLAIN_ROLE))
        )
        conn.execute(
            sql.SQL("grant select on {} to {}, {}").format(ident(schema, table), ident(names["reader"]), ident(PLAIN_ROLE))
        )
        conn.execute(sql.SQL("comment on table {} is {}").format(ident(schema, table), sql.Literal(f"$(touch {canary})")))
    # the target has one of the roles already: the run did not create it, the rollback keeps it
    with connect(admin_of(sandbox.cloud), "postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("create role {}").format(ident(names["reader"])))
    try:
        yield names
    finally:
        with connect(source, "postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(ident(HOSTILE_DB)))
            for role in (names["owner"], names["reader"], PLAIN_ROLE):
                admin.execute(sql.SQL("drop role if exists {}").format(ident(role)))
        reset(sandbox)


def hostile_runbook(sandbox: SandboxInfo, source_root: Path, target_root: Path, file_name: str) -> Runbook:
    base = load_runbook("runbooks/demo.yaml")
    sites = dict(base.sites)
    sites["onprem"] = sites["onprem"].model_copy(update={"files_root": str(source_root)})
    cloud_ssh = sites["cloud"].ssh
    assert cloud_ssh is not None
    sites["cloud"] = sites["cloud"].model_copy(update={"ssh": cloud_ssh.model_copy(update={"files_root": str(target_root)})})
    app = Application.model_validate(
        {
            "name": "hostile",
            "databases": [
                {
                    "name": HOSTILE_DB,
                    "from": "onprem",
                    "to": "cloud",
                    "method": "file",
                    "on_rollback": "drop",
                    "roles": {PLAIN_ROLE: {"password": "env:CUTOVER_TEST_HOSTILE_ROLE_PASSWORD"}},
                }
            ],
            "files": [{"name": "archive", "from": "onprem", "to": "cloud", "source_path": file_name, "target_path": file_name}],
        }
    )
    return base.model_copy(update={"sites": sites, "applications": [*base.applications, app]})


def modes(path: Path) -> set[tuple[str, str]]:
    found = {("dir", oct(stat.S_IMODE(path.stat().st_mode)))}
    for inside in path.rglob("*"):
        found.add(("dir" if inside.is_dir() else "file", oct(stat.S_IMODE(inside.stat().st_mode))))
    return found


def test_hostile_names_move_verbatim_nothing_runs_and_the_dump_is_private_then_gone(
    sandbox, hostile_source, canary, tmp_path, monkeypatch
):
    names = hostile_source
    monkeypatch.setenv("CUTOVER_TEST_HOSTILE_ROLE_PASSWORD", ROLE_PASSWORD.replace("CANARY", str(canary)))
    file_name = f"it's; $(touch {canary.name}) `id` ünï 名前"
    source_root, target_root = tmp_path / "share", Path(sandbox.ssh.work_dir) / "files-root"
    (source_root / file_name).mkdir(parents=True)
    (source_root / file_name / "a b; $(id).txt").write_text("application files\n")
    runbook = hostile_runbook(sandbox, source_root, target_root, file_name)
    app = runbook.application("hostile")
    move = database.Move(runbook, app, app.database(HOSTILE_DB), ATTEMPT)

    frozen = database.freeze_database(move)
    exported = database.export_database(move)
    local = Path(exported.path)
    assert modes(local) == {("dir", "0o700"), ("file", "0o600")}, "the dump is for this user only"
    assert stat.S_IMODE(local.parent.stat().st_mode) == 0o700
    assert exported.location and exported.location["path"] == str(local)
    database.transfer_dump(move)
    remote = Path(move.remote_dump_dir())  # the sandbox's target host is this machine
    assert modes(remote) == {("dir", "0o700"), ("file", "0o600")}, "private on the target host too"
    for level in (remote.parent, remote.parent.parent):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
    imported = database.import_dump(move)
    assert set(imported.roles_created or []) == {names["owner"], PLAIN_ROLE}, "the reader existed on the target"
    verified = database.verify_database(move, frozen)
    assert not local.exists() and not remote.exists(), "removed on both hosts once verified"
    assert [(d["where"], d["kept"], bool(d["removed_at"])) for d in verified.dumps] == [
        ("target host", False, True),
        ("orchestrator", False, True),
    ]
    moved = files.move_files(runbook, app, "archive")
    assert moved.files == 1
    assert (target_root / file_name / "a b; $(id).txt").read_text() == "application files\n"

    assert canary_appeared(canary, sandbox) == [], "no name, value or password was ever evaluated by a shell"
    target = admin_of(sandbox.cloud)
    with connect(target, HOSTILE_DB, autocommit=True) as conn:
        table = conn.execute(
            "select n.nspname, c.relname, pg_get_userbyid(c.relowner) from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' and n.nspname = %s",
            (names["schema"],),
        ).fetchall()
        assert table == [(names["schema"], names["table"], names["owner"])]
        assert fingerprint.compare(fingerprint.Fingerprint.from_dict(frozen.fingerprint), fingerprint.fingerprint(conn)) == []
    # the role password arrived as given (libpq hashed it; the server never saw it)
    login = PgEndpoint(target.host, target.port, PLAIN_ROLE, os.environ["CUTOVER_TEST_HOSTILE_ROLE_PASSWORD"], sslmode="disable")
    with connect(login, HOSTILE_DB, autocommit=True) as conn:
        assert conn.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier(names["schema"], names["table"]))
        ).fetchone() == (200,)

    undone = database.undo_target_database(move)
    assert undone.done == "dropped"
    assert sorted(undone.details["roles_dropped"]) == sorted([names["owner"], PLAIN_ROLE])
    with connect(target, "postgres", autocommit=True) as admin:
        left = {
            r[0] for r in admin.execute("select rolname from pg_roles where rolname = any(%s)", ([*names.values(), PLAIN_ROLE],))
        }
        assert left == {names["reader"]}, "only the role that was there before the run"
        assert roles.created_roles(admin, move.marker()) == []
    assert database.undo_target_database(move).done == "nothing to undo: no target database", "safe to repeat"
    assert canary_appeared(canary, sandbox) == []


def test_roles_kept_aside_with_a_renamed_database_lose_their_login_until_a_retry_takes_them_over(
    sandbox, hostile_source, canary, tmp_path, monkeypatch
):
    monkeypatch.setenv("CUTOVER_TEST_HOSTILE_ROLE_PASSWORD", "plain-password-1")
    runbook = hostile_runbook(sandbox, tmp_path, tmp_path, "x")
    app = runbook.application("hostile")
    db = app.database(HOSTILE_DB).model_copy(update={"on_rollback": "rename", "method": "stream"})
    move = database.Move(runbook, app, db, ATTEMPT)
    database.freeze_database(move)
    database.stream_database(move)
    undone = database.undo_target_database(move)
    assert undone.done.startswith("renamed to ")
    assert sorted(undone.details["roles_login_disabled"]) == sorted([hostile_source["owner"], PLAIN_ROLE])
    login = "select rolname, rolcanlogin, rolpassword is null from pg_authid where rolname = %s"
    with connect(admin_of(sandbox.cloud), "postgres", autocommit=True) as admin:
        assert admin.execute(login, (PLAIN_ROLE,)).fetchall() == [(PLAIN_ROLE, False, True)]
    # a retry after the rollback (a new attempt) gives the role its login and password back
    again = database.Move(runbook, app, db, ATTEMPT + "-2")
    assert database.stream_database(again).roles_created == []
    with connect(admin_of(sandbox.cloud), "postgres", autocommit=True) as admin:
        assert admin.execute(login, (PLAIN_ROLE,)).fetchall() == [(PLAIN_ROLE, True, False)]
        assert set(roles.created_roles(admin, again.marker())) == {hostile_source["owner"], PLAIN_ROLE}, "taken over"
    target = admin_of(sandbox.cloud)
    with connect(PgEndpoint(target.host, target.port, PLAIN_ROLE, "plain-password-1", sslmode="disable"), HOSTILE_DB) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_files_that_would_leave_their_roots_through_symbolic_links_are_refused(sandbox, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the target\n")
    source_root, target_root = tmp_path / "share", Path(sandbox.ssh.work_dir) / "files-root-links"
    (source_root / "data").mkdir(parents=True)
    (source_root / "data" / "leak").symlink_to(outside / "secret.txt")
    (source_root / "escape").symlink_to(outside)
    (source_root / "fine").mkdir()
    (source_root / "fine" / "a.txt").write_text("ok\n")
    (target_root / "app").mkdir(parents=True)
    (target_root / "app" / "out").symlink_to(outside)
    try:
        for name, source_path, target_path, message in (
            ("tree", "data", "app/data", "data/leak is a symbolic link out of"),
            ("dir", "escape", "app/x", "escape leads out of"),
            ("target", "fine", "app/out/fine", "is a symbolic link: refusing to follow it out of the declared root"),
        ):
            runbook = hostile_runbook(sandbox, source_root, target_root, "x")
            app = runbook.application("hostile").model_copy(
                update={
                    "files": [
                        runbook.application("hostile")
                        .files[0]
                        .model_copy(update={"name": name, "source_path": source_path, "target_path": target_path})
                    ]
                }
            )
            with pytest.raises(PermanentStepError, match=message):
                files.move_files(runbook, app, name)
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"], "nothing written outside the root"
    finally:
        for path in sorted(target_root.rglob("*"), reverse=True):
            path.unlink() if path.is_symlink() or path.is_file() else path.rmdir()
        target_root.rmdir()


def test_smoke_sql_cannot_write_and_runs_as_the_smoke_role(sandbox, monkeypatch):
    reset(sandbox)
    cloud = admin_of(sandbox.cloud)
    with connect(cloud, "postgres", autocommit=True) as admin:
        admin.execute("create database smoke_probe")
        admin.execute("create role smoke_reader login password 'smoke-reader-pw'")
    try:
        runbook = load_runbook("runbooks/demo.yaml")
        write = SqlStep(site="cloud", database="smoke_probe", query="create table public.written_by_smoke (x int)")
        with pytest.raises(PermanentStepError, match="read-only transaction"):
            actions.sql_query(runbook, write, label="gis.smoke[0] sql", read_only=True)
        with connect(cloud, "smoke_probe", autocommit=True) as conn:
            assert conn.execute("select to_regclass('public.written_by_smoke')").fetchone() == (None,)
        # the same statement as an action (freeze, start: they may write) does write: the check above can fail
        actions.sql_query(runbook, write, label="gis.start[0] sql")
        with connect(cloud, "smoke_probe", autocommit=True) as conn:
            assert conn.execute("select to_regclass('public.written_by_smoke')").fetchone() == ("written_by_smoke",)

        monkeypatch.setenv("CUTOVER_TEST_SMOKE_PASSWORD", "smoke-reader-pw")
        cloud_pg = runbook.sites["cloud"].postgres
        assert cloud_pg is not None
        sites = dict(runbook.sites)
        sites["cloud"] = runbook.sites["cloud"].model_copy(
            update={
                "postgres": cloud_pg.model_copy(
                    update={"smoke_user": "smoke_reader", "smoke_password": "env:CUTOVER_TEST_SMOKE_PASSWORD"}
                )
            }
        )
        with_role = runbook.model_copy(update={"sites": sites})
        who = SqlStep(site="cloud", database="smoke_probe", query="select current_user", expect="smoke_reader")
        assert actions.sql_query(with_role, who, label="gis.smoke[1] sql", read_only=True).value == "smoke_reader"
    finally:
        reset(sandbox)
