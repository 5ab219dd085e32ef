"""What every task needs: the loaded runbook, and names Prefect accepts."""

from __future__ import annotations

import functools
import hashlib
import os
import re

from cutover.plan.build import Step
from cutover.runbook import load_runbook
from cutover.runbook.model import Runbook

# The tag by which the rollback flow finds the task runs of one attempt of a run.
ATTEMPT_TAG = "attempt:"

_NOT_IN_PAUSE_KEY = re.compile(r"[^a-z0-9-]+")


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Runbook:
    return load_runbook(path)


def runbook_at(path: str) -> Runbook:
    """The runbook, parsed once per process (and again only when the file changed)."""
    return _load(path, os.stat(path).st_mtime)


def pause_key(*parts: str) -> str:
    """A pause key made of ``parts``, in the only characters Prefect accepts there
    (lowercase letters, digits, dashes): ``gate-go-no-go-<run id>-g1``. A short hash of
    the parts keeps two keys that clean up alike (``a_b`` and ``a.b``) apart."""
    raw = "-".join(parts)
    clean = _NOT_IN_PAUSE_KEY.sub("-", raw.lower()).strip("-")
    if clean != raw:
        clean = f"{clean[:200]}-{hashlib.sha256(raw.encode()).hexdigest()[:6]}"
    return clean


def step_tags(step: Step, attempt_key: str) -> list[str]:
    """Tags of a step's task run: its attempt (the rollback flow finds a generation's steps
    by it), and its application and phase, for the UI's filters."""
    tags = [f"{ATTEMPT_TAG}{attempt_key}", f"phase:{step.phase}"]
    if step.application:
        tags.append(f"app:{step.application}")
    if step.gate:
        tags.append(f"gate:{step.gate}")
    return tags
