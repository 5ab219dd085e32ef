"""start / smoke / finalize: the application's own actions and checks at the target."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import actions
from cutover.step_run import run_step
from tasks.common import parts, runbook_at


def _actions_task(phase: str, section: str):
    def body(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
        runbook = runbook_at(runbook_path)
        app = runbook.application(parts(step_id)[0])
        steps = getattr(app, section)
        return run_step(
            runbook.cutover, step_id, phase, lambda: {"results": actions.run_actions(runbook, steps, what=f"{app.name}.{section}")}
        )

    body.__name__ = phase
    return body


start = task(name="start")(_actions_task("start", "start"))
smoke = task(name="smoke")(_actions_task("smoke", "smoke"))
finalize = task(name="finalize")(_actions_task("finalize", "finalize"))
