"""Where a PostgreSQL cluster is and how to reach it: psycopg connections and the
environment for its client programs, with library errors translated at the boundary."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace

import psycopg
from psycopg.conninfo import make_conninfo

from cutover.errors import PermanentStepError, TransientStepError
from cutover.redaction import redact_text

APPLICATION_NAME = "cutover"

# libpq messages that no retry can fix: wrong credentials, a missing database or role,
# a pg_hba.conf rule that refuses us. Everything else (refused, timeout, "starting up",
# "too many clients") is worth retrying.
_PERMANENT_CONNECT_FAILURES = re.compile(
    r"password authentication failed|authentication failed|does not exist|no pg_hba\.conf entry"
    r"|permission denied|not permitted to log in|no password supplied|SSL is not enabled|invalid sslmode"
    r"|server does not support SSL",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class PgEndpoint:
    """A PostgreSQL server and the login used on it.

    ``bin_dir`` names the directory of the client programs to use (pg_dump, pg_restore,
    psql, pg_dumpall); without it they are looked up on ``PATH``. The password never
    appears in ``repr()``, and reaches client programs only through a 0600 passfile
    (:func:`cutover.postgres.passfile.client_environment`).
    """

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    sslmode: str = "prefer"
    bin_dir: str | None = None
    connect_timeout_s: int = 10
    sslrootcert: str | None = None  # a PEM file of the CA(s) the server's certificate must come from
    # where to connect when that is not ``host`` (a tunnel's 127.0.0.1); ``host`` stays the
    # name the server's certificate is checked against
    hostaddr: str | None = None

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}" + (f" (via {self.hostaddr})" if self.hostaddr else "")

    def conninfo(self, dbname: str) -> str:
        """A libpq connection string for psycopg (it contains the password: never log it)."""
        params: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": dbname,
            "sslmode": self.sslmode,
            "application_name": APPLICATION_NAME,
            "connect_timeout": self.connect_timeout_s,
        }
        if self.password is not None:
            params["password"] = self.password
        if self.sslrootcert is not None:
            params["sslrootcert"] = self.sslrootcert
        if self.hostaddr is not None:
            params["hostaddr"] = self.hostaddr
        return make_conninfo("", **params)

    def libpq_env(self) -> dict[str, str]:
        """Environment variables that point a client program (pg_dump, pg_restore, psql) at
        this server, without the password: that goes in a passfile of its own
        (:mod:`cutover.postgres.passfile`), never in argv (``ps`` shows it) nor in an
        environment (``/proc/PID/environ``, and every program it starts)."""
        env = {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGSSLMODE": self.sslmode,
            "PGAPPNAME": APPLICATION_NAME,
            "PGCONNECT_TIMEOUT": str(self.connect_timeout_s),
        }
        if self.sslrootcert is not None:
            env["PGSSLROOTCERT"] = self.sslrootcert
        if self.hostaddr is not None:
            env["PGHOSTADDR"] = self.hostaddr
        return env

    def through_tunnel(self, port: int) -> PgEndpoint:
        """This server as reached through a tunnel listening on 127.0.0.1:``port``
        (:mod:`cutover.ssh.tunnel`): ``hostaddr`` is the tunnel and ``host`` stays the
        server's name, which TLS checks the certificate against. A socket directory has no
        name (and had no TLS): then plainly the tunnel."""
        if self.host.startswith("/"):
            return replace(self, host="127.0.0.1", port=port, hostaddr=None)
        return replace(self, hostaddr="127.0.0.1", port=port)

    def tool(self, name: str) -> str:
        """The path of the client program ``name``: from ``bin_dir`` when set, else ``PATH``.
        Raises PermanentStepError when it is not there."""
        return client_program(name, self.bin_dir)


def client_program(name: str, bin_dir: str | None = None) -> str:
    """The path of a PostgreSQL client program, from ``bin_dir`` or ``PATH``."""
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise PermanentStepError(f"PostgreSQL client program {name} not found in {bin_dir}")
    found = shutil.which(name)
    if found is None:
        raise PermanentStepError(f"PostgreSQL client program {name} not found on PATH")
    return found


def connect(endpoint: PgEndpoint, dbname: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """A psycopg connection to ``dbname`` on ``endpoint``.

    Raises TransientStepError when the server cannot be reached (refused, timeout, starting
    up, too many clients) and PermanentStepError when it refuses us (authentication,
    unknown database or role, pg_hba.conf); the message names host:port/dbname and the
    user, never the password.
    """
    try:
        return psycopg.connect(endpoint.conninfo(dbname), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        reason = _reason(str(exc), endpoint.password)
        message = f"cannot connect to PostgreSQL at {endpoint.where}/{dbname} as {endpoint.user}: {reason}"
        if _PERMANENT_CONNECT_FAILURES.search(reason):
            raise PermanentStepError(message) from exc
        raise TransientStepError(message) from exc
    except psycopg.Error as exc:  # a malformed parameter (e.g. an unknown sslmode): our input is wrong
        reason = _reason(str(exc), endpoint.password)
        raise PermanentStepError(
            f"cannot connect to PostgreSQL at {endpoint.where}/{dbname} as {endpoint.user}: {reason}"
        ) from exc


def _reason(libpq_message: str, password: str | None) -> str:
    """The useful part of a libpq connection error, on one line and without secrets."""
    text = libpq_message.strip()
    # libpq prefixes 'connection failed: connection to server at "h", port p failed: '
    # which our message already says.
    text = re.sub(r"^connection failed:\s*", "", text)
    text = re.sub(r'connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed:\s*', "", text)
    text = re.sub(r"\s+", " ", text.replace("FATAL:", "")).strip()
    if password and len(password) >= 4:  # shorter values would mangle the text, not hide anything
        text = text.replace(password, "[redacted]")
    return redact_text(text) or "unknown error"


# What pg_dump / pg_restore print when the server went away or was not there yet: worth a
# retry, unlike a refusal (authentication, a missing database), which waiting will not fix.
_LOST_SERVER = re.compile(
    r"connection to server .* failed|could not connect to server|server closed the connection unexpectedly"
    r"|terminating connection due to administrator command|the database system is (starting up|shutting down)"
    r"|connection refused|connection timed out|no connection to the server",
    re.IGNORECASE,
)


def lost_server(program_stderr: str) -> bool:
    """Whether a libpq program's error output says the server could not be reached or went
    away (transient), rather than that it refused us (permanent)."""
    return bool(_LOST_SERVER.search(program_stderr)) and not _PERMANENT_CONNECT_FAILURES.search(program_stderr)
