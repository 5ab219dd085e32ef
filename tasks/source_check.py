"""source-check: prove the source took no write since the freeze, right before the switch."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import database
from cutover.step_run import run_step
from tasks.common import parts, runbook_at


@task(name="source-check")
def source_check(runbook_path: str, step_id: str, run_key: str, frozen: dict[str, Any]) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(parts(step_id)[0])

    def work() -> dict[str, Any]:
        return {
            "databases": [
                database.check_source_unchanged(database.Move(runbook, app, db, run_key), frozen["databases"][db.name])
                for db in app.databases
            ]
        }

    return run_step(runbook.cutover, step_id, "source_check", work)
