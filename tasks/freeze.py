"""freeze: the old site into maintenance, its databases read-only and fingerprinted."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases.freeze import freeze_application
from cutover.plan.build import Step
from cutover.step_run import run_step
from tasks.common import runbook_at
from tasks.journal import FreezeRecord


@task(name="freeze")
def freeze(runbook_path: str, step: Step, attempt_key: str, flow_run_id: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(step.application or "")
    record = FreezeRecord(flow_run_id, app.name)
    return run_step(runbook.cutover, step.id, step.phase, lambda: freeze_application(runbook, app, attempt_key, record))
