"""Secret references: a runbook names where a secret lives, never the secret itself.

Two forms are accepted wherever a field holds a secret:

- ``env:NAME``    the value of environment variable NAME on the machine running the step;
- ``secret:NAME`` the value of the Prefect Secret block NAME.

Values are resolved only when a step needs them, and every resolved value is registered
with the log redactor so it can never reach a log line, an event or a report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import BeforeValidator

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")

HOW_TO_REFERENCE = (
    "write a reference instead of the value: env:NAME (an environment variable) or secret:NAME (a Prefect Secret block)"
)


class SecretReferenceError(ValueError):
    """A secret field that does not hold a well-formed reference."""


def parse_reference(text: str) -> tuple[str, str]:
    """Split ``env:NAME`` / ``secret:NAME`` into (kind, name); raise on anything else.

    The message never repeats the rejected text: it may be the secret itself.
    """
    kind, sep, name = text.partition(":")
    if not sep or kind not in ("env", "secret"):
        raise SecretReferenceError(f"inline secret is not allowed; {HOW_TO_REFERENCE}")
    if kind == "env" and not ENV_NAME.match(name):
        raise SecretReferenceError("env: reference needs an environment variable name (letters, digits, underscore)")
    if kind == "secret" and not BLOCK_NAME.match(name):
        raise SecretReferenceError("secret: reference needs a Prefect block name (lowercase letters, digits, dashes)")
    return kind, name


def _check(value: object) -> str:
    if not isinstance(value, str):  # a number or list where a reference belongs is a value too
        raise SecretReferenceError(f"inline secret is not allowed; {HOW_TO_REFERENCE}")
    parse_reference(value)
    return value


SecretRef = Annotated[str, BeforeValidator(_check)]
"""A field type: a string that must be ``env:NAME`` or ``secret:NAME``."""


class UnresolvedSecret(LookupError):
    """A reference whose value is not available on this machine."""


def resolve(reference: str, environ: Mapping[str, str] | None = None) -> str:
    """Return the secret value a reference points at and register it for redaction.

    Raises UnresolvedSecret naming the reference (never a value) when it cannot be found.
    ``secret:`` references load the Prefect Secret block, importing Prefect only then.
    """
    kind, name = parse_reference(reference)
    if kind == "env":
        env = os.environ if environ is None else environ
        if name not in env:
            raise UnresolvedSecret(f"environment variable {name} is not set")
        value = env[name]
    else:
        try:
            from prefect.blocks.system import Secret

            block = Secret.load(name)
            value = str(block.get())  # type: ignore[union-attr]  # called outside an event loop: the block itself
        except ValueError as exc:
            raise UnresolvedSecret(f"Prefect Secret block {name!r} was not found") from exc
    from cutover.log import register_secret

    register_secret(value)
    return value
