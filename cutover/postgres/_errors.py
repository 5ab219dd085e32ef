"""The PostgreSQL adapters' error boundary and the helpers of their one-line messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from cutover.errors import PermanentStepError, TransientStepError


def where(conn: psycopg.Connection[Any]) -> str:
    """The server a connection talks to, as ``host:port``."""
    return f"{conn.info.host}:{conn.info.port}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (psycopg adds DETAIL/HINT lines), or its
    type name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Errors a retry may get past: the server went away or is starting, a lock or a
# conflicting session, a deadlock or serialization failure.
_TRANSIENT = (
    psycopg.OperationalError,
    psycopg.errors.ObjectInUse,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.AdminShutdown,
    psycopg.errors.CannotConnectNow,
)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """The one error boundary of the PostgreSQL adapters: inside it, psycopg's errors become
    ``TransientStepError`` (worth a retry) or ``PermanentStepError`` (not), their message
    ``<what>: <the server's first line>``. Nothing of psycopg leaks past an adapter."""
    try:
        yield
    except _TRANSIENT as exc:
        raise TransientStepError(f"{what}: {first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise PermanentStepError(f"{what}: {first_line(exc)}") from exc
