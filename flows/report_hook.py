"""The end of a cutover run, and of a rollback run: keep what the report needs beside the
cutover run (its audit log and the runbook as the run read it, in the run's journal), then
build the cutover report from what the run recorded and attach it to the run as the
``cutover-report`` markdown artifact; its JSON (whose sha256 the report shows) goes into
the journal as ``report-<flow run id>``.

Prefect state hooks (``on_completion``, ``on_failure``, ``on_crashed``,
``on_cancellation``): they run once the run's final state is set, whatever the flow's body
returned, so the flows stay as they are. A report that cannot be made never changes the
run's outcome: the hook logs why, and ``cutover report RUN`` can make it later.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.flows import FlowStateHook

from cutover import audit
from cutover.log import audit_file, flush_logging
from cutover.orchestration.api import configured_api_url, prefect_client
from cutover.redaction import redact_text
from cutover.report import ARTIFACT_KEY, build_report
from cutover.report import facts as runbook_facts
from cutover.report.as_json import render_json
from cutover.report.as_markdown import render_markdown
from cutover.report.gather import gather
from tasks.common import runbook_at
from tasks.journal import run_journal

log = structlog.get_logger()

# Task run states reach the server through events, a little after the run's own state:
# how long the report waits for the last of them. A run that crashed or was cancelled
# leaves task runs that will never end (their process is gone): not worth waiting for.
SETTLE_S = 20.0
SETTLE_AFTER_A_CRASH_S = 2.0


def _keep_beside_the_run(cutover_run: str, runbook_path: str, audit_name: Callable[[Path], str]) -> None:
    journal = run_journal(cutover_run)
    try:
        runbook = runbook_at(runbook_path)
    except Exception as exc:  # a bad or missing runbook: the report says the facts are missing
        log.warning("report_runbook_unreadable", runbook=runbook_path, error=redact_text(str(exc))[:200])
    else:
        runbook_facts.remember(journal, runbook_facts.runbook_facts(runbook, runbook_path, runbook_facts.AT_RUN_END))
    path = audit_file()
    if path is not None:
        flush_logging()
        audit.keep(journal, audit_name(path), path)


def _attach(flow_run: FlowRun, cutover_run: str, settle_s: float) -> None:
    from prefect.client.schemas.actions import ArtifactCreate

    api_url = configured_api_url()
    report = build_report(gather(api_url, cutover_run, run_journal, settle_s=settle_s))
    digest = report.digest.value if report.digest else ""
    run_journal(cutover_run).write(f"report-{flow_run.id}", {"digest": digest, "json": render_json(report)})
    with prefect_client(api_url) as client:
        client.create_artifact(
            ArtifactCreate(
                key=ARTIFACT_KEY,
                type="markdown",
                data=render_markdown(report),
                description=f"Cutover report of {report.run.cutover}: {report.verdict.headline} (sha256 {digest})",
                flow_run_id=flow_run.id,
            )
        )
    log.info("report_attached", flow_run_id=str(flow_run.id), verdict=report.verdict.outcome, digest=digest)


def _at_the_end(kind: str, flow_run: FlowRun, state: State[Any]) -> None:
    parameters = dict(flow_run.parameters or {})
    runbook_path = str(Path(str(parameters.get("runbook", "runbooks/demo.yaml"))).resolve())
    if kind == "rollback":
        cutover_run = str(parameters.get("cutover_run", ""))
        audit_name: Callable[[Path], str] = lambda path: f"rollback-{flow_run.id}"  # noqa: E731
    else:
        cutover_run = str(flow_run.id)
        audit_name = lambda path: path.parent.name  # noqa: E731  (the attempt's work directory)
    try:
        _keep_beside_the_run(cutover_run, runbook_path, audit_name)
        _attach(flow_run, cutover_run, SETTLE_AFTER_A_CRASH_S if state.is_crashed() or state.is_cancelled() else SETTLE_S)
    except Exception as exc:  # the report must never change how the run ended
        log.warning("report_not_attached", flow_run_id=str(flow_run.id), error=redact_text(f"{type(exc).__name__}: {exc}")[:300])


def at_cutover_end(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A cutover run ended (completed, failed, crashed, cancelled): its report."""
    _at_the_end("cutover", flow_run, state)


def at_rollback_end(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A rollback run ended: the report of the cutover run it rolled back, on the rollback run."""
    _at_the_end("rollback", flow_run, state)


# for the flow decorators: every final state
AT_CUTOVER_END: list[FlowStateHook[..., Any]] = [at_cutover_end]
AT_ROLLBACK_END: list[FlowStateHook[..., Any]] = [at_rollback_end]
