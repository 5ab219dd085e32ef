"""The one task every step runs in, and the one every compensation runs in.

The flow names each task run by its step id (``with_options``) and gives it the ``Step``
from the plan and the results of the steps it reads (``Step.reads``); the task builds the
phase's context (the journal, the ports to Prefect: progress, events, a pause for a
person's answer), takes the per-host slots the phase needs, and calls the phase's function
from cutover.phases.registry inside ``run_step`` (log context, timing, events).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.concurrency.sync import concurrency

from cutover.errors import PermanentStepError
from cutover.phases.context import StepContext
from cutover.phases.registry import COMPENSATE, RUN
from cutover.plan.build import Step
from cutover.plan.phases import PHASES
from cutover.plan.rollback import rollback_id
from cutover.results import CompensationResult, StepResult
from cutover.runbook.model import Runbook
from tasks import plans
from tasks.common import runbook_at
from tasks.journal import estate_journal, run_journal
from tasks.limits import limit_name
from tasks.pause import prefect_ask
from tasks.progress import TransferProgress
from tasks.step_run import emit, run_step

# Prefect renews a slot's lease while its holder lives; a short lease frees the slot of a
# killed flow run within a minute (the default lease would hold it for 5).
SLOT_LEASE_S = 60.0  # the shortest lease the Prefect API accepts


def context(
    runbook_path: str,
    step: Step,
    attempt_key: str,
    flow_run_id: str,
    run_key: str,
    upstream: dict[str, Any],
    rolled_back: dict[str, str] | None = None,
) -> StepContext:
    runbook = runbook_at(runbook_path)
    journal = run_journal(flow_run_id)
    plan = plans.recall(journal, flow_run_id, run_key)
    if plan is None:
        raise PermanentStepError(f"{step.id}: no plan was kept for attempt {run_key} of the run")
    return StepContext(
        runbook=runbook,
        plan=plan,
        step=step,
        attempt_key=attempt_key,
        flow_run_id=flow_run_id,
        journal=journal,
        estate_journal=estate_journal(runbook.cutover),
        upstream=upstream,
        progress=TransferProgress(f"{step.id}: bytes to the target", runbook.cutover, step.id, step.phase),
        emit=lambda event, resource, payload: emit(runbook.cutover, event, resource, payload, phase=step.phase),
        ask=prefect_ask,
        rolled_back=rolled_back or {},
    )


def slot_names(runbook: Runbook, step: Step) -> list[str]:
    """The per-host limits a step of this phase occupies (tasks/limits.py)."""
    if not PHASES[step.phase].slots:
        return []
    db = runbook.application(step.application or "").database(step.database or "")
    names = []
    for slot in PHASES[step.phase].slots:
        site = runbook.sites[db.from_ if slot == "dump" else db.to].postgres
        assert site is not None
        names.append(limit_name(slot, site.host))
    return names


@contextmanager
def _slots(names: list[str]) -> Iterator[None]:
    if not names:
        yield
        return
    with concurrency(names, occupy=1, lease_duration=SLOT_LEASE_S):
        yield


@task(name="step")
def run(
    runbook_path: str,
    step: Step,
    attempt_key: str,
    flow_run_id: str,
    run_key: str,
    upstream: dict[str, Any],
    rolled_back: dict[str, str] | None = None,
) -> StepResult:
    """Run ``step`` under ``attempt_key``, as part of the run's attempt ``run_key`` (whose
    plan it reads); its result (persisted and cached). ``rolled_back``: the applications
    this attempt sent back to the old site, and why (a gate shows them)."""
    ctx = context(runbook_path, step, attempt_key, flow_run_id, run_key, upstream, rolled_back)
    with _slots(slot_names(ctx.runbook, step)):
        return run_step(ctx.runbook.cutover, step.id, step.phase, lambda: RUN[step.phase](ctx))


@task(name="rollback")
def compensate(runbook_path: str, step: Step, attempt_key: str, flow_run_id: str, run_key: str) -> CompensationResult:
    """Undo ``step`` of the attempt ``attempt_key`` (see cutover.phases.registry)."""
    ctx = context(runbook_path, step, attempt_key, flow_run_id, run_key, {})
    return run_step(
        ctx.runbook.cutover, rollback_id(step.id), "rollback", lambda: COMPENSATE[step.phase](ctx), done="compensated"
    )
