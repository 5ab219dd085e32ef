"""What the connected role may do, for the preflight: the privileges the steps need
(freeze, end sessions, read every table; create databases and roles on the target)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from cutover.postgres._errors import translated, where


@dataclass(frozen=True)
class RolePrivileges:
    superuser: bool
    createdb: bool
    createrole: bool
    signal_backend: bool  # may end other sessions (pg_signal_backend)
    read_all_data: bool  # may read every table (pg_read_all_data)


def role_privileges(conn: psycopg.Connection[Any]) -> RolePrivileges:
    """The attributes and predefined roles of the role ``conn`` is connected as."""
    with translated(f"privileges on {where(conn)}"):
        row = conn.execute(
            """select rolsuper, rolcreatedb, rolcreaterole,
                      pg_has_role(current_user, 'pg_signal_backend', 'member'),
                      pg_has_role(current_user, 'pg_read_all_data', 'member')
               from pg_roles where rolname = current_user"""
        ).fetchone()
    assert row is not None, "the connected role is in pg_roles"
    return RolePrivileges(*(bool(value) for value in row))


def size_and_owner(conn: psycopg.Connection[Any], dbname: str) -> tuple[int, str] | None:
    """(bytes, owner) of ``dbname``, or None when it does not exist."""
    with translated(f"database {dbname} on {where(conn)}"):
        row = conn.execute(
            "select pg_database_size(datname), pg_get_userbyid(datdba) from pg_database where datname = %s", (dbname,)
        ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def unreadable_tables(conn: psycopg.Connection[Any]) -> int:
    """How many tables, sequences and materialized views of the connected database the
    role may not SELECT (pg_dump would fail on them)."""
    with translated(f"privileges on {where(conn)}"):
        row = conn.execute(
            """select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where c.relkind in ('r', 'p', 'S', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
                 and n.nspname not like 'pg_toast%' and not has_table_privilege(c.oid, 'SELECT')"""
        ).fetchone()
    return int(row[0]) if row else 0
