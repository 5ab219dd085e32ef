"""Reading a cutover run's record from the Prefect API: the flow run and its rollback runs
(with their state histories), every task run with its persisted result, the cutover
events they emitted, the run's journal (through the :class:`~cutover.journal.Journal`
port: the caller hands in the Prefect store) and the audit logs kept there.

Only the Prefect API (and the result storage its runs wrote to) is read: the report of a
run can be made after the estate is gone. Events are kept by the Prefect server for its
retention period (7 days by default); the results, the journal and the report artifact the
run made at its end stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from cutover import audit
from cutover.event_names import CUTOVER_FLOW, CUTOVER_PREFIX, DECISION_DECIDED, STEP_COMPENSATED, STEP_COMPLETED, STEP_PROGRESS
from cutover.journal import Journal
from cutover.orchestration import OrchestrationError
from cutover.orchestration.api import prefect_client, ui_url_for
from cutover.plan.build import Plan
from cutover.plan.rollback import PREFIX as ROLLBACK_PREFIX
from cutover.report import facts
from cutover.report.record import EventRecord, FlowRunRecord, RunbookFacts, RunRecord, StateChange, TaskRunRecord
from cutover.results import ActionOutcome, ActionsResult, CompensationResult, PostSwitchResult, SourceCheckResult, SourceProof

log = structlog.get_logger()

ROLLBACK_FLOW = "cutover-rollback"  # flows/rollback_flow.py
PONR_TASK = "point-of-no-return"  # flows/cutover_flow.py's question past the point of no return
ATTEMPT_TAG = "attempt:"  # tasks.common.ATTEMPT_TAG: the attempt key a task run belongs to
_PAGE = 200
_EVENT_PAGE = 50  # the most the events API returns per page

JournalOf = Callable[[str], Journal]


def _history(client: Any, flow_run_id: UUID) -> list[StateChange]:
    states = client.read_flow_run_states(flow_run_id)
    return [StateChange(s.name, s.type.value, s.timestamp, s.message or "") for s in sorted(states, key=lambda s: s.timestamp)]


def _flow_run(client: Any, flow_run: Any, flow_name: str) -> FlowRunRecord:
    deployment = None
    if flow_run.deployment_id is not None:
        try:
            deployment = f"{flow_name}/{client.read_deployment(flow_run.deployment_id).name}"
        except Exception:  # a deployment deleted since: the run still counts
            deployment = str(flow_run.deployment_id)
    created_by = None
    if flow_run.created_by is not None:
        who = flow_run.created_by
        created_by = f"{who.type.lower() if who.type else 'creator'} {who.display_value or who.id}"
    state = flow_run.state
    return FlowRunRecord(
        id=str(flow_run.id),
        name=flow_run.name,
        flow=flow_name,
        state=state.name if state else "unknown",
        state_type=state.type.value if state else "UNKNOWN",
        message=(state.message or "") if state else "",
        created=flow_run.created,
        started=flow_run.start_time,
        ended=flow_run.end_time,
        run_count=flow_run.run_count or 0,
        parameters=dict(flow_run.parameters or {}),
        created_by=created_by,
        deployment=deployment,
        history=_history(client, flow_run.id),
    )


def _read_run(client: Any, flow_run_id: str) -> tuple[Any, str]:
    from prefect.exceptions import ObjectNotFound

    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        raise OrchestrationError(f"{flow_run_id!r} is not a flow run id") from None
    try:
        flow_run = client.read_flow_run(run_id)
    except ObjectNotFound:
        raise OrchestrationError(f"no flow run {flow_run_id} on this Prefect server") from None
    return flow_run, client.read_flow(flow_run.flow_id).name


def _rollback_runs(client: Any, cutover_run: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    found, offset = [], 0
    while True:
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[ROLLBACK_FLOW])), limit=_PAGE, offset=offset
        )
        found += [r for r in page if str((r.parameters or {}).get("cutover_run", "")) == cutover_run]
        if len(page) < _PAGE:
            return sorted(found, key=lambda r: r.created or datetime.min.replace(tzinfo=UTC))
        offset += _PAGE


def _task_runs(client: Any, flow_run_ids: list[UUID]) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found, offset = [], 0
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)), limit=_PAGE, offset=offset
        )
        found += page
        if len(page) < _PAGE:
            return found
        offset += _PAGE


def _settled_task_runs(client: Any, flow_run_ids: list[UUID], settle_s: float) -> list[Any]:
    """The task runs; with ``settle_s``, once none is still shown running (their states
    reach the server through events, a little after the flow run's own), or when that
    time has passed. A step that never started (it waited for one that failed) stays
    pending for good: that is settled too."""
    deadline = time.monotonic() + settle_s
    while True:
        runs = _task_runs(client, flow_run_ids)
        if not any(r.state is None or r.state.type.value == "RUNNING" for r in runs) or time.monotonic() >= deadline:
            return runs
        time.sleep(0.5)


def _result(task_run: Any) -> tuple[Any, str]:
    state = task_run.state
    if state is None or state.type.value != "COMPLETED":
        return None, ""
    if getattr(state.data, "storage_key", "") is None:
        return None, f"{task_run.name}: Prefect kept no result of it"  # an uncached step: see _recovered
    try:
        # no retries: a result that cannot be read now will not be readable a second later
        return state.result(raise_on_failure=False, retry_result_failure=False), ""
    except Exception as exc:  # storage gone, a result from another version of the code
        return None, f"{task_run.name}: the persisted result could not be read ({type(exc).__name__})"


def _task_run(task_run: Any) -> tuple[TaskRunRecord, str]:
    attempt = next((t.removeprefix(ATTEMPT_TAG) for t in task_run.tags or [] if t.startswith(ATTEMPT_TAG)), None)
    result, missing = _result(task_run)
    state = task_run.state
    return (
        TaskRunRecord(
            id=str(task_run.id),
            name=task_run.name,
            flow_run_id=str(task_run.flow_run_id),
            attempt=attempt,
            state=state.name if state else "unknown",
            state_type=state.type.value if state else "UNKNOWN",
            message=(state.message or "") if state else "",
            started=task_run.start_time,
            ended=task_run.end_time,
            run_count=task_run.run_count or 0,
            result=result,
            result_missing=missing,
        ),
        missing,
    )


def _event_pages(client: Any, flow_run_ids: list[UUID], since: datetime) -> Iterator[Any]:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventOrder, EventRelatedFilter

    query = EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(minutes=5)),
        event=EventNameFilter(prefix=[CUTOVER_PREFIX], exclude_name=[STEP_PROGRESS]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{i}" for i in flow_run_ids]),
        order=EventOrder.ASC,
    )
    page = client.read_events(query, limit=_EVENT_PAGE)
    while True:
        yield from page.events
        if not page.next_page:
            return
        page = client.read_events_page(str(page.next_page))


def _event(event: Any) -> EventRecord:
    task_run = next((r.id.removeprefix("prefect.task-run.") for r in event.related if r.id.startswith("prefect.task-run.")), None)
    return EventRecord(
        event=event.event,
        occurred=event.occurred,
        resource=event.resource.get("prefect.resource.name", event.resource.id),
        payload=dict(event.payload or {}),
        task_run_id=task_run,
    )


def _recovered(task_run: TaskRunRecord, events: list[EventRecord]) -> Any:
    """The result of a completed step or compensation that Prefect kept no result of (they
    run uncached: see cutover.results), from the figures its completed event carries."""
    if task_run.name == PONR_TASK:  # its answer is its decided event
        decided = [e for e in events if e.task_run_id == task_run.id and e.event == DECISION_DECIDED]
        return {k: v for k, v in decided[-1].payload.items() if k != "flow_run_id"} if decided else None
    done = [e for e in events if e.task_run_id == task_run.id and e.event in (STEP_COMPLETED, STEP_COMPENSATED)]
    if not done:
        return None
    payload = done[-1].payload
    phase = task_run.name.rsplit("/", 1)[-1]
    try:
        if task_run.name.startswith(ROLLBACK_PREFIX) and "done" in payload:
            return CompensationResult(str(payload["done"]), dict(payload.get("details") or {}))
        if phase in ("start", "smoke", "finalize") and "checks" in payload:
            return ActionsResult(results=[ActionOutcome(**c) for c in payload["checks"]])
        if phase == "post-switch" and "checks" in payload:
            return PostSwitchResult(checks=[ActionOutcome(**c) for c in payload["checks"]])
        if phase == "source-check" and "proofs" in payload:
            return SourceCheckResult(databases=[SourceProof(db, str(proof)) for db, proof in payload["proofs"].items()])
    except (TypeError, AttributeError):  # an event of another version of the code
        return None
    return None


def _journal_entries(journal: Journal, attempts: list[str]) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for key in ("generations", "rollback"):
        value = journal.read(key)
        if value is not None:
            entries[key] = value
    for attempt in attempts:
        plan_data = journal.read(f"plan-{attempt}")
        if not isinstance(plan_data, dict):
            continue
        entries[f"plan-{attempt}"] = plan_data
        plan = Plan.from_dict(plan_data)
        for app in sorted({s.application for s in plan.steps.values() if s.application}):
            if any(s.phase == "dns_switch" and s.application == app for s in plan.steps.values()):
                switch = journal.read(f"dns-{attempt}-{app}")
                if switch is not None:
                    entries[f"dns-{attempt}-{app}"] = switch
            frozen = journal.read(f"freeze-{app}")
            if frozen is not None:
                entries[f"freeze-{app}"] = frozen
    return entries


def cutover_run_of(api_url: str, flow_run_id: str) -> str:
    """The cutover run a flow run is about: itself, or the run a rollback run rolled back.
    OrchestrationError for anything else."""
    with prefect_client(api_url) as client:
        flow_run, flow_name = _read_run(client, flow_run_id)
    if flow_name == ROLLBACK_FLOW:
        return str((flow_run.parameters or {}).get("cutover_run", ""))
    if flow_name != CUTOVER_FLOW:
        raise OrchestrationError(f"flow run {flow_run_id} is a run of flow {flow_name!r}, not a cutover or its rollback")
    return flow_run_id


def gather(
    api_url: str,
    flow_run_id: str,
    journal_of: JournalOf,
    *,
    settle_s: float = 0.0,
    runbook_fallback: Callable[[str], RunbookFacts | None] | None = None,
) -> RunRecord:
    """The record of cutover run ``flow_run_id`` (or of the run a rollback run rolled
    back). ``journal_of(run id)``: the run's journal. ``settle_s``: how long to wait for task
    run states still on their way. ``runbook_fallback(path)``: the runbook's facts when the
    run kept none (it never reached its end)."""
    cutover_run = cutover_run_of(api_url, flow_run_id)
    notes: list[str] = []
    with prefect_client(api_url) as client:
        flow_run, flow_name = _read_run(client, cutover_run)
        run = _flow_run(client, flow_run, flow_name)
        others = [_flow_run(client, r, ROLLBACK_FLOW) for r in _rollback_runs(client, cutover_run)]
        ids = [UUID(run.id), *(UUID(o.id) for o in others)]
        since = (flow_run.created or datetime.now(UTC)) - timedelta(minutes=1)
        raw_runs = _settled_task_runs(client, ids, settle_s)
        events = [_event(e) for e in _event_pages(client, ids, since)]
        task_runs = []
        for raw in raw_runs:
            record, missing = _task_run(raw)
            if record.state_type == "COMPLETED" and record.result is None:
                found = _recovered(record, events)
                if found is not None:
                    record, missing = replace(record, result=found, result_missing=""), ""
            task_runs.append(record)
            if missing and not record.name.startswith("preflight"):
                notes.append(missing)
        journal = journal_of(cutover_run)
        attempts = sorted({t.attempt for t in task_runs if t.attempt})
        entries = _journal_entries(journal, attempts)
        audits = audit.kept(journal)
        runbook = facts.recall(journal)
    if runbook is None and runbook_fallback is not None:
        runbook = runbook_fallback(str(run.parameters.get("runbook", "")))
    if runbook is None:
        notes.append(
            "the runbook's facts were not kept by the run and its file could not be read: windows, hosts and TTLs are missing"
        )
    log.info("report_record_gathered", flow_run_id=cutover_run, task_runs=len(task_runs), events=len(events))
    return RunRecord(
        run=run,
        task_runs=task_runs,
        events=events,
        journal=entries,
        runbook=runbook,
        rollback_runs=others,
        audits=audits,
        ui_url=ui_url_for(api_url),
        gathered_at=datetime.now(UTC),
        notes=notes,
    )
