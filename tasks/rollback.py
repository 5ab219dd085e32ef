"""rollback/<step id>: undo one step (see cutover.phases.rollback for what undoes what),
and point-of-no-return: ask the operator what to do when a step fails after it."""

from __future__ import annotations

from typing import Any

import structlog
from prefect import task

from cutover.decisions import DECISION_EVENTS, DECISION_PAUSE, ROLL_BACK, point_of_no_return_command
from cutover.errors import PermanentStepError
from cutover.evidence import point_of_no_return_markdown
from cutover.phases import database, rollback
from cutover.phases.freeze import unfreeze_application
from cutover.plan.build import Step
from cutover.plan.rollback import rollback_id
from cutover.step_run import emit, run_step
from tasks.common import pause_key, runbook_at
from tasks.dns import DnsJournal
from tasks.forms import point_of_no_return_form
from tasks.journal import FreezeRecord
from tasks.pause import ask

log = structlog.get_logger()

WAITING, OVERDUE, DECIDED = DECISION_EVENTS
RESOURCE = "point-of-no-return"


@task(name="rollback")
def compensate(runbook_path: str, step: Step, attempt_key: str, flow_run_id: str) -> dict[str, Any]:
    """Undo ``step`` of the run's attempt (generation) ``attempt_key``."""
    runbook = runbook_at(runbook_path)
    app = runbook.application(step.application or "")

    def work() -> dict[str, Any]:
        if step.phase == "freeze":
            return unfreeze_application(runbook, app, attempt_key, FreezeRecord(flow_run_id, app.name))
        if step.phase in ("import", "stream"):
            return rollback.undo_target_database(database.Move(runbook, app, app.database(step.database or ""), attempt_key))
        if step.phase == "start":
            return rollback.stop_application(runbook, app)
        if step.phase == "dns_switch":
            return rollback.revert_dns(runbook, app, DnsJournal(attempt_key, app.name).get())
        raise PermanentStepError(f"step {step.id} has no compensation")

    return run_step(runbook.cutover, rollback_id(step.id), "rollback", work, done="compensated")


def writes_since_switch(runbook_path: str, attempt_key: str) -> dict[str, int | str]:
    """Per target database of every application whose DNS was (partly) switched: rows
    written since the switch."""
    runbook = runbook_at(runbook_path)
    writes: dict[str, int | str] = {}
    for app in runbook.applications:
        entry = DnsJournal(attempt_key, app.name).get()
        if not entry or not entry.get("switched"):
            continue
        try:
            writes.update(rollback.target_writes_since(runbook, app, attempt_key, entry.get("writes_baseline") or {}))
        except Exception as exc:  # a target that cannot be counted must not hide the question
            for db in app.databases:
                writes[f"{app.name}/{db.name}"] = f"unknown ({type(exc).__name__})"
    return writes


def switched_anything(runbook_path: str, attempt_key: str) -> list[str]:
    """The DNS names any switch of this run changed (from the switches' journals)."""
    runbook = runbook_at(runbook_path)
    names: list[str] = []
    for app in runbook.applications:
        entry = DnsJournal(attempt_key, app.name).get()
        names += (entry or {}).get("switched", [])
    return names


@task(name="point-of-no-return")
def point_of_no_return(
    runbook_path: str, attempt_key: str, flow_run_id: str, run_count: int, failed: dict[str, str], timeout_s: int
) -> dict[str, Any]:
    """Pause the run and ask: roll forward (retry later) or roll back past the point of
    no return, showing what failed and how many writes the target databases took since the
    switch. No answer within ``timeout_s``: roll forward (nothing is undone by itself)."""
    runbook = runbook_at(runbook_path)
    writes = writes_since_switch(runbook_path, attempt_key)
    question = {"kind": "point-of-no-return", "failed": list(failed), "command": point_of_no_return_command(flow_run_id)}
    payload = {"flow_run_id": flow_run_id, **question, "writes": writes, "timeout_s": timeout_s}
    emit(runbook.cutover, WAITING, RESOURCE, payload)

    def overdue(times: int) -> bool:
        log.warning("point_of_no_return_unanswered", waited_s=timeout_s)
        emit(runbook.cutover, OVERDUE, RESOURCE, {**payload, "waited_s": timeout_s})
        return False

    answer = ask(
        point_of_no_return_form(),
        key=pause_key(DECISION_PAUSE, attempt_key, str(run_count)),
        description=point_of_no_return_markdown(failed, writes),
        question=question,
        patience_s=timeout_s,
        when_overdue=overdue,
    )
    if answer is None:
        outcome = {"roll_back": False, "acknowledged": False, "decided_by": "nobody", "reason": f"no answer within {timeout_s} s", "writes": writes}
    else:
        outcome = {
            "roll_back": answer.decision == ROLL_BACK,
            "acknowledged": bool(answer.acknowledge_writes_lost),
            "decided_by": str(answer.decided_by).strip(),
            "reason": answer.reason,
            # counted again: the new site went on taking writes while the question waited
            "writes": writes_since_switch(runbook_path, attempt_key),
        }
    log.info("point_of_no_return_decided", **outcome)
    emit(runbook.cutover, DECIDED, RESOURCE, {"flow_run_id": flow_run_id, **outcome})
    return outcome
