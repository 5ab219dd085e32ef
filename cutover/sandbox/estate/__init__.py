"""The old site's estate: roles, databases and their contents, generated on the server.

Each database of :data:`~cutover.sandbox.info.ESTATE` is built by one SQL script next to
this module (``<database>.sql``), in one transaction, as the application's owner role:
set-based ``generate_series`` inserts, so that ``--scale 20`` (about 1 GB) still takes
seconds per database rather than minutes. The data are deterministic functions of the
row number: the same scale gives the same rows and the same size.

Every bulk table has ``ROWS_PER_SCALE[table] * scale`` rows (:func:`row_counts`), so the
estate grows linearly with the scale; scale 0 gives the full schema with empty bulk tables.
The scripts contain what naive copies get wrong: sequences in use, views, a materialized
view, functions and triggers, an enum, jsonb, arrays, numeric money, timestamptz, a
partitioned table, a table without a primary key, large objects, a generated column, an
identity column, mixed-case and non-ASCII identifiers, a second schema, comments, grants.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import structlog
from psycopg import sql

from cutover.errors import SandboxError
from cutover.sandbox.info import ESTATE, AppInfo, PostgresInfo

log = structlog.get_logger()

_SCRIPTS = Path(__file__).parent

# Rows per unit of scale of every bulk table, by database then table. Scale 1 comes to
# about 50 MB of data over all databases.
ROWS_PER_SCALE: dict[str, dict[str, int]] = {
    "bzk": {"persons": 20_000, "addresses": 25_000, "relocations": 15_000, "relocations_archive": 5_000},
    "zaken": {"cases": 15_000, "status_history": 45_000},
    "documenten": {"documents": 1_000},
    "gis": {"parcels": 15_000, "cafes": 100},
    "woz": {"assessments": 30_000},
    "heffingen": {"payments": 40_000},
    "portaal": {"accounts": 10_000, "sessions": 20_000, "login_events": 30_000},
}

# Measured size per unit of scale (MB above an empty database), PostgreSQL 15: about 55 MB
# in all at scale 1, 1.1 GB at scale 20. Used to start the biggest builds first.
MB_PER_SCALE: dict[str, float] = {
    "documenten": 11.0,
    "bzk": 10.5,
    "zaken": 10.3,
    "portaal": 8.9,
    "gis": 5.7,
    "heffingen": 5.0,
    "woz": 4.0,
}

# The table an application's /health counts, by database (the first database of each app).
MAIN_TABLE: dict[str, str] = {
    "bzk": "persons",
    "zaken": "cases",
    "documenten": "documents",
    "gis": "parcels",
    "woz": "assessments",
    "heffingen": "payments",
    "portaal": "accounts",
}

# The marker a finished database carries (its comment), so that ``up`` can tell a complete
# database from one whose build was interrupted.
_DONE = "cutover sandbox estate, scale {scale}"


def owner_role(app: str) -> str:
    """The NOLOGIN role that owns an application's databases and objects."""
    return f"{app}_owner"


def app_role(app: str) -> str:
    """The LOGIN role the application itself connects as."""
    return f"{app}_app"


def row_counts(database: str, scale: int) -> dict[str, int]:
    """The number of rows each bulk table of ``database`` gets at ``scale``."""
    if scale < 0:
        raise SandboxError(f"scale must be 0 or more, not {scale}")
    return {table: rows * scale for table, rows in ROWS_PER_SCALE[database].items()}


def application_of(database: str) -> str:
    for app, databases in ESTATE.items():
        if database in databases:
            return app
    raise SandboxError(f"{database!r} is not a database of the sandbox estate")


def connect(pg: PostgresInfo, dbname: str, autocommit: bool = False) -> psycopg.Connection:
    """A connection as the cluster's migration superuser; SandboxError when it fails."""
    try:
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            dbname=dbname,
            sslmode="disable",
            connect_timeout=10,
            autocommit=autocommit,
        )
    except psycopg.Error as exc:
        raise SandboxError(
            f"cannot connect to the {pg.site} cluster at {pg.host}:{pg.port}/{dbname}: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def ensure_roles(pg: PostgresInfo, apps: dict[str, AppInfo]) -> None:
    """Create every application's owner and app roles that do not exist yet."""
    with connect(pg, "postgres", autocommit=True) as admin:
        existing = {row[0] for row in admin.execute("select rolname from pg_roles")}
        for app in apps.values():
            try:
                if owner_role(app.name) not in existing:
                    admin.execute(sql.SQL("create role {} nologin").format(sql.Identifier(owner_role(app.name))))
                if app.db_user not in existing:
                    admin.execute(
                        sql.SQL("create role {} login password {}").format(
                            sql.Identifier(app.db_user), sql.Literal(app.db_password)
                        )
                    )
            except psycopg.Error as exc:
                raise SandboxError(f"creating the roles of {app.name} on {pg.host}:{pg.port} failed: {_first_line(exc)}") from exc


def build_database(pg: PostgresInfo, database: str, scale: int, name: str | None = None) -> bool:
    """Create and fill ``database`` (its script, at ``scale``) under the name ``name``
    (default: the same), unless a complete build at this scale is already there.

    Returns True when it built, False when it found the database complete. A database
    left half-built by an interrupted ``up`` is dropped and built again. The roles must
    exist (:func:`ensure_roles`).
    """
    name = name or database
    app = application_of(database)
    done = _DONE.format(scale=scale)
    with connect(pg, "postgres", autocommit=True) as admin:
        row = admin.execute(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = %s", (name,)
        ).fetchone()
        if row is not None:
            if row[0] == done:
                return False
            if row[0] and row[0].startswith(_DONE.format(scale="")):
                raise SandboxError(
                    f"database {name} on {pg.host}:{pg.port} holds an estate of another scale ({row[0]}); run `cutover sandbox down --purge` first"
                )
            log.info("sandbox_estate_rebuild", database=name, reason="incomplete")
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(owner_role(app))))
    script = (_SCRIPTS / f"{database}.sql").read_text()
    try:
        with connect(pg, name) as conn, conn.transaction():
            conn.execute(sql.SQL("set local role {}").format(sql.Identifier(owner_role(app))))
            for table, rows in row_counts(database, scale).items():
                conn.execute("select set_config(%s, %s, true)", (f"estate.{table}", str(rows)))
            # No parameters: psycopg sends the whole script as one simple query.
            conn.execute(script.encode())
            conn.execute(
                sql.SQL("grant connect on database {} to {}").format(sql.Identifier(name), sql.Identifier(app_role(app)))
            )
            conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(done)))
    except psycopg.Error as exc:
        raise SandboxError(f"building database {name} on {pg.host}:{pg.port} failed: {_first_line(exc)}") from exc
    log.info("sandbox_estate_built", database=name, scale=scale)
    return True


def build(
    pg: PostgresInfo, apps: dict[str, AppInfo], scale: int, workers: int = 3, on_done: Callable[[str], None] | None = None
) -> None:
    """Create the roles and build every database of the estate, ``workers`` at a time."""
    ensure_roles(pg, apps)
    databases = [db for app in apps.values() for db in app.databases]
    # Biggest first, so the longest build does not start last.
    databases.sort(key=lambda db: -MB_PER_SCALE[db])
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="estate") as pool:
        for database, _ in zip(databases, pool.map(lambda db: build_database(pg, db, scale), databases), strict=False):
            if on_done:
                on_done(database)
