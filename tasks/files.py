"""files: upload an application's files to the target host (resumable, sha256-checked)."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases.files import move_files
from cutover.step_run import run_step
from tasks.common import parts, runbook_at


@task(name="files")
def files(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app_name, _phase, name = parts(step_id)
    app = runbook.application(app_name)
    return run_step(runbook.cutover, step_id, "files", lambda: move_files(runbook, app, name))
