"""Past the point of no return: what the run knows (which records a switch changed, how
many rows the new site took since), and the question to the operator: roll forward or
roll back. A failure here does not roll back by itself: users may be writing already."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from cutover.decisions import DECISION_EVENTS, DECISION_PAUSE, ROLL_BACK, pause_key, point_of_no_return_command
from cutover.evidence import point_of_no_return_markdown
from cutover.journal import DnsSwitchRecord, Journal
from cutover.phases import database
from cutover.phases.context import Ask, Emit
from cutover.runbook.model import Runbook

log = structlog.get_logger()

WAITING, OVERDUE, DECIDED = DECISION_EVENTS
RESOURCE = "point-of-no-return"


def switched_anything(runbook: Runbook, journal: Journal, attempt_keys: Mapping[str, str]) -> list[str]:
    """The DNS names any switch of these attempts (application -> key) changed, from the
    switches' journal entries."""
    names: list[str] = []
    for app in runbook.applications:
        if app.name in attempt_keys:
            names += (DnsSwitchRecord(journal, attempt_keys[app.name], app.name).get() or {}).get("switched", [])
    return names


def writes_since_switch(runbook: Runbook, journal: Journal, attempt_keys: Mapping[str, str]) -> dict[str, int | str]:
    """Per target database of every application whose DNS was (partly) switched: rows
    written since the switch; ``unknown (...)`` where they cannot be counted."""
    writes: dict[str, int | str] = {}
    for app in runbook.applications:
        if app.name not in attempt_keys:
            continue
        entry = DnsSwitchRecord(journal, attempt_keys[app.name], app.name).get()
        if not entry or not entry.get("switched"):
            continue
        try:
            writes.update(database.target_writes_since(runbook, app, attempt_keys[app.name], entry.get("writes_baseline") or {}))
        except Exception as exc:  # a target that cannot be counted must not hide the question
            for db in app.databases:
                writes[f"{app.name}/{db.name}"] = f"unknown ({type(exc).__name__})"
    return writes


def ask_operator(
    runbook: Runbook,
    journal: Journal,
    *,
    run_key: str,
    attempt_keys: Mapping[str, str],
    flow_run_id: str,
    run_count: int,
    failed: dict[str, str],
    timeout_s: float,
    ask: Ask,
    emit: Emit,
) -> dict[str, Any]:
    """Ask, showing what failed and the writes since the switch; the decision (roll_back,
    acknowledged, decided_by, reason, writes counted again when answered). No answer
    within ``timeout_s``: roll forward (nothing is undone by itself)."""
    writes = writes_since_switch(runbook, journal, attempt_keys)
    question = {"kind": "point-of-no-return", "failed": list(failed), "command": point_of_no_return_command(flow_run_id)}
    payload = {"flow_run_id": flow_run_id, **question, "writes": writes, "timeout_s": timeout_s}
    emit(WAITING, RESOURCE, payload)

    def overdue(times: int) -> bool:
        log.warning("point_of_no_return_unanswered", waited_s=timeout_s)
        emit(OVERDUE, RESOURCE, {**payload, "waited_s": timeout_s})
        return False

    answer = ask(
        "point-of-no-return",
        key=pause_key(DECISION_PAUSE, run_key, str(run_count)),
        description=point_of_no_return_markdown(failed, writes),
        question=question,
        patience_s=timeout_s,
        when_overdue=overdue,
    )
    if answer is None:
        outcome = {
            "roll_back": False,
            "acknowledged": False,
            "decided_by": "nobody",
            "reason": f"no answer within {timeout_s:g} s",
            "writes": writes,
        }
    else:
        outcome = {
            "roll_back": answer.decision == ROLL_BACK,
            "acknowledged": answer.acknowledge_writes_lost,
            "decided_by": answer.decided_by.strip(),
            "reason": answer.reason,
            # counted again: the new site went on taking writes while the question waited
            "writes": writes_since_switch(runbook, journal, attempt_keys),
        }
    log.info("point_of_no_return_decided", **outcome)
    emit(DECIDED, RESOURCE, {"flow_run_id": flow_run_id, **outcome})
    return outcome
