"""Cutover: an event-driven cutover orchestrator for one-shot migration weekends.

The public surface is what this module names; everything else may move. Importing
``cutover`` never imports Prefect: ``validate`` and ``plan`` stay fast.

    from cutover import load_runbook, build_plan
    plan = build_plan(load_runbook("runbooks/demo.yaml"))
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
from cutover.plan import build_plan
from cutover.plan.build import Plan, Step
from cutover.runbook import load_runbook
from cutover.runbook.model import Runbook

__version__ = "0.1.0"

__all__ = [
    "CutoverError",
    "PermanentStepError",
    "Plan",
    "Problem",
    "Runbook",
    "RunbookError",
    "SandboxError",
    "Step",
    "StepError",
    "TransientStepError",
    "UnsafeChange",
    "__version__",
    "build_plan",
    "load_runbook",
]
