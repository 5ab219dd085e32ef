"""The preflight flow (deployment ``cutover-preflight/preflight``, ``cutover preflight``):
the checks of ``cutover.preflight`` on a worker, where the cutover's steps will run, and
on request the TTL lowering (``lower_ttl``) once the checks are green.

Ends Completed when no item is red (amber items are in the report), Failed otherwise; the
report is the run's result and its ``cutover-preflight`` artifact either way.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Failed

from cutover.errors import RunbookError
from cutover.log import configure_logging
from cutover.preflight import Report
from tasks.common import runbook_at
from tasks.preflight import lower_ttl as lower_ttl_task
from tasks.preflight import preflight as preflight_task


def run_name() -> str:
    """``preflight of <cutover> <start time>``."""
    parameters = flow_run.parameters or {}
    try:
        name = runbook_at(str(Path(parameters.get("runbook", "")).resolve())).cutover
    except Exception:  # a bad runbook still gets a run; the flow says what is wrong with it
        name = Path(str(parameters.get("runbook", "cutover"))).stem
    return f"preflight of {name} {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M')}"


@flow(name="cutover-preflight", flow_run_name=run_name, persist_result=True, log_prints=True)
def preflight(
    runbook: str = "runbooks/demo.yaml", lower_ttl: bool = False, live: bool = False, outside_window: bool = False
) -> dict[str, Any] | State[Any]:
    """Check everything ``runbook`` needs; with ``lower_ttl``, then lower the TTL of every
    record the cutover will switch. ``live``/``outside_window``: judge the window as a
    cutover run would (being outside it is red unless ``outside_window``)."""
    runbook_path = str(Path(runbook).resolve())
    try:
        loaded = runbook_at(runbook_path)
    except RunbookError as exc:
        return Failed(message="the runbook has problems:\n" + str(exc))
    configure_logging(console=True)
    result = preflight_task(runbook_path, live, outside_window)
    report = Report.from_dict(result)
    if not report.ok:
        return Failed(message=report.summary(), data=result)
    if lower_ttl:
        result["lowered"] = lower_ttl_task(runbook_path)
        lowered = [entry["record"] for entry in result["lowered"] if entry["lowered"]]
        print(f"TTL lowered for {len(lowered)} record(s): {', '.join(lowered) or 'none needed it'}")
    print(report.summary())
    return {**result, "cutover": loaded.cutover}
