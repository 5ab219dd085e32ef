"""The plan an attempt of a run runs: written to the run's journal before the first step
(``plan-<attempt>``), so that the rollback flow and a retry read the plan that ran instead of
planning again; kept in memory in the flow's process, where its steps' tasks look it up."""

from __future__ import annotations

from cutover.journal import Journal
from cutover.plan.build import Plan

_IN_PROCESS: dict[tuple[str, str], Plan] = {}


def key(attempt_key: str) -> str:
    return f"plan-{attempt_key}"


def remember(journal: Journal, flow_run_id: str, attempt_key: str, plan: Plan) -> None:
    journal.write(key(attempt_key), plan.to_dict())
    _IN_PROCESS[(flow_run_id, attempt_key)] = plan


def recall(journal: Journal, flow_run_id: str, attempt_key: str) -> Plan | None:
    """The plan of that attempt, or None when none was written (a run from before plans were kept)."""
    plan = _IN_PROCESS.get((flow_run_id, attempt_key))
    if plan is None:
        data = journal.read(key(attempt_key))
        if data:
            plan = _IN_PROCESS[(flow_run_id, attempt_key)] = Plan.from_dict(data)
    return plan
