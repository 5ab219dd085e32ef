"""Small helpers for the one-line error messages of the PostgreSQL adapters."""

from __future__ import annotations

from typing import Any

import psycopg


def where(conn: psycopg.Connection[Any]) -> str:
    """The server a connection talks to, as ``host:port``."""
    return f"{conn.info.host}:{conn.info.port}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (psycopg adds DETAIL/HINT lines), or its
    type name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
