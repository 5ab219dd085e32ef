"""The go/no-go gate: ask a person, showing the evidence, and keep the answer.

The gate emits ``cutover.gate.waiting`` when it asks and, each time its ``timeout_s``
passes unanswered, ``cutover.gate.overdue``; with ``on_timeout: no_go`` the first timeout
decides no-go instead. The answer is ``cutover.gate.decided`` and the step's result, so a
retried run does not ask again. A no-go fails the step for good: the run rolls back.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from cutover import units
from cutover.decisions import GATE_EVENTS, GATE_PAUSE, GO, gate_command, pause_key
from cutover.errors import PermanentStepError
from cutover.evidence import dns_plan_digest, gate_markdown
from cutover.phases import dns
from cutover.phases.context import StepContext
from cutover.results import GateResult

log = structlog.get_logger()

WAITING, OVERDUE, DECIDED = GATE_EVENTS


def decide(ctx: StepContext) -> GateResult:
    runbook, step = ctx.runbook, ctx.step
    spec = runbook.gate(step.gate or "")
    named = [a.name for a in runbook.applications] if spec.applications == "all" else list(spec.applications)
    covered = [name for name in named if name not in ctx.rolled_back]
    held_back = {name: ctx.rolled_back[name] for name in named if name in ctx.rolled_back}
    changes = dns.planned_changes(runbook, [runbook.application(name) for name in covered])
    plan_digest = dns_plan_digest(changes)

    def result(approve: bool, decided_by: str, reason: str) -> GateResult:
        return GateResult(
            gate=spec.name,
            applications=covered,
            approve=approve,
            decided_by=decided_by,
            reason=reason,
            at=_now(),
            dns_changes=changes,
            dns_plan=plan_digest,
        )

    if spec.auto_approve:
        log.info("gate_auto_approved", gate=spec.name)
        return result(True, "auto_approve", "every check before it passed")
    if ctx.ask is None:
        raise PermanentStepError(f"gate {spec.name}: nobody can be asked here (no pause)")
    approvers = runbook.approvers(spec)
    patience = f"No answer within {units.duration(spec.timeout_s)}: " + (
        "it keeps waiting, and says it is overdue." if spec.on_timeout == "wait" else "**no-go** (rolls back)."
    )
    description = gate_markdown(
        gate=spec.name,
        description=spec.description,
        applications=covered,
        approvers=approvers,
        evidence={sid: ctx.read(sid) for sid in step.reads if sid in ctx.upstream},
        steps={sid: ctx.plan.steps[sid] for sid in step.reads if sid in ctx.upstream},
        rolled_back=held_back,
        dns_changes=changes,
        patience=patience,
    )
    question = {
        "kind": "gate",
        "gate": spec.name,
        "applications": covered,
        "approvers": approvers,
        "rolled_back": held_back,
        "command": gate_command(ctx.flow_run_id, spec.name),
    }
    payload = {"flow_run_id": ctx.flow_run_id, **question, "timeout_s": spec.timeout_s, "on_timeout": spec.on_timeout}
    ctx.emit(WAITING, step.id, payload)

    def overdue(times: int) -> bool:
        waited = spec.timeout_s * times
        log.warning("gate_overdue", gate=spec.name, waited_s=waited, on_timeout=spec.on_timeout)
        ctx.emit(OVERDUE, step.id, {**payload, "waited_s": waited})
        return spec.on_timeout == "wait"

    attempt = 0
    while True:
        attempt += 1
        key = pause_key(GATE_PAUSE, spec.name, ctx.attempt_key, *([str(attempt)] if attempt > 1 else []))
        answer = ctx.ask(
            "gate",
            key=key,
            description=description,
            question=question,
            patience_s=spec.timeout_s,
            when_overdue=overdue,
            approvers=approvers,
        )
        if answer is None:
            outcome = result(False, "nobody", f"no decision within {units.duration(spec.timeout_s)} (on_timeout: no_go)")
            break
        decided_by = answer.decided_by.strip()
        if approvers and decided_by not in approvers:  # the form refuses this; an answer sent around it is asked again
            log.warning("gate_answer_refused", gate=spec.name, decided_by=decided_by, approvers=approvers)
            continue
        outcome = result(answer.decision == GO, decided_by, answer.reason)
        break
    log.info("gate_decided", gate=spec.name, approve=outcome.approve, decided_by=outcome.decided_by, reason=outcome.reason)
    decided = {k: v for k, v in outcome.to_dict().items() if k != "dns_changes"}
    ctx.emit(DECIDED, step.id, {"flow_run_id": ctx.flow_run_id, **decided})
    if not outcome.approve:
        raise PermanentStepError(f"gate {spec.name}: no-go by {outcome.decided_by}: {outcome.reason or 'no reason given'}")
    return outcome


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
