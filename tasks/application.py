"""start / smoke / finalize: the application's own actions and checks at the target."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import actions
from cutover.plan.build import Step
from cutover.step_run import run_step
from tasks.common import runbook_at


def _actions_task(phase: str):
    def body(runbook_path: str, step: Step, attempt_key: str) -> dict[str, Any]:
        runbook = runbook_at(runbook_path)
        app = runbook.application(step.application or "")
        listed = getattr(app, phase)
        return run_step(
            runbook.cutover, step.id, phase, lambda: {"results": actions.run_actions(runbook, listed, what=f"{app.name}.{phase}")}
        )

    body.__name__ = phase
    return body


start = task(name="start")(_actions_task("start"))
smoke = task(name="smoke")(_actions_task("smoke"))
finalize = task(name="finalize")(_actions_task("finalize"))
