"""gate: pause the run for a go/no-go decision, showing the evidence; the decision is the
task's (persisted) result, so a retried run does not ask again.

While it waits, the gate emits ``cutover.gate.waiting`` (once) and, each time its
``timeout_s`` passes unanswered, ``cutover.gate.overdue``; with ``on_timeout: no_go`` the
first timeout decides no-go instead. The answer is ``cutover.gate.decided``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import structlog
from prefect import task

from cutover.decisions import GATE_EVENTS, GATE_PAUSE, GO, gate_command
from cutover.errors import PermanentStepError
from cutover.evidence import dns_plan_digest, gate_markdown
from cutover.phases import dns
from cutover.plan.build import Step
from cutover.step_run import emit, run_step
from tasks.common import pause_key, runbook_at
from tasks.forms import gate_form
from tasks.pause import ask

log = structlog.get_logger()

WAITING, OVERDUE, DECIDED = GATE_EVENTS


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@task(name="gate")
def gate(
    runbook_path: str, step: Step, attempt_key: str, flow_run_id: str, evidence: dict[str, Any], about: dict[str, Step]
) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    spec = runbook.gate(step.gate or "")
    covered = [a.name for a in runbook.applications] if spec.applications == "all" else list(spec.applications)

    def work() -> dict[str, Any]:
        changes = dns.planned_changes(runbook, [runbook.application(name) for name in covered])
        base = {"gate": spec.name, "applications": covered, "dns_changes": changes, "dns_plan": dns_plan_digest(changes)}
        if spec.auto_approve:
            log.info("gate_auto_approved", gate=spec.name)
            return {**base, "approve": True, "decided_by": "auto_approve", "reason": "every check before it passed", "at": _now()}
        approvers = runbook.approvers(spec)
        patience = (
            f"No answer within {_duration(spec.timeout_s)}: "
            + ("it keeps waiting, and says it is overdue." if spec.on_timeout == "wait" else "**no-go** (rolls back).")
        )
        description = gate_markdown(
            gate=spec.name,
            description=spec.description,
            applications=covered,
            approvers=approvers,
            evidence=evidence,
            steps=about,
            dns_changes=changes,
            patience=patience,
        )
        question = {
            "kind": "gate",
            "gate": spec.name,
            "applications": covered,
            "approvers": approvers,
            "command": gate_command(flow_run_id, spec.name),
        }
        payload = {"flow_run_id": flow_run_id, **question, "timeout_s": spec.timeout_s, "on_timeout": spec.on_timeout}
        emit(runbook.cutover, WAITING, step.id, payload, phase="gate")

        def overdue(times: int) -> bool:
            waited = spec.timeout_s * times
            log.warning("gate_overdue", gate=spec.name, waited_s=waited, on_timeout=spec.on_timeout)
            emit(runbook.cutover, OVERDUE, step.id, {**payload, "waited_s": waited}, phase="gate")
            return spec.on_timeout == "wait"

        attempt = 0
        while True:
            attempt += 1
            key = pause_key(GATE_PAUSE, spec.name, attempt_key, *([str(attempt)] if attempt > 1 else []))
            answer = ask(
                gate_form(approvers), key=key, description=description, question=question, patience_s=spec.timeout_s, when_overdue=overdue
            )
            if answer is None:
                outcome = {**base, "approve": False, "decided_by": "nobody", "reason": f"no decision within {_duration(spec.timeout_s)} (on_timeout: no_go)", "at": _now()}
                break
            decided_by = str(answer.decided_by).strip()
            if approvers and decided_by not in approvers:  # the form refuses this; an answer sent around it is asked again
                log.warning("gate_answer_refused", gate=spec.name, decided_by=decided_by, approvers=approvers)
                continue
            outcome = {**base, "approve": answer.decision == GO, "decided_by": decided_by, "reason": answer.reason, "at": _now()}
            break
        log.info("gate_decided", gate=spec.name, approve=outcome["approve"], decided_by=outcome["decided_by"], reason=outcome["reason"])
        emit(runbook.cutover, DECIDED, step.id, {"flow_run_id": flow_run_id, **{k: v for k, v in outcome.items() if k != "dns_changes"}}, phase="gate")
        if not outcome["approve"]:
            raise PermanentStepError(f"gate {spec.name}: no-go by {outcome['decided_by']}: {outcome['reason'] or 'no reason given'}")
        return outcome

    return run_step(runbook.cutover, step.id, step.phase, work)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
