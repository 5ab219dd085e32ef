"""Running a rollback inside a flow run: one task per compensation, named
``rollback/<step id>``, submitted with ``wait_for`` edges in reverse plan order (see
cutover.plan.rollback), retried like the steps, never cached (a compensation always looks
at the world again). Shared by the cutover flow (automatic rollback) and the rollback flow
(on request)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import structlog
from prefect.futures import PrefectFuture, wait

from cutover import journal as rules
from cutover.errors import worth_retrying
from cutover.plan.build import Plan
from cutover.plan.rollback import plan_rollback
from cutover.runbook.model import Runbook
from tasks.common import once, step_tags
from tasks.journal import run_journal
from tasks.steps import compensate

log = structlog.get_logger()


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what waiting may fix (see cutover.errors.worth_retrying)."""
    try:
        state.result()
    except BaseException as exc:  # the step's own exception
        return worth_retrying(exc)
    return True


def retry_options(runbook: Runbook) -> dict[str, Any]:
    defaults = runbook.defaults
    return {
        "retries": defaults.retries,
        "retry_delay_seconds": [defaults.retry_delay_s * 2**i for i in range(max(defaults.retries, 1))],
        "retry_condition_fn": _worth_retrying,
        "persist_result": True,
    }


def run_rollback(
    runbook_path: str,
    runbook: Runbook,
    plan: Plan,
    started: set[str],
    keys: Mapping[str, str],
    run_key: str,
    flow_run_id: str,
    applications: Collection[str] | None = None,
) -> dict[str, Any]:
    """Undo the ``started`` steps of ``applications`` (default: all of the plan's), each
    under its application's attempt key in ``keys``; return what was undone, what failed,
    and what is left to do by hand."""
    apps = set(applications) if applications is not None else {s.application for s in plan.steps.values() if s.application}
    compensations = plan_rollback(plan, {sid for sid in started if plan.steps[sid].application in apps})
    # from here on, a retry of the run must start these applications from the freeze again,
    # and not before this rollback has finished
    journal = run_journal(flow_run_id)
    rules.begin_rollback(journal, flow_run_id, {name: keys[name] for name in sorted(apps)}, run_key)
    log.warning("rollback_started", compensations=[c.id for c in compensations])
    futures: dict[str, PrefectFuture[Any]] = {}
    for comp in compensations:
        step = plan.steps[comp.step]
        attempt_key = keys[step.application or ""]
        task = compensate.with_options(
            name=comp.id,
            task_run_name=comp.id,
            tags=[*step_tags(step, attempt_key), "rollback"],
            cache_key_fn=once(f"{runbook.cutover}:{attempt_key}:{comp.id}"),
            **retry_options(runbook),
        )
        futures[comp.id] = task.submit(
            runbook_path=runbook_path,
            step=step,
            attempt_key=attempt_key,
            flow_run_id=flow_run_id,
            run_key=run_key,
            wait_for=[futures[d] for d in comp.depends_on],
            return_state=False,
        )
    wait(list(futures.values()))
    done, failed, by_hand = [], {}, []
    for comp in compensations:
        state = futures[comp.id].state
        if state.is_completed():
            done.append(comp.step)
            continue
        if state.is_failed() or state.is_crashed():
            failed[comp.step] = failure_message(state)
        by_hand.append(
            {"step": comp.step, "to_do": comp.text, "why": failed.get(comp.step, "not run: waits for a failed compensation")}
        )
    outcome = {"rolled_back": not by_hand, "undone": done, "failed": failed, "by_hand": by_hand, "applications": sorted(apps)}
    rules.end_rollback(journal, finished=not by_hand)
    if by_hand:
        log.error("rollback_incomplete", failed=list(failed), left=[item["step"] for item in by_hand])
    else:
        log.warning("rollback_finished", undone=done)
    return outcome


def failure_message(state: Any) -> str:
    """The exception a failed task run raised, as text (its first 300 characters)."""
    try:
        state.result()
    except BaseException as exc:  # the task's exception is the message we want
        return str(exc)[:300]
    return str(state.message or state.name)
