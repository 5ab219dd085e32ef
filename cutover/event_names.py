"""The names of the Prefect events Cutover emits and listens to, in one place.

The flows emit them (``tasks/step_run.py``, the phases through their ``emit`` port); the status page, its publishers,
``cutover plan --timeline`` and the automations only read them. Every cutover event is
about one step: resource ``cutover.<cutover>.<step id>`` with the labels
``cutover.name`` (the runbook's ``cutover``), ``prefect.resource.name`` (the step id) and
``cutover.phase`` (freeze, export, ..., ``rollback``). Plain strings, no Prefect import.
"""

from __future__ import annotations

STEP_STARTED = "cutover.step.started"
STEP_COMPLETED = "cutover.step.completed"  # payload: duration_s, and bytes/rows/sha256 where the step has them
STEP_FAILED = "cutover.step.failed"  # payload: duration_s, error (redacted); emitted per attempt
STEP_COMPENSATED = "cutover.step.compensated"  # a rollback step (phase "rollback") undid a step
STEP_SKIPPED = "cutover.step.skipped"
# every few seconds while bytes move: bytes_sent, rate_bps, and total/percent when known
STEP_PROGRESS = "cutover.step.progress"
# about the gate's step (gate/<name>); payload: flow_run_id, gate, applications, approvers, command, timeout_s, on_timeout
GATE_WAITING = "cutover.gate.waiting"  # a go/no-go gate paused the run for a decision
GATE_OVERDUE = "cutover.gate.overdue"  # its timeout_s passed unanswered (again every timeout_s); + waited_s
GATE_DECIDED = "cutover.gate.decided"  # + approve, decided_by, reason, at, dns_plan
# about point-of-no-return; payload: flow_run_id, failed, command, writes, timeout_s
DECISION_WAITING = "cutover.decision.waiting"  # a failure past the point of no return asks roll forward/back
DECISION_OVERDUE = "cutover.decision.overdue"
DECISION_DECIDED = "cutover.decision.decided"  # + roll_back, acknowledged, decided_by, reason, writes
ROLLBACK_REQUESTED = "cutover.rollback.requested"

CUTOVER_PREFIX = "cutover."
STEP_PREFIX = "cutover.step."

# Prefect's own state-change events: resource prefect.flow-run.<id> / prefect.task-run.<id>
FLOW_RUN_PREFIX = "prefect.flow-run."
TASK_RUN_FAILED = "prefect.task-run.Failed"  # a step failed for good: its retries are spent
TASK_RUN_CRASHED = "prefect.task-run.Crashed"

# resource labels
LABEL_CUTOVER = "cutover.name"
LABEL_PHASE = "cutover.phase"
LABEL_NAME = "prefect.resource.name"
LABEL_ID = "prefect.resource.id"
LABEL_ROLE = "prefect.resource.role"

CUTOVER_FLOW = "cutover"  # the flow name in prefect.yaml's deployment
ROLLBACK_PHASE = "rollback"


def step_resource(cutover: str, step_id: str, phase: str) -> dict[str, str]:
    """The resource of an event about ``step_id`` of ``cutover``."""
    return {
        LABEL_ID: f"cutover.{cutover}.{step_id}",
        LABEL_NAME: step_id,
        LABEL_CUTOVER: cutover,
        LABEL_PHASE: phase,
    }
