"""What every task needs: the loaded runbook, and the tags of a step's task run."""

from __future__ import annotations

import functools
import os
from typing import Any

from cutover.plan.build import Step
from cutover.runbook import load_runbook
from cutover.runbook.model import Runbook

# The tag by which the rollback flow finds the task runs of one attempt of a run.
ATTEMPT_TAG = "attempt:"


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Runbook:
    return load_runbook(path)


def runbook_at(path: str) -> Runbook:
    """The runbook, parsed once per process (and again only when the file changed)."""
    return _load(path, os.stat(path).st_mtime)


def step_tags(step: Step, attempt_key: str) -> list[str]:
    """Tags of a step's task run: only its attempt (the rollback flow and the report find a
    generation's steps by it). The step id names the application and the phase. Prefect
    asks the server for a tag-concurrency lease before every tagged task run, remembering
    per set of tags that none exists: with one tag shared by a generation's steps, it asks
    about once per generation; with a tag per application and phase it asked about once
    per step, and 40 applications freezing at once made the local server refuse leases."""
    return [f"{ATTEMPT_TAG}{attempt_key}"]


def once(prefix: str) -> Any:
    """A cache key function for a task that always looks again: a key of its own task run,
    so its result is persisted (a report reads it later) yet never found by another run
    (Prefect's NO_CACHE would keep nothing)."""

    def key(context: Any, parameters: Any) -> str:
        return f"{prefix}:once:{context.task_run.id}"

    return key
