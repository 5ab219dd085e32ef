"""Cutover: an event-driven cutover orchestrator for one-shot migration weekends.

The public surface is what this module names; everything else may move.
Importing ``cutover`` never imports Prefect: ``validate`` and ``plan`` stay fast.
"""

from __future__ import annotations

from cutover.errors import (
    CutoverError,
    PermanentStepError,
    Problem,
    RunbookError,
    SandboxError,
    StepError,
    TransientStepError,
    UnsafeChange,
)

__version__ = "0.1.0"

__all__ = [
    "CutoverError",
    "PermanentStepError",
    "Problem",
    "RunbookError",
    "SandboxError",
    "StepError",
    "TransientStepError",
    "UnsafeChange",
    "__version__",
]
