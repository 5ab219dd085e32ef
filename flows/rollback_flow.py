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

from collections.abc import Collection
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State, StateType
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


def task_runs_of(cutover_run: str) -> dict[str, list[tuple[Any, StateType, list[str]]]]:
    """Step id -> (when, latest state type, tags) of every step task run of the run."""
    found: dict[str, list[tuple[Any, StateType, list[str]]]] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(cutover_run)])), limit=_PAGE, offset=offset
            )
            for task_run in page:
                if task_run.name.startswith(PREFIX) or task_run.state is None:
                    continue
                if task_run.start_time is None and task_run.state.type != StateType.COMPLETED:
                    continue  # never began: ended (Crashed, Cancelled) while it waited; a Cached one counts
                when = task_run.start_time or task_run.created
                found.setdefault(task_run.name, []).append((when, task_run.state.type, list(task_run.tags)))
            if len(page) < _PAGE:
                break
            offset += _PAGE
    return found


def started_steps(runs: dict[str, list[tuple[Any, StateType, list[str]]]], expected_tag: dict[str, str]) -> dict[str, StateType]:
    """Step id -> latest state type, for every step whose task runs carry the tag of its
    application's attempt being undone (``expected_tag``: step id -> tag)."""
    steps: dict[str, StateType] = {}
    for name, seen in runs.items():
        tag = expected_tag.get(name)
        mine = sorted((r for r in seen if tag in r[2]), key=lambda r: r[0])
        if mine and mine[-1][1] not in (StateType.PENDING, StateType.SCHEDULED):
            steps[name] = mine[-1][1]
    return steps


def plan_that_ran(runbook: Any, journal: Any, flow_run_id: str, attempt_key: str, steps: Collection[str]) -> Any:
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
def rollback(
    cutover_run: str, runbook: str = "runbooks/demo.yaml", acknowledge_writes_lost: bool = False
) -> dict[str, Any] | State[Any]:
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
    pending = rules.unfinished_rollback(journal)
    if pending is not None:  # finish it: the same keys again (compensations are idempotent)
        keys, run_key = dict(pending["of"]), str(pending["run"])
    else:
        now = rules.attempts(cutover_run, journal)
        keys, run_key = {app.name: now.of(app.name) for app in loaded.applications}, now.run
    configure_logging(
        audit_file=workspace.run_dir(loaded.cutover, run_key) / f"rollback-{current_run.id}.audit.jsonl", console=True
    )
    runs = task_runs_of(cutover_run)
    plan = plan_that_ran(loaded, journal, cutover_run, run_key, runs)
    expected = {sid: attempt_tag(keys[step.application]) for sid, step in plan.steps.items() if step.application in keys}
    steps = started_steps(runs, expected)
    crossed = past_point_of_no_return(
        plan,
        started=set(steps),
        completed={sid for sid, state in steps.items() if state == StateType.COMPLETED},
        dns_switched=lambda: switched_anything(loaded, journal, keys),
    )
    writes = writes_since_switch(loaded, journal, keys) if crossed else {}
    log.warning(
        "rollback_requested", cutover_run=cutover_run, run_key=run_key, started=len(steps), past_point_of_no_return=bool(crossed)
    )
    if crossed and not acknowledge_writes_lost:
        counted = ", ".join(f"{k}: {v}" for k, v in sorted(writes.items())) or "none counted"
        return Failed(
            message=f"flow run {cutover_run} is past the point of no return (rows written on the target since the switch: "
            f"{counted}); roll back with acknowledge_writes_lost to accept that those writes will not be on the source"
        )
    outcome = run_rollback(runbook_path, loaded, plan, set(steps), keys, run_key, cutover_run, list(keys))
    outcome.update({"cutover_run": cutover_run, "writes_since_switch": writes})
    create_markdown_artifact(
        rollback_markdown(loaded.cutover, outcome), key="cutover-rollback", description=f"Rollback of {cutover_run}"
    )
    if not outcome["rolled_back"]:
        left = "; ".join(f"{item['step']}: {item['to_do']}" for item in outcome["by_hand"])
        return Failed(message=f"rollback of {cutover_run} INCOMPLETE, left to do by hand: {left}", data=outcome)
    return outcome
