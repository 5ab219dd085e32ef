"""The environment an external program starts with: a short allow-list of this process's
variables and what the caller gives it, nothing else.

A flow-run process holds every secret of the estate that the site put in its environment
(``env:`` references resolve there), and whatever else the worker was started with. A
program it starts (pg_dump, pg_restore, pg_dumpall, ssh, the process guardian) needs none
of that: it gets its own connection parameters and, for a password, a 0600 passfile
(:func:`cutover.postgres.passfile.client_environment`) from the caller. Inheriting the
rest would hand both sites' passwords, every role password, the DNS key and the SSH key to
every program, and to anything that program starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# What programs legitimately read from their environment: where to find programs, who and
# where they run, how to print text. Nothing here can carry a credential.
ALLOWED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"})
ALLOWED_PREFIXES = ("LC_",)


def allowed(name: str) -> bool:
    """Whether a variable of this process may pass on to a program it starts."""
    return name in ALLOWED or name.startswith(ALLOWED_PREFIXES)


def program_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's allowed variables (:data:`ALLOWED`, ``LC_*``), then ``extra`` on top."""
    env = {name: value for name, value in os.environ.items() if allowed(name)}
    env.update(extra or {})
    return env
