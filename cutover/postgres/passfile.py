"""A password for one PostgreSQL client program, in a 0600 passfile that only it reads.

``PGPASSWORD`` would put the password in the program's environment, which its owner (and
root) can read in ``/proc/PID/environ`` for as long as it runs, and which every program it
starts inherits. A passfile (``PGPASSFILE``) keeps it out of every environment:

* **Locally** the passfile is an anonymous memory file (``memfd_create``, mode 0600) that the
  program opens as ``/proc/<our pid>/fd/N``: it never reaches a disk and is gone when the
  ``with`` block ends (or this process dies). Where there is no ``memfd_create``, it is a
  0600 file in a private 0700 temporary directory, removed at the end of the block.
* **On the target host** the same line travels inside the remote wrapper's stdin header
  (:func:`cutover.ssh.remote_process.env_header` with ``secret_files``): a 0600 file in a
  0700 directory of its own, removed when the command ends or is killed.

One line, ``*:*:*:*:password``: the file serves one program and one server, so the wildcards
cannot match anything else.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from cutover.errors import PermanentStepError
from cutover.postgres.endpoint import PgEndpoint


def passfile_line(password: str) -> str:
    """The passfile line for ``password`` (``:`` and ``\\`` escaped, as libpq reads them)."""
    if "\n" in password or "\r" in password:
        raise ValueError("a PostgreSQL password for a passfile cannot span lines")
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def remote_passfile(endpoint: PgEndpoint) -> dict[str, str]:
    """``secret_files`` for a remote command (:func:`cutover.ssh.remote_process.execute`):
    ``{"PGPASSFILE": line}`` when the endpoint has a password, and ``PGSSLROOTCERT`` with the
    content of its pinned CA file (read here, on the orchestrator), so that pg_restore on the
    target host checks the server against the same CA without a file of its own there."""
    files = {"PGPASSFILE": passfile_line(endpoint.password)} if endpoint.password else {}
    if endpoint.sslrootcert is not None:
        try:
            with open(endpoint.sslrootcert, encoding="ascii") as pem:
                files["PGSSLROOTCERT"] = pem.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise PermanentStepError(f"ca_bundle {endpoint.sslrootcert} cannot be read: {exc}") from None
    return files


@contextmanager
def client_environment(endpoint: PgEndpoint) -> Iterator[dict[str, str]]:
    """The environment for a local client program (pg_dump, pg_dumpall, pg_restore, psql)
    of ``endpoint``: its connection parameters (:meth:`PgEndpoint.libpq_env`) and, when it
    has a password, ``PGPASSFILE`` naming a 0600 passfile that lives as long as the block.
    Start the program, and let it finish, inside the block."""
    env = endpoint.libpq_env()
    if not endpoint.password:
        yield env
        return
    line = passfile_line(endpoint.password).encode()
    if sys.platform.startswith("linux") and hasattr(os, "memfd_create"):
        fd = os.memfd_create("cutover-pgpass", os.MFD_CLOEXEC)
        try:
            os.fchmod(fd, 0o600)  # libpq ignores a passfile that others could read
            os.write(fd, line)
            yield {**env, "PGPASSFILE": f"/proc/{os.getpid()}/fd/{fd}"}
        finally:
            os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="cutover-pgpass-")  # 0700
    try:
        path = os.path.join(directory, "pgpass")
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as out:
            out.write(line)
        yield {**env, "PGPASSFILE": path}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
