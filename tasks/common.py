"""What every task needs: the loaded runbook and the step's parts."""

from __future__ import annotations

import functools
import os

from cutover.runbook import load_runbook
from cutover.runbook.model import Runbook


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Runbook:
    return load_runbook(path)


def runbook_at(path: str) -> Runbook:
    """The runbook, parsed once per process (and again only when the file changed)."""
    return _load(path, os.stat(path).st_mtime)


def parts(step_id: str) -> list[str]:
    """``burgerzaken/export/bzk`` -> ``["burgerzaken", "export", "bzk"]``."""
    return step_id.split("/")
