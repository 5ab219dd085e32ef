"""Where a run keeps its local files (dumps before upload), stable across retries.

A run's key is its Prefect flow run id, which a retry keeps: a retried run finds the
files of its earlier attempt and resumes instead of starting over. A new run never sees
another run's files.
"""

from __future__ import annotations

import os
from pathlib import Path


def work_root() -> Path:
    return Path(os.environ.get("CUTOVER_WORK_DIR", ".cutover/work")).resolve()


def run_dir(cutover: str, run_key: str) -> Path:
    path = work_root() / cutover / run_key
    path.mkdir(parents=True, exist_ok=True)
    return path


def remote_run_dir(work_dir: str, cutover: str, run_key: str) -> str:
    return f"{work_dir.rstrip('/')}/{cutover}/{run_key}"
