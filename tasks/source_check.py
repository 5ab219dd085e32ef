"""source-check: prove the source took no write since the freeze, right before the switch."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import database
from cutover.plan.build import Step
from cutover.step_run import run_step
from tasks.common import runbook_at


@task(name="source-check")
def source_check(runbook_path: str, step: Step, attempt_key: str, frozen: dict[str, Any]) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(step.application or "")

    def work() -> dict[str, Any]:
        return {
            "databases": [
                database.check_source_unchanged(database.Move(runbook, app, db, attempt_key), frozen["databases"][db.name])
                for db in app.databases
            ]
        }

    return run_step(runbook.cutover, step.id, step.phase, work)
