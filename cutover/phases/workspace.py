"""Where a run keeps its local files (dumps before upload), stable across retries.

Files live under the attempt key (the flow run id, which a retry keeps, plus the run's
generation): a retried run finds the files of its earlier attempt and resumes instead of
starting over; a retry after a rollback starts afresh. A new run never sees another run's.
"""

from __future__ import annotations

import os
from pathlib import Path

from cutover.state import default_work_dir


def work_root() -> Path:
    """``CUTOVER_WORK_DIR``, or the per-user state directory's ``work`` (cutover.state)."""
    configured = os.environ.get("CUTOVER_WORK_DIR")
    return Path(configured).expanduser().resolve() if configured else default_work_dir()


def run_dir(cutover: str, attempt_key: str) -> Path:
    """The run's own directory, only for this user (its dumps are the estate's data)."""
    path = work_root() / cutover / attempt_key
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def remote_run_dir(work_dir: str, cutover: str, attempt_key: str) -> str:
    return f"{work_dir.rstrip('/')}/{cutover}/{attempt_key}"
