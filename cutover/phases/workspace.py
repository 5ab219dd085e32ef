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
    """The run's own directory, only for this user (its dumps are the estate's data): every
    level this call creates is 0700, and the run's own directory is made 0700 whoever
    created it."""
    root = work_root()
    path = root / cutover / attempt_key
    # The levels above the root (``~/.local/state`` on a fresh machine) may not exist yet;
    # they are the user's own, made with the usual mode.
    root.parent.mkdir(parents=True, exist_ok=True)
    for level in (root, root / cutover, path):
        try:
            level.mkdir(mode=0o700)
        except FileExistsError:
            continue
        level.chmod(0o700)  # mkdir's mode passes through the umask; this is exact
    path.chmod(0o700)
    return path


# What the run's files on either host are made: directories for this user only, files
# readable by this user only (cutover.process gives programs umask 077; the upload makes
# them so on the target host).
PRIVATE_MODE = "directories 0700, files 0600"


def remote_run_dir(work_dir: str, cutover: str, attempt_key: str) -> str:
    return f"{work_dir.rstrip('/')}/{cutover}/{attempt_key}"
