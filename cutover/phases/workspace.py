"""Where a run keeps its local files (dumps before upload), stable across retries.

A run's key is its Prefect flow run id, which a retry keeps: a retried run finds the
files of its earlier attempt and resumes instead of starting over. A new run never sees
another run's files.
"""

from __future__ import annotations

import os
from pathlib import Path

from cutover.state import default_work_dir


def work_root() -> Path:
    """``CUTOVER_WORK_DIR``, or the per-user state directory's ``work`` (cutover.state)."""
    configured = os.environ.get("CUTOVER_WORK_DIR")
    return Path(configured).expanduser().resolve() if configured else default_work_dir()


def run_dir(cutover: str, run_key: str) -> Path:
    """The run's own directory, only for this user (its dumps are the estate's data)."""
    path = work_root() / cutover / run_key
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def remote_run_dir(work_dir: str, cutover: str, run_key: str) -> str:
    return f"{work_dir.rstrip('/')}/{cutover}/{run_key}"
