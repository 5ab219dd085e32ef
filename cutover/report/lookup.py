"""Looking things up in a run's record: which attempt ran last, the plan it ran, a step's
result and task run, the events a task run emitted. Shared by the parts of the report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cutover.journal import Attempts
from cutover.plan.build import Plan
from cutover.plan.rollback import PREFIX
from cutover.redaction import redact_text
from cutover.report.record import EventRecord, RunRecord, TaskRunRecord

_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
_COMPLETED = "COMPLETED"


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat(timespec="seconds")


def text(value: Any) -> str:
    """A recorded message as the report may show it: secrets redacted, one line."""
    return redact_text(str(value or "")).replace("\r", " ").replace("\n", " ").strip()


class Recorded:
    """A :class:`RunRecord` with the look-ups the report needs."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.rollback_run_names = {r.id: r.name for r in record.rollback_runs}
        self._events_by_task: dict[str, list[EventRecord]] = {}
        for event in record.events:
            if event.task_run_id:
                self._events_by_task.setdefault(event.task_run_id, []).append(event)

    # --- attempts and plans ---------------------------------------------------------

    def attempts(self) -> list[str]:
        """The attempt keys that ran task runs, oldest first."""
        first: dict[str, datetime] = {}
        for run in self.record.task_runs:
            if run.attempt is not None:
                when = run.started or run.ended or _FAR_FUTURE
                first[run.attempt] = min(first.get(run.attempt, when), when)
        return sorted(first, key=lambda key: (first[key], key))

    def _attempts_now(self) -> Attempts | None:
        """Each application's attempt key now (the journal's ``generations``), or None for a
        run that kept one key for all (before per-application generations)."""
        entry = self.record.journal.get("generations")
        if not isinstance(entry, dict):
            return None
        return Attempts(self.record.run.id, dict(entry.get("applications", {})), int(entry.get("rollbacks", 0)))

    def last_attempt(self) -> str | None:
        """The run's latest attempt: the key its plan is kept under."""
        now = self._attempts_now()
        if now is not None and self.plan(now.run) is not None:
            return now.run
        attempts = self.attempts()
        return attempts[-1] if attempts else None

    def key_of(self, step_id: str, attempt: str) -> str:
        """The key step ``step_id`` (or its compensation) worked under in ``attempt``: in the
        latest attempt each application has its own (it may have been rolled back alone)."""
        now = self._attempts_now()
        plan = self.plan(attempt) if now is not None and attempt == now.run else None
        step = plan.steps.get(step_id.removeprefix(PREFIX)) if plan is not None else None
        if now is None or plan is None or step is None:
            return attempt
        if step.application is not None:
            return now.of(step.application)
        return now.of_gate([plan.steps[dep].application or "" for dep in step.depends_on])

    def key_of_application(self, application: str, attempt: str) -> str:
        now = self._attempts_now()
        return now.of(application) if now is not None and attempt == now.run else attempt

    def plan(self, attempt: str) -> Plan | None:
        data = self.record.journal.get(f"plan-{attempt}")
        return Plan.from_dict(data) if isinstance(data, dict) else None

    # --- task runs and results ------------------------------------------------------

    def run_label(self, run: TaskRunRecord) -> str:
        if run.flow_run_id == self.record.run.id:
            return "this run"
        return f"rollback run {self.rollback_run_names.get(run.flow_run_id, run.flow_run_id)}"

    def task_runs(self, attempt: str | None = None) -> list[TaskRunRecord]:
        runs = [r for r in self.record.task_runs if attempt is None or r.attempt == self.key_of(r.name, attempt)]
        return sorted(runs, key=lambda r: (r.started or r.ended or _FAR_FUTURE, r.name))

    def latest(self, name: str, attempt: str) -> TaskRunRecord | None:
        """The last task run named ``name`` in ``attempt`` (a retried flow run makes one per run)."""
        runs = [r for r in self.task_runs(attempt) if r.name == name]
        completed = [r for r in runs if r.state_type == _COMPLETED]
        chosen = completed or runs
        return chosen[-1] if chosen else None

    def result(self, name: str, attempt: str) -> Any:
        run = self.latest(name, attempt)
        return run.result if run is not None and run.state_type == _COMPLETED else None

    def steps(self, attempt: str) -> list[TaskRunRecord]:
        return [r for r in self.task_runs(attempt) if not r.name.startswith(PREFIX)]

    def compensations(self, attempt: str) -> list[TaskRunRecord]:
        return [r for r in self.task_runs(attempt) if r.name.startswith(PREFIX)]

    # --- events ---------------------------------------------------------------------

    def events_of(self, task_run: TaskRunRecord) -> list[EventRecord]:
        return sorted(self._events_by_task.get(task_run.id, []), key=lambda e: e.occurred)

    def events_named(self, name: str, resource: str | None = None) -> list[EventRecord]:
        found = [e for e in self.record.events if e.event == name and (resource is None or e.resource == resource)]
        return sorted(found, key=lambda e: e.occurred)

    def failure(self, task_run: TaskRunRecord) -> str | None:
        """Why a task run failed for good: the error its last try reported (already
        redacted when it was emitted), else the state's message."""
        if task_run.state_type == _COMPLETED:
            return None
        failed = [e for e in self.events_of(task_run) if e.event.endswith(".failed")]
        if failed:
            return text(failed[-1].payload.get("error"))
        if task_run.state_type in ("FAILED", "CRASHED", "CANCELLED"):
            return text(task_run.message) or task_run.state
        return None
