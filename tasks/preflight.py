"""preflight: the checks of cutover.preflight as a task, where the steps will run (so a
secret is resolved in the worker's environment), with the report as a Markdown artifact."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from cutover.journal import TtlRecord
from cutover.phases.ttl import lower_ttls
from cutover.postgres.dump import MARKER_PREFIX
from cutover.preflight import preflight as check_everything
from tasks.common import runbook_at
from tasks.journal import estate_journal

ARTIFACT = "cutover-preflight"


@task(name="preflight", task_run_name="preflight")
def preflight(runbook_path: str, live: bool, outside_window: bool, attempt_keys: dict[str, str] | None = None) -> dict[str, Any]:
    """The report as a dict (``ok``, ``items``). ``attempt_keys``: in a cutover run, each
    application's attempt, whose own target databases (from an earlier try) are fine."""
    runbook = runbook_at(runbook_path)

    def own(application: str, comment: str) -> bool:
        key = (attempt_keys or {}).get(application)
        return key is not None and comment in (f"{MARKER_PREFIX}{key}", f"{MARKER_PREFIX}{key}:imported")

    report = check_everything(
        runbook,
        live=live,
        outside_window=outside_window,
        ttl_journal=TtlRecord(estate_journal(runbook.cutover)),
        target_marker=own,
    )
    create_markdown_artifact(report.markdown(), key=ARTIFACT, description=f"Preflight of {runbook.cutover}")
    return report.to_dict()


@task(name="lower-ttl", task_run_name="preflight/lower-ttl")
def lower_ttl(runbook_path: str) -> list[dict[str, Any]]:
    runbook = runbook_at(runbook_path)
    return lower_ttls(runbook, TtlRecord(estate_journal(runbook.cutover)))
