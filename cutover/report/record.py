"""What a cutover run recorded, gathered in one place: the input of the report.

Plain data, no Prefect: :mod:`cutover.report.gather` fills it from the Prefect API (flow
and task runs with their persisted results, events, the run's journal, the audit logs kept
there); tests build it by hand. Nothing here asks a live system: a record is what was
written down while the run ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cutover.audit import KeptAudit


@dataclass(frozen=True)
class StateChange:
    """One state a flow or task run went through (its history)."""

    name: str  # Prefect's state name: Running, AwaitingRetry, Completed, Cached, Failed, ...
    type: str  # the state type: RUNNING, COMPLETED, FAILED, SCHEDULED, PAUSED, ...
    at: datetime | None
    message: str = ""


@dataclass(frozen=True)
class FlowRunRecord:
    id: str
    name: str
    flow: str  # "cutover" or "cutover-rollback"
    state: str
    state_type: str
    message: str
    created: datetime | None
    started: datetime | None
    ended: datetime | None
    run_count: int
    parameters: dict[str, Any]
    created_by: str | None  # who or what created the run, when Prefect recorded it (an automation)
    deployment: str | None
    history: list[StateChange] = field(default_factory=list)


@dataclass(frozen=True)
class TaskRunRecord:
    """One task run: a step (named by its step id), a compensation (``rollback/<step id>``),
    the preflight or the point-of-no-return question."""

    id: str
    name: str
    flow_run_id: str
    attempt: str | None  # the attempt key (the ``attempt:`` tag)
    state: str
    state_type: str
    message: str
    started: datetime | None
    ended: datetime | None
    run_count: int  # tries
    result: Any = None  # the persisted result, when the run completed and it could be read
    result_missing: str = ""  # why there is no result, when there should be one


@dataclass(frozen=True)
class EventRecord:
    event: str  # cutover.step.failed, cutover.gate.decided, ...
    occurred: datetime
    resource: str  # the step id (or gate/<name>, point-of-no-return)
    payload: dict[str, Any]
    task_run_id: str | None = None  # the task run it was emitted in


@dataclass(frozen=True)
class RunbookFacts:
    """What the run's runbook said, as the run read it (values from the worker's
    environment resolved; secrets only as their references): see cutover.report.facts."""

    path: str
    sha256: str | None
    read: str  # when the digest was taken: "at the end of the run", "when this report was made"
    data: dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    run: FlowRunRecord
    task_runs: list[TaskRunRecord]  # of the run and of its rollback runs
    events: list[EventRecord]
    journal: dict[str, Any]  # the entries read: plan-<attempt>, dns-<attempt>-<app>, freeze-<app>, rollback, generation
    runbook: RunbookFacts | None
    rollback_runs: list[FlowRunRecord] = field(default_factory=list)
    audits: list[KeptAudit] = field(default_factory=list)
    ui_url: str | None = None
    gathered_at: datetime | None = None
    notes: list[str] = field(default_factory=list)  # what could not be read, said plainly
