"""files: upload an application's files to the target host (resumable, sha256-checked)."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases.files import move_files
from cutover.plan.build import Step
from cutover.step_run import run_step
from tasks.common import runbook_at


@task(name="files")
def files(runbook_path: str, step: Step, attempt_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(step.application or "")
    return run_step(runbook.cutover, step.id, step.phase, lambda: move_files(runbook, app, step.item or ""))
