"""Where Cutover keeps its state on this machine: one directory per user, outside any
checkout, so that audit logs and dumps survive a fresh clone and never land in a
repository. ``CUTOVER_HOME`` moves it; otherwise ``$XDG_STATE_HOME/cutover`` (by default
``~/.local/state/cutover``). Inside it: ``prefect/`` (the local Prefect server of
``cutover up``) and ``work/`` (a run's dumps and audit log; ``CUTOVER_WORK_DIR`` moves it).
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    if os.environ.get("CUTOVER_HOME"):
        return Path(os.environ["CUTOVER_HOME"]).expanduser().absolute()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser().absolute() / "cutover"


def prefect_home() -> Path:
    return state_dir() / "prefect"


def default_work_dir() -> Path:
    return state_dir() / "work"
