"""The roles a database needs, and creating them on the target before any data moves.

pg_dump does not carry roles (they belong to the cluster, not the database), yet every
``ALTER ... OWNER TO`` and ``GRANT`` in the dump names one; a restore into a cluster that
lacks them fails halfway. So the importer finds the roles a database uses, takes their
definitions from ``pg_dumpall --roles-only --no-role-passwords`` on the source, creates the
missing ones on the target, and sets passwords only where the runbook provides one.

Passwords never travel as plain text to the server: they are hashed client-side into a
SCRAM (or md5, whatever the server's ``password_encryption`` says) verifier by libpq, so
not even a server statement log sees them; and they are never logged.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from psycopg import sql

from cutover.errors import PermanentStepError, TransientStepError
from cutover.postgres._errors import first_line as _first_line
from cutover.postgres._errors import where as _where
from cutover.postgres.endpoint import PgEndpoint
from cutover.postgres.passfile import client_environment
from cutover.process import run_program

log = structlog.get_logger()

# Roles with an OID below this exist in every cluster (the bootstrap superuser and the
# predefined pg_* roles); nobody needs to create them.
_FIRST_NORMAL_OID = 16384

_USER_NS = "{n}.nspname not in ('pg_catalog', 'information_schema') and {n}.nspname !~ '^pg_toast' and {n}.nspname !~ '^pg_temp_'"

_ROLES_IN_USE = f"""
with owners(r) as (
    select datdba from pg_database where datname = current_database()
    union select n.nspowner from pg_namespace n where {_USER_NS.format(n="n")}
    union select c.relowner from pg_class c join pg_namespace n on n.oid = c.relnamespace where {_USER_NS.format(n="n")}
    union select p.proowner from pg_proc p join pg_namespace n on n.oid = p.pronamespace where {_USER_NS.format(n="n")}
    union select t.typowner from pg_type t join pg_namespace n on n.oid = t.typnamespace where {_USER_NS.format(n="n")}
    union select o.oprowner from pg_operator o join pg_namespace n on n.oid = o.oprnamespace where {_USER_NS.format(n="n")}
    union select o.opcowner from pg_opclass o join pg_namespace n on n.oid = o.opcnamespace where {_USER_NS.format(n="n")}
    union select o.opfowner from pg_opfamily o join pg_namespace n on n.oid = o.opfnamespace where {_USER_NS.format(n="n")}
    union select o.collowner from pg_collation o join pg_namespace n on n.oid = o.collnamespace where {_USER_NS.format(n="n")}
    union select o.conowner from pg_conversion o join pg_namespace n on n.oid = o.connamespace where {_USER_NS.format(n="n")}
    union select o.dictowner from pg_ts_dict o join pg_namespace n on n.oid = o.dictnamespace where {_USER_NS.format(n="n")}
    union select o.cfgowner from pg_ts_config o join pg_namespace n on n.oid = o.cfgnamespace where {_USER_NS.format(n="n")}
    union select o.stxowner from pg_statistic_ext o join pg_namespace n on n.oid = o.stxnamespace where {_USER_NS.format(n="n")}
    union select lomowner from pg_largeobject_metadata
    union select extowner from pg_extension
    union select fdwowner from pg_foreign_data_wrapper
    union select srvowner from pg_foreign_server
    union select evtowner from pg_event_trigger
    union select pubowner from pg_publication
    union select defaclrole from pg_default_acl
    union select umuser from pg_user_mappings where umuser is not null  -- the view: the catalog is superuser-only
    union select unnest(polroles) from pg_policy
),
acls(acl) as (
    select datacl from pg_database where datname = current_database()
    union all select n.nspacl from pg_namespace n where {_USER_NS.format(n="n")}
    union all select c.relacl from pg_class c join pg_namespace n on n.oid = c.relnamespace where {_USER_NS.format(n="n")}
    union all select a.attacl from pg_attribute a join pg_class c on c.oid = a.attrelid
              join pg_namespace n on n.oid = c.relnamespace where a.attacl is not null and {_USER_NS.format(n="n")}
    union all select p.proacl from pg_proc p join pg_namespace n on n.oid = p.pronamespace where {_USER_NS.format(n="n")}
    union all select t.typacl from pg_type t join pg_namespace n on n.oid = t.typnamespace where {_USER_NS.format(n="n")}
    union all select lomacl from pg_largeobject_metadata
    union all select defaclacl from pg_default_acl
    union all select fdwacl from pg_foreign_data_wrapper
    union all select srvacl from pg_foreign_server
),
grants(r) as (
    -- Grantors too: pg_restore re-grants as the recorded grantor when it is not the owner.
    select (e).grantee from (select aclexplode(acl) as e from acls where acl is not null) x
    union select (e).grantor from (select aclexplode(acl) as e from acls where acl is not null) x
)
select rolname from pg_roles where oid >= {_FIRST_NORMAL_OID} and oid in (select r from owners union select r from grants)
order by 1
"""


def roles_in_use(conn: psycopg.Connection[Any]) -> set[str]:
    """Every role the database ``conn`` is connected to refers to: its owner, the owner of
    every object in it, every grantee and grantor in its privileges (schemas, tables,
    columns, sequences, functions, types, large objects, default privileges, foreign
    servers) and every role named in a row-security policy. PUBLIC and the built-in roles
    (the bootstrap superuser, pg_*) are left out: every cluster has them."""
    try:
        return {row[0] for row in conn.execute(_ROLES_IN_USE).fetchall()}
    except psycopg.OperationalError as exc:
        raise TransientStepError(f"roles in use in database {conn.info.dbname}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"roles in use in database {conn.info.dbname}: {_first_line(exc)}") from exc


def missing_roles(target_admin_conn: psycopg.Connection[Any], roles: Iterable[str]) -> set[str]:
    """Those of ``roles`` that do not exist on the target cluster."""
    wanted = sorted(set(roles))
    if not wanted:
        return set()
    rows = _execute(target_admin_conn, "select rolname from pg_roles where rolname = any(%s)", (wanted,)).fetchall()
    return set(wanted) - {r[0] for r in rows}


# --- role definitions from the source ----------------------------------------------------


@dataclass(frozen=True)
class RoleStatement:
    """One statement of a role definition script, with the roles it is about."""

    text: str
    kind: str  # "create", "alter", "comment", "grant"
    role: str  # the role created/altered/commented; for a grant, the member
    granted: str | None = None  # for a grant: the role granted


_IDENT = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_CREATE = re.compile(rf"^CREATE ROLE ({_IDENT});$", re.DOTALL)
_ALTER = re.compile(rf"^ALTER ROLE ({_IDENT}) (.*);$", re.DOTALL)
_COMMENT = re.compile(rf"^COMMENT ON ROLE ({_IDENT}) IS .*;$", re.DOTALL)
_GRANT = re.compile(rf"^GRANT ({_IDENT}) TO ({_IDENT})((?: WITH \w+ OPTION)*)(?: GRANTED BY {_IDENT})?;$", re.DOTALL)


def role_definitions(source: PgEndpoint, roles: Iterable[str], *, timeout_s: float = 120) -> str:
    """SQL that defines ``roles`` as they are on ``source``: CREATE ROLE and ALTER ROLE
    (attributes and settings), comments, and the memberships among them; no passwords.
    Taken with ``pg_dumpall --roles-only --no-role-passwords``. Roles absent from the
    source are simply not in it (see :func:`missing_roles`)."""
    with client_environment(source) as env:
        result = run_program(
            [source.tool("pg_dumpall"), "--roles-only", "--no-role-passwords", "--no-password"],
            env=env,
            timeout_s=timeout_s,
            log_name=f"pg_dumpall --roles-only {source.where}",
            capture_stdout=True,
        )
    return filter_role_definitions((result.stdout or b"").decode("utf-8"), roles)


def filter_role_definitions(script: str, roles: Iterable[str]) -> str:
    """The statements of a ``pg_dumpall --roles-only`` script that concern ``roles``; a
    membership is kept when both sides are among them, without its GRANTED BY (the
    grantor may not exist on the target)."""
    wanted = set(roles)
    kept = []
    for statement in parse_role_statements(script):
        if statement.role in wanted and (statement.granted is None or statement.granted in wanted):
            kept.append(statement.text)
    return "\n".join(kept) + ("\n" if kept else "")


def parse_role_statements(script: str) -> list[RoleStatement]:
    """The role statements of a script, in order; other statements are skipped, and so are
    ``ALTER ROLE ... IN DATABASE`` settings (that database may not exist on the target)."""
    out = []
    for text in _statements(script):
        if m := _CREATE.match(text):
            out.append(RoleStatement(text, "create", _unquote(m.group(1))))
        elif m := _COMMENT.match(text):
            out.append(RoleStatement(text, "comment", _unquote(m.group(1))))
        elif m := _ALTER.match(text):
            if not m.group(2).startswith("IN DATABASE "):
                out.append(RoleStatement(text, "alter", _unquote(m.group(1))))
        elif m := _GRANT.match(text):
            granted, member = m.group(1), m.group(2)
            out.append(RoleStatement(f"GRANT {granted} TO {member}{m.group(3)};", "grant", _unquote(member), _unquote(granted)))
    return out


def _statements(script: str) -> list[str]:
    """Split SQL into statements at semicolons outside quotes, dropping ``--`` comments."""
    statements, current, i, n = [], [], 0, len(script)
    quote: str | None = None
    while i < n:
        ch = script[i]
        if quote:
            current.append(ch)
            if ch == quote:
                if i + 1 < n and script[i + 1] == quote:  # doubled quote inside the literal
                    current.append(script[i + 1])
                    i += 1
                else:
                    quote = None
        elif ch in ("'", '"'):
            quote = ch
            current.append(ch)
        elif ch == "-" and script.startswith("--", i):
            end = script.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == ";":
            current.append(ch)
            text = "".join(current).strip()
            if text != ";":
                statements.append(text)
            current = []
        else:
            current.append(ch)
        i += 1
    return statements


def _unquote(ident: str) -> str:
    if ident.startswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident.lower()


# --- creating them on the target -------------------------------------------------------


def ensure_roles(
    target_admin_conn: psycopg.Connection[Any],
    definitions_sql: str,
    roles: Iterable[str],
    passwords: Mapping[str, str],
    marker: str | None = None,
) -> list[str]:
    """Create those of ``roles`` that the target lacks, from ``definitions_sql`` (see
    :func:`role_definitions`), with their attributes, comments and memberships; roles that
    already exist are left as they are. Then set the password of every role in ``roles``
    that has a non-empty entry in ``passwords``. All of it in one transaction: either every
    change is made or none. Returns the names of the roles created. With ``marker``, each
    role created carries it as its setting ``cutover.created_by`` (:data:`CREATED_BY`), so
    that a rollback of the same attempt knows it may remove it (:func:`undo_created_roles`),
    a retry included; the role's comment stays the source's. A role that an earlier attempt
    created (its rollback may have taken its login away) gets its attributes from the source
    again and this attempt's marker, so that a retry after a rollback logs in as before.

    ``target_admin_conn``: an autocommit connection of a role with CREATEROLE."""
    wanted = set(roles)
    before = wanted - missing_roles(target_admin_conn, wanted)
    # roles an earlier attempt created (its rollback may have taken their login): this one
    # gives them their attributes from the source again, and takes them over
    adopted = _marked_by_an_attempt(target_admin_conn, before) if marker is not None else set()
    statements = [s for s in parse_role_statements(definitions_sql) if s.role in wanted]
    created: list[str] = []
    try:
        with target_admin_conn.transaction():
            for statement in statements:
                if statement.role in adopted and statement.kind == "alter" and _ALTER_WITH.match(statement.text):
                    attributes = _without_default_attributes(statement.text)
                    if attributes is not None:
                        target_admin_conn.execute(attributes.encode())
                    continue
                new = statement.role not in before
                if statement.kind == "grant":
                    # A membership is part of a new role's definition (either side new).
                    new = new or statement.granted not in before
                    if statement.granted not in wanted:
                        continue
                if not new:
                    continue
                text = _without_default_attributes(statement.text) if statement.kind == "alter" else statement.text
                if text is None:
                    continue
                target_admin_conn.execute(text.encode())
                if statement.kind == "create":
                    created.append(statement.role)
            if marker is not None:
                for role in sorted(set(created) | adopted):
                    target_admin_conn.execute(
                        sql.SQL("alter role {} set {} = {}").format(
                            sql.Identifier(role), sql.Identifier(*CREATED_BY.split(".")), sql.Literal(marker)
                        )
                    )
            for role in sorted(wanted):
                password = passwords.get(role)
                if password:
                    _set_password(target_admin_conn, role, password)
    except psycopg.OperationalError as exc:
        raise TransientStepError(f"creating roles on {_where(target_admin_conn)}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"creating roles on {_where(target_admin_conn)}: {_first_line(exc)}") from exc
    if created:
        log.info("roles_created", roles=created, where=_where(target_admin_conn))
    if adopted:
        log.info("roles_taken_over", roles=sorted(adopted), where=_where(target_admin_conn))
    passworded = sorted(r for r in wanted if passwords.get(r))
    if passworded:
        log.info("role_passwords_set", roles=passworded, where=_where(target_admin_conn))
    return created


# What CREATE ROLE gives anyway. pg_dumpall spells every attribute out, but a role with
# CREATEROLE that is not a superuser (a managed service's admin) may not even *mention*
# SUPERUSER, REPLICATION or BYPASSRLS; on a role just created, dropping the defaults
# changes nothing else.
_DEFAULT_ATTRIBUTES = re.compile(r" (?:NOSUPERUSER|INHERIT|NOCREATEROLE|NOCREATEDB|NOLOGIN|NOREPLICATION|NOBYPASSRLS)(?=[ ;])")
_ALTER_WITH = re.compile(rf"^(ALTER ROLE {_IDENT} WITH)(.*);$", re.DOTALL)


def _without_default_attributes(text: str) -> str | None:
    """An ``ALTER ROLE ... WITH`` statement without default-valued attributes; None when
    nothing is left. Other statements come back unchanged."""
    match = _ALTER_WITH.match(text)
    if not match:
        return text
    rest = _DEFAULT_ATTRIBUTES.sub("", match.group(2) + ";")[:-1]
    return f"{match.group(1)}{rest};" if rest.strip() else None


# A role setting (pg_db_role_setting) that names the attempt that created the role.
CREATED_BY = "cutover.created_by"


@dataclass(frozen=True)
class RolesUndone:
    """What :func:`undo_created_roles` did, role by role."""

    dropped: list[str]
    login_disabled: list[str]  # still owned objects in the database kept (or renamed) aside
    left: dict[str, list[str]]  # still used by other databases: role -> their names


def _marked_by_an_attempt(admin_conn: psycopg.Connection[Any], roles: Iterable[str]) -> set[str]:
    """Those of ``roles`` that some attempt of a cutover created (:data:`CREATED_BY`)."""
    rows = _execute(
        admin_conn,
        """select r.rolname from pg_roles r join pg_db_role_setting s on s.setrole = r.oid and s.setdatabase = 0
           where r.rolname = any(%s) and exists (select 1 from unnest(s.setconfig) c where c like %s)""",
        (sorted(roles), f"{CREATED_BY}=cutover:%"),
    ).fetchall()
    return {row[0] for row in rows}


def created_roles(admin_conn: psycopg.Connection[Any], marker: str) -> list[str]:
    """The roles that :func:`ensure_roles` created with ``marker``."""
    rows = _execute(
        admin_conn,
        """select r.rolname from pg_roles r join pg_db_role_setting s on s.setrole = r.oid and s.setdatabase = 0
           where %s = any(s.setconfig) order by 1""",
        (f"{CREATED_BY}={marker}",),
    ).fetchall()
    return [row[0] for row in rows]


def undo_created_roles(
    admin_conn: psycopg.Connection[Any],
    marker: str,
    kept_databases: Collection[str],
    needed_elsewhere: Mapping[str, list[str]] | None = None,
) -> RolesUndone:
    """Remove the roles this attempt created (``marker``), now that its database is being
    rolled back: a role nothing depends on any more is dropped; one that only the database
    kept aside (``kept_databases``: ``on_rollback`` keep or rename) still depends on keeps its
    objects but loses its login and password; one that another database uses (it moves with
    another application, which goes on) is left as it is. Roles that existed before the run
    never carry the marker and are never touched; nor are roles in ``needed_elsewhere``
    (role -> the other databases that use it, which may not be restored yet, so that the
    cluster cannot tell). ``None``: who else needs them is unknown, and every role is left.
    Idempotent."""
    done = RolesUndone([], [], {})
    for role in created_roles(admin_conn, marker):
        if needed_elsewhere is None:
            done.left[role] = ["(unknown: the other databases' roles could not be read)"]
            continue
        if role in needed_elsewhere:
            done.left[role] = needed_elsewhere[role]
            continue
        users = [
            row[0]
            for row in _execute(
                admin_conn,
                """select distinct d.datname from pg_shdepend s join pg_database d on d.oid = s.dbid
                   where s.refclassid = 'pg_authid'::regclass and s.refobjid = (select oid from pg_roles where rolname = %s)
                   order by 1""",
                (role,),
            ).fetchall()
        ]
        others = [name for name in users if name not in kept_databases]
        if others:
            done.left[role] = others
        elif users:
            _execute(admin_conn, sql.SQL("alter role {} nologin password null").format(sql.Identifier(role)))
            done.login_disabled.append(role)
        else:
            _execute(admin_conn, sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
            done.dropped.append(role)
    if done.dropped or done.login_disabled or done.left:
        log.info(
            "roles_undone",
            dropped=done.dropped,
            login_disabled=done.login_disabled,
            left=sorted(done.left),
            where=_where(admin_conn),
        )
    return done


def _set_password(conn: psycopg.Connection[Any], role: str, password: str) -> None:
    # libpq hashes the password with the algorithm the server asks for (password_encryption),
    # so the statement carries a verifier, never the password itself.
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode()).decode()
    conn.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(role), sql.Literal(verifier)))


def _execute(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> psycopg.Cursor[Any]:
    try:
        return conn.execute(query, params)
    except psycopg.OperationalError as exc:
        raise TransientStepError(f"roles on {_where(conn)}: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"roles on {_where(conn)}: {_first_line(exc)}") from exc
