"""freeze / unfreeze: source applications into maintenance, source databases read-only."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import actions, database
from cutover.step_run import run_step
from tasks.common import parts, runbook_at


@task(name="freeze")
def freeze(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(parts(step_id)[0])

    def work() -> dict[str, Any]:
        done = actions.run_actions(runbook, app.freeze, what=f"{app.name}.freeze")
        frozen = {db.name: database.freeze_database(database.Move(runbook, app, db, run_key)) for db in app.databases}
        return {"actions": done, "databases": frozen}

    return run_step(runbook.cutover, step_id, "freeze", work)
