"""Every decision a person (or a runbook rule) took during the run: each go/no-go gate and
each question past the point of no return, with who, when, what, why, and what they were
shown. From the gate's result and the decision events the pause emitted."""

from __future__ import annotations

from typing import Any

from cutover import units
from cutover.event_names import DECISION_DECIDED, DECISION_OVERDUE, DECISION_WAITING, GATE_DECIDED, GATE_OVERDUE, GATE_WAITING
from cutover.plan.build import Plan
from cutover.report.lookup import Recorded, iso, text
from cutover.report.model import Decision
from cutover.report.record import TaskRunRecord
from cutover.results import ActionsResult, GateResult, VerifyResult

PONR_TASK = "point-of-no-return"


def _gate_evidence(
    rec: Recorded, run: TaskRunRecord, plan: Plan | None, gate: GateResult | None, payload: dict[str, Any]
) -> list[str]:
    evidence: list[str] = []
    step = plan.steps.get(run.name) if plan is not None else None
    for sid in step.reads if step is not None else ():
        shown = rec.result(sid, run.attempt or "")
        read = plan.steps[sid] if plan is not None else None
        if isinstance(shown, VerifyResult) and read is not None:
            evidence.append(
                f"{read.application}/{read.database}: verified, {shown.rows:,} rows in {shown.tables} tables, every table equal"
            )
        elif isinstance(shown, ActionsResult) and read is not None:
            passed = ", ".join(f"{a.action}: {a.describe()}" for a in shown.results) or "none defined"
            evidence.append(f"{read.application} smoke tests passed: {passed}")
    if gate is not None:
        changes = len(gate.dns_changes)
        evidence.append(
            f"the DNS change set of {changes} record(s), digest {gate.dns_plan} (the switch refuses a record that changed since)"
        )
    elif payload.get("dns_plan"):
        evidence.append(f"the DNS change set, digest {payload['dns_plan']}")
    return evidence


def _gate(rec: Recorded, run: TaskRunRecord) -> Decision | None:
    events = rec.events_of(run)
    decided = [e for e in events if e.event == GATE_DECIDED]
    gate = run.result if isinstance(run.result, GateResult) else None
    payload: dict[str, Any] = dict(decided[-1].payload) if decided else {}
    if gate is None and not payload:
        return None  # it asked and nobody answered before the run ended: see the timeline
    waiting = [e for e in events if e.event == GATE_WAITING]
    approve = gate.approve if gate is not None else bool(payload.get("approve"))
    plan = rec.plan(run.attempt) if run.attempt else None
    return Decision(
        kind="gate",
        name=gate.gate if gate is not None else str(payload.get("gate", run.name)),
        applications=list(gate.applications if gate is not None else payload.get("applications", [])),
        asked_at=iso(waiting[0].occurred) if waiting else iso(run.started),
        decided_at=gate.at if gate is not None else payload.get("at") or (iso(decided[-1].occurred) if decided else None),
        decided_by=text(gate.decided_by if gate is not None else payload.get("decided_by")),
        decision="go" if approve else "no-go",
        reason=text(gate.reason if gate is not None else payload.get("reason")),
        evidence=_gate_evidence(rec, run, plan, gate, payload),
        overdue=sum(1 for e in events if e.event == GATE_OVERDUE),
    )


def _point_of_no_return(rec: Recorded, run: TaskRunRecord) -> Decision | None:
    events = rec.events_of(run)
    decided = [e for e in events if e.event == DECISION_DECIDED]
    answer = run.result if isinstance(run.result, dict) else (dict(decided[-1].payload) if decided else None)
    if not answer:
        return None
    waiting = [e for e in events if e.event == DECISION_WAITING]
    asked = dict(waiting[0].payload) if waiting else {}
    writes = answer.get("writes") or {}
    if answer.get("roll_back"):
        decision = (
            "roll back, writes lost acknowledged"
            if answer.get("acknowledged")
            else "roll back, REFUSED: the writes lost were not acknowledged"
        )
    else:
        decision = "roll forward"
    evidence = [f"failed after the switch: {', '.join(asked.get('failed') or []) or 'not recorded'}"]
    counted = ", ".join(f"{k}: {v}" for k, v in sorted(writes.items())) or "none counted"
    evidence.append(f"rows written on the target since the switch, counted again at the answer: {counted}")
    timeout = asked.get("timeout_s")
    if timeout:
        evidence.append(f"no answer within {units.duration(float(timeout))} would have rolled forward")
    return Decision(
        kind="point of no return",
        name="",
        applications=[],
        asked_at=iso(waiting[0].occurred) if waiting else iso(run.started),
        decided_at=iso(decided[-1].occurred) if decided else iso(run.ended),
        decided_by=text(answer.get("decided_by")),
        decision=decision,
        reason=text(answer.get("reason")),
        evidence=evidence,
        overdue=sum(1 for e in events if e.event == DECISION_OVERDUE),
    )


def decisions(rec: Recorded) -> list[Decision]:
    """Every gate and point-of-no-return question that was asked and answered, in time
    order, across every attempt (a retry's cached gate did not ask again and is left out)."""
    found: list[Decision] = []
    for run in rec.task_runs():
        if run.state == "Cached":
            continue
        decision = (
            _gate(rec, run)
            if run.name.startswith("gate/")
            else (_point_of_no_return(rec, run) if run.name == PONR_TASK else None)
        )
        if decision is not None:
            found.append(decision)
    return found
