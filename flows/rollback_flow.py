"""The rollback flow: roll back a given cutover flow run on request (deployment
``cutover-rollback/rollback``, ``cutover rollback RUN``).

It reads from the Prefect API which steps of the run's current generation started (task
runs are tagged ``attempt:<key>``), takes the plan that generation ran from the run's
journal, plans their compensations in reverse order and runs
them as ``rollback/<step id>`` tasks, like the automatic rollback of the cutover flow. A
run past the point of no return (a DNS record switched) is rolled back only with
``acknowledge_writes_lost``: the writes the new site took since the switch will not be on
the source. A run that is still running or paused is refused: cancel it or answer it first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterTags
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run as current_run
from prefect.states import Failed

from cutover import journal as rules
from cutover.errors import RunbookError
from cutover.log import configure_logging
from cutover.phases import workspace
from cutover.phases.point_of_no_return import switched_anything, writes_since_switch
from cutover.plan import build_plan
from cutover.plan.build import step_id
from cutover.plan.rollback import PREFIX, past_point_of_no_return
from cutover.summary import rollback_markdown
from flows import report_hook
from flows.compensations import run_rollback
from tasks import plans
from tasks.common import ATTEMPT_TAG, runbook_at
from tasks.journal import run_journal

log = structlog.get_logger()

_FINISHED = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
_PAGE = 200


def attempt_tag(run_key: str) -> str:
    return f"{ATTEMPT_TAG}{run_key}"


def started_steps(cutover_run: str, run_key: str) -> dict[str, StateType]:
    """Step id -> latest state type, for every step task run of generation ``run_key``."""
    found: dict[str, tuple[Any, StateType]] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(cutover_run)])),
                task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=[attempt_tag(run_key)])),
                limit=_PAGE,
                offset=offset,
            )
            for task_run in page:
                if task_run.name.startswith(PREFIX) or task_run.state is None:
                    continue
                if task_run.start_time is None and task_run.state.type != StateType.COMPLETED:
                    continue  # never began: ended (Crashed, Cancelled) while it waited; a Cached one counts
                when = task_run.start_time or task_run.created
                seen = found.get(task_run.name)
                if seen is None or when >= seen[0]:
                    found[task_run.name] = (when, task_run.state.type)
            if len(page) < _PAGE:
                break
            offset += _PAGE
    return {
        name: state_type for name, (_, state_type) in found.items() if state_type not in (StateType.PENDING, StateType.SCHEDULED)
    }


def plan_that_ran(runbook: Any, journal: Any, flow_run_id: str, attempt_key: str, steps: dict[str, StateType]) -> Any:
    """The plan the attempt ran (the journal's ``plan-<attempt>``); for a run from before
    plans were kept, the runbook planned again with the methods its task runs show."""
    plan = plans.recall(journal, flow_run_id, attempt_key)
    if plan is not None:
        return plan
    used = {
        f"{app.name}/{db.name}": "stream" if step_id(app.name, "stream", db.name) in steps else "file"
        for app in runbook.applications
        for db in app.databases
    }
    plan = build_plan(runbook, methods=used)
    plans.remember(journal, flow_run_id, attempt_key, plan)  # its compensations look it up
    return plan


def run_name() -> str:
    """``rollback of <the cutover run's name>``."""
    from prefect.runtime import flow_run

    target = str((flow_run.parameters or {}).get("cutover_run", ""))
    try:
        with get_client(sync_client=True) as client:
            return f"rollback of {client.read_flow_run(UUID(target)).name}"
    except Exception:  # no such run: the flow says so; the name still says what was asked
        return f"rollback of {target or 'nothing'}"


@flow(
    name="cutover-rollback",
    flow_run_name=run_name,
    persist_result=True,
    log_prints=True,
    on_completion=report_hook.AT_ROLLBACK_END,
    on_failure=report_hook.AT_ROLLBACK_END,
    on_crashed=report_hook.AT_ROLLBACK_END,
    on_cancellation=report_hook.AT_ROLLBACK_END,
)
def rollback(cutover_run: str, runbook: str = "runbooks/demo.yaml", acknowledge_writes_lost: bool = False) -> dict[str, Any]:
    """Roll back cutover flow run ``cutover_run`` (its id), which ran ``runbook``."""
    runbook_path = str(Path(runbook).resolve())
    try:
        loaded = runbook_at(runbook_path)
    except RunbookError as exc:
        return Failed(message="the runbook has problems:\n" + str(exc))
    try:
        with get_client(sync_client=True) as client:
            target = client.read_flow_run(UUID(cutover_run))
    except (ValueError, ObjectNotFound):
        return Failed(message=f"no cutover flow run {cutover_run!r} on this Prefect server")
    if target.state is None or target.state.type not in _FINISHED:
        state = target.state.name if target.state else "not started"
        return Failed(message=f"flow run {cutover_run} is {state}: cancel it, or answer its pause, before rolling it back")
    # an unfinished rollback is finished (its compensations are idempotent); otherwise the
    # run's current generation is undone
    journal = run_journal(cutover_run)
    run_key = rules.unfinished_rollback(journal) or rules.attempt_key(cutover_run, journal)
    configure_logging(
        audit_file=workspace.run_dir(loaded.cutover, run_key) / f"rollback-{current_run.id}.audit.jsonl", console=True
    )
    steps = started_steps(cutover_run, run_key)
    plan = plan_that_ran(loaded, journal, cutover_run, run_key, steps)
    crossed = past_point_of_no_return(
        plan,
        started=set(steps),
        completed={sid for sid, state in steps.items() if state == StateType.COMPLETED},
        dns_switched=lambda: switched_anything(loaded, journal, run_key),
    )
    writes = writes_since_switch(loaded, journal, run_key) if crossed else {}
    log.warning(
        "rollback_requested", cutover_run=cutover_run, run_key=run_key, started=len(steps), past_point_of_no_return=bool(crossed)
    )
    if crossed and not acknowledge_writes_lost:
        counted = ", ".join(f"{k}: {v}" for k, v in sorted(writes.items())) or "none counted"
        return Failed(
            message=f"flow run {cutover_run} is past the point of no return (rows written on the target since the switch: "
            f"{counted}); roll back with acknowledge_writes_lost to accept that those writes will not be on the source"
        )
    outcome = run_rollback(runbook_path, loaded, plan, set(steps), run_key, cutover_run)
    outcome.update({"cutover_run": cutover_run, "writes_since_switch": writes})
    create_markdown_artifact(
        rollback_markdown(loaded.cutover, outcome), key="cutover-rollback", description=f"Rollback of {cutover_run}"
    )
    if not outcome["rolled_back"]:
        left = "; ".join(f"{item['step']}: {item['to_do']}" for item in outcome["by_hand"])
        return Failed(message=f"rollback of {cutover_run} INCOMPLETE, left to do by hand: {left}", data=outcome)
    return outcome
