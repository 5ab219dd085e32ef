"""What a status page is started with, and where each setting comes from.

The team token comes from the environment (``CUTOVER_STATUS_TEAM_TOKEN``) or a file
given on the command line, never from the runbook: the runbook is shared with everyone
who reads the plan. Without a token the team view is off (every request refused).

The runbook, when given, supplies the cutover's name, its window and the plan (for the
application list before anything has run, and for the forecast). The values of the
runbook's ``env:`` secrets present in this environment are registered for redaction, so a
log line that somehow carried one is cleaned here as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cutover.redaction import register_secret

TOKEN_VARIABLE = "CUTOVER_STATUS_TEAM_TOKEN"
DEFAULT_PORT = 4300
DEFAULT_BACKFILL = timedelta(days=14)


@dataclass(frozen=True)
class StatusPageSettings:
    api_url: str
    ui_url: str
    runbook: Path | None = None
    team_token: str | None = None
    backfill: timedelta = DEFAULT_BACKFILL
    publish_config: Path | None = None


def team_token(token_file: Path | None = None, environ: dict[str, str] | None = None) -> str | None:
    """The team token: the file's first line when a file is given, else the variable."""
    if token_file is not None:
        lines = token_file.read_text().strip().splitlines()
        return lines[0].strip() if lines and lines[0].strip() else None
    value = (environ if environ is not None else os.environ).get(TOKEN_VARIABLE, "").strip()
    return value or None


def register_runbook_secrets(runbook: Any, environ: Mapping[str, str] | None = None) -> int:
    """Register the values of the runbook's ``env:`` secret references found in the
    environment; returns how many were found."""
    values: Mapping[str, str] = os.environ if environ is None else environ
    found = 0

    def walk(value: Any) -> None:
        nonlocal found
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.startswith("env:"):
            secret = values.get(value[4:])
            if secret:
                register_secret(secret)
                found += 1

    walk(runbook.model_dump(mode="json", by_alias=True))
    return found
