"""gate: pause the run for a go/no-go decision, showing the evidence; the decision is the
task's (persisted) result, so a retried run does not ask again."""

from __future__ import annotations

from typing import Any

import structlog
from prefect import task
from prefect.flow_runs import pause_flow_run

from cutover.errors import PermanentStepError
from cutover.gates import GateDecision
from cutover.step_run import run_step
from tasks.common import parts, runbook_at

log = structlog.get_logger()


@task(name="gate")
def gate(runbook_path: str, step_id: str, run_key: str, evidence: dict[str, Any]) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    spec = next(g for g in runbook.gates if g.name == parts(step_id)[1])

    def work() -> dict[str, Any]:
        if spec.auto_approve:
            log.info("gate_auto_approved", gate=spec.name)
            return {"gate": spec.name, "approve": True, "decided_by": "auto_approve", "reason": "every check before it passed"}
        description = _evidence_markdown(spec.name, spec.description, evidence)
        decision = pause_flow_run(
            wait_for_input=GateDecision.with_initial_data(description=description, approve=False, decided_by=""),
            timeout=int(spec.timeout_s),
            poll_interval=2,  # the step ends within seconds of the decision
            key=f"gate-{spec.name}-{run_key}",
        )
        outcome = {"gate": spec.name, "approve": decision.approve, "decided_by": decision.decided_by, "reason": decision.reason}
        log.info("gate_decided", **outcome)
        if not decision.approve:
            raise PermanentStepError(f"gate {spec.name}: no-go by {decision.decided_by or 'unknown'}: {decision.reason}")
        return outcome

    return run_step(runbook.cutover, step_id, "gate", work)


def _evidence_markdown(name: str, description: str, evidence: dict[str, Any]) -> str:
    lines = [f"## Go/no-go: {name}", "", description, "", "| step | result |", "|---|---|"]
    for step_id, result in sorted(evidence.items()):
        lines.append(f"| `{step_id}` | {_short(result)} |")
    lines += ["", "Approve to switch DNS for these applications; reject to stop (and roll back)."]
    return "\n".join(lines)


def _short(result: Any) -> str:
    if isinstance(result, dict):
        if "rows" in result:
            return f"verified: {result.get('tables')} tables, {result.get('rows')} rows"
        if "results" in result:
            return f"{len(result['results'])} checks passed"
    return "passed"
