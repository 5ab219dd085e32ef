"""What a name in a runbook may be, and why.

Names become parts of things the tool builds and must never be able to split or escape:

- **Step names** (the cutover, applications, sites, files): parts of step ids
  (``burgerzaken/export/bzk``), task run names, cache keys, event resources and file names.
  Lowercase letters, digits, ``-`` and ``_``, starting with a letter, at most 63 characters:
  no ``/`` (the step id separator), no ``.`` or ``:`` (event and cache key separators), no
  space, quote or shell character.
- **Gate names**: also part of the key of the Prefect pause that asks for the decision,
  which Prefect allows only lowercase letters, digits and dashes: no ``_``.
- **Database and role names**: PostgreSQL identifiers that also name steps and dump files.
  At most 63 bytes (PostgreSQL cuts longer identifiers silently, so two long names could
  become one), ASCII letters, digits, ``_``, ``-`` and ``.``, starting with a letter or
  ``_``: no ``/`` or ``\\`` (step id and path separators), no space, quote, ``$`` or ``;``.
  Upper case is kept (the tool always quotes identifiers). A database whose name falls
  outside this set is renamed before the weekend or moved by hand. Role names starting with
  ``pg_`` are reserved by PostgreSQL and cannot be created.
- **Login names** (the PostgreSQL and SSH users): the same characters plus ``@``, for
  ``user@server`` and ``user@domain`` logins.

The messages for a pattern that does not match live here too (``PATTERN_MESSAGES``), so
the loader can say what the rule is instead of repeating the regular expression.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

STEP_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
GATE_NAME_PATTERN = r"^[a-z][a-z0-9-]*$"
PG_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
LOGIN_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.@-]*$"
MAX_NAME = 63

PATTERN_MESSAGES = {
    STEP_NAME_PATTERN: "must be lowercase letters, digits, '-' or '_', starting with a letter",
    GATE_NAME_PATTERN: "must be lowercase letters, digits or '-', starting with a letter (a gate name is part of a Prefect pause key)",
    PG_NAME_PATTERN: "must be ASCII letters, digits, '_', '-' or '.', starting with a letter or '_' "
    "(no '/', space, quote or other separator: the name is part of step ids and file names)",
    LOGIN_NAME_PATTERN: "must be ASCII letters, digits, '_', '-', '.' or '@', starting with a letter or '_'",
}

# Application names that would make a step id of an application equal to another kind of
# id: gate steps are ``gate/NAME``, compensations ``rollback/STEP``, preflight ``preflight/...``.
RESERVED_APPLICATION_NAMES = frozenset({"gate", "rollback", "preflight"})


def _not_reserved(name: str) -> str:
    if name in RESERVED_APPLICATION_NAMES:
        raise ValueError(f"'{name}' is reserved: step ids starting with '{name}/' belong to the tool")
    return name


def _not_pg_reserved(name: str) -> str:
    if name.startswith("pg_"):
        raise ValueError("role names starting with 'pg_' are reserved by PostgreSQL")
    return name


Name = Annotated[str, Field(pattern=STEP_NAME_PATTERN, max_length=MAX_NAME)]
"""The cutover, site, file and (referenced) application names: parts of step ids."""

ApplicationName = Annotated[Name, AfterValidator(_not_reserved)]
"""An application's own name: a step name that is not one of the tool's id prefixes."""

GateName = Annotated[str, Field(pattern=GATE_NAME_PATTERN, max_length=MAX_NAME)]
"""A gate's name: a step name without '_', as Prefect pause keys need."""

DatabaseName = Annotated[str, Field(pattern=PG_NAME_PATTERN, max_length=MAX_NAME)]
"""A PostgreSQL database name that can also be part of a step id and a file name."""

RoleName = Annotated[str, Field(pattern=PG_NAME_PATTERN, max_length=MAX_NAME), AfterValidator(_not_pg_reserved)]
"""A PostgreSQL role the run may create on the target."""

LoginName = Annotated[str, Field(pattern=LOGIN_NAME_PATTERN, max_length=MAX_NAME)]
"""A PostgreSQL or SSH login user."""
