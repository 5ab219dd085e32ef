"""What the Prefect events say about one cutover: its runs, each step's state, gates.

:class:`CutoverState` folds events (Prefect's JSON shape: ``id``, ``occurred``, ``event``,
``resource``, ``related``, ``payload``) into state, in the order they occurred; an event
that arrives late (a backfill racing the live stream) makes it fold everything again, so
the result never depends on arrival order. Events seen twice count once.

The *current* run is the latest flow run of the cutover flow that emitted an event of
this cutover; steps show what happened in it, and what rollback flow runs did after it
began. Earlier runs are the rehearsals (see :meth:`CutoverState.samples`).

No Prefect import: this is pure data and unit-tested with plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cutover import event_names as ev
from cutover.plan.build import Plan
from cutover.plan.timeline import StepSample

ROLLBACK_PREFIX = "rollback/"
# Event kinds not kept for replay: they only refresh a running step's figures.
_NOT_REPLAYED = {ev.STEP_PROGRESS}


def parse_time(text: str | datetime) -> datetime:
    if isinstance(text, datetime):
        return text if text.tzinfo else text.replace(tzinfo=UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def related_id(event: dict[str, Any], role: str) -> tuple[str | None, str | None]:
    """The id (without its ``prefect.<role>.`` prefix) and name of the related resource
    that has ``role``."""
    for resource in event.get("related") or []:
        if resource.get(ev.LABEL_ROLE) == role:
            rid = resource.get(ev.LABEL_ID, "")
            return rid.rsplit(".", 1)[-1] or None, resource.get(ev.LABEL_NAME)
    return None, None


@dataclass
class StepState:
    step_id: str
    phase: str
    application: str | None
    status: str = "planned"  # planned, running, completed, retrying, failed, waiting, compensating, compensated
    attempts: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    duration_s: float | None = None
    error: str | None = None  # for the team view only
    figures: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] | None = None  # bytes_sent, rate_bps, percent, at
    task_run_id: str | None = None
    flow_run_id: str | None = None
    failed_for_good: bool = False


@dataclass
class RunInfo:
    flow_run_id: str
    name: str | None
    flow: str | None
    first_seen: datetime
    state_type: str | None = None
    state_name: str | None = None
    state_at: datetime | None = None
    pause_key: str | None = None


@dataclass
class GateState:
    name: str
    step_id: str
    since: datetime
    flow_run_id: str | None
    kind: str = "gate"  # gate | decision
    overdue: bool = False


def step_phase(step_id: str, phase: str | None, plan: Plan | None) -> tuple[str, str | None]:
    if plan is not None and step_id in plan.steps:
        step = plan.steps[step_id]
        return step.phase, step.application
    # gate/<name> and the run-wide steps (point-of-no-return) belong to no application
    application = None if step_id.startswith("gate/") or "/" not in step_id else step_id.split("/", 1)[0]
    if phase:
        return phase, application
    parts = step_id.split("/")
    return (parts[1] if len(parts) > 1 else "?"), application


class CutoverState:
    """The state of cutover ``name`` (None: the first cutover an event names)."""

    def __init__(self, name: str | None = None, plan: Plan | None = None) -> None:
        self.name = name
        self.plan = plan
        self._events: list[dict[str, Any]] = []  # replayable, in order of occurrence
        self._seen: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self.runs: dict[str, RunInfo] = {}
        self.current_run: str | None = None
        self.steps: dict[str, StepState] = {}
        self.gates: dict[str, GateState] = {}
        self.last_event_at: datetime | None = None
        self.task_runs: dict[str, str] = {}  # task run id -> step id
        self._completions: list[tuple[str, StepSample]] = []  # (flow run, sample)
        self._fresh_steps()

    def _fresh_steps(self) -> None:
        self.steps = {}
        self.gates = {}
        self.task_runs = {}
        if self.plan is not None:
            for step in self.plan.steps.values():
                self.steps[step.id] = StepState(step.id, step.phase, step.application)

    # --- folding ------------------------------------------------------------------

    def apply(self, event: dict[str, Any]) -> bool:
        """Fold one event in; True when it concerned this cutover (the state changed)."""
        event_id = str(event.get("id") or "")
        if event_id and event_id in self._seen:
            return False
        if not self._concerns(event):
            return False
        occurred = parse_time(event["occurred"])
        if event["event"] in _NOT_REPLAYED:
            self._fold(event, occurred)  # seen twice it sets the same figures again: no id kept
            return True
        if event_id:
            self._seen.add(event_id)
        if self._events and occurred < parse_time(self._events[-1]["occurred"]):
            self._events.append(event)
            self._events.sort(key=lambda e: parse_time(e["occurred"]))
            self._reset()
            for earlier in self._events:
                self._fold(earlier, parse_time(earlier["occurred"]))
            return True
        self._events.append(event)
        self._fold(event, occurred)
        return True

    def apply_all(self, events: Iterable[dict[str, Any]]) -> int:
        return sum(1 for e in sorted(events, key=lambda e: parse_time(e["occurred"])) if self.apply(e))

    def _concerns(self, event: dict[str, Any]) -> bool:
        name = event.get("event", "")
        resource = event.get("resource") or {}
        if name.startswith(ev.CUTOVER_PREFIX):
            cutover = resource.get(ev.LABEL_CUTOVER)
            if self.name is None and cutover:
                self.name = cutover
            return cutover == self.name
        if name.startswith(ev.FLOW_RUN_PREFIX) or name in (ev.TASK_RUN_FAILED, ev.TASK_RUN_CRASHED):
            flow_run = (
                resource.get(ev.LABEL_ID, "").rsplit(".", 1)[-1]
                if name.startswith(ev.FLOW_RUN_PREFIX)
                else related_id(event, "flow-run")[0]
            )
            return flow_run in self.runs
        return False

    def _fold(self, event: dict[str, Any], occurred: datetime) -> None:
        name = event["event"]
        resource = event.get("resource") or {}
        payload = event.get("payload") or {}
        if name.startswith(ev.FLOW_RUN_PREFIX):
            self._fold_flow_run(name, resource, payload, occurred)
            return
        if name in (ev.TASK_RUN_FAILED, ev.TASK_RUN_CRASHED):
            step_id = self.task_runs.get(resource.get(ev.LABEL_ID, "").rsplit(".", 1)[-1])
            step = self.steps.get(step_id or "")
            if step is not None and step.status in ("failed", "running", "retrying"):
                step.status, step.failed_for_good, step.ended = "failed", True, step.ended or occurred
            return
        flow_run, flow_run_name = related_id(event, "flow-run")
        _, flow = related_id(event, "flow")
        if flow_run and flow_run not in self.runs:
            self.runs[flow_run] = RunInfo(flow_run, flow_run_name, flow, occurred)
            if flow in (None, ev.CUTOVER_FLOW):
                self.current_run = flow_run
                self._fresh_steps()  # a new run starts from nothing done
        self.last_event_at = occurred if self.last_event_at is None else max(self.last_event_at, occurred)
        step_id = resource.get(ev.LABEL_NAME, "")
        if name == ev.STEP_COMPLETED and flow_run:
            self._completions.append(
                (
                    flow_run,
                    StepSample(
                        run=flow_run,
                        step_id=step_id,
                        duration_s=float(payload.get("duration_s") or 0.0),
                        bytes=payload.get("bytes"),
                        finished=occurred,
                    ),
                )
            )
        if name in (ev.GATE_WAITING, ev.DECISION_WAITING, ev.GATE_OVERDUE):
            self._fold_gate(name, step_id, payload, flow_run, occurred)
            return
        if flow_run and not self._in_current(flow_run, occurred):
            return  # an earlier run: a rehearsal, kept only as a sample
        if step_id.startswith(ROLLBACK_PREFIX):
            self._fold_compensation(name, step_id[len(ROLLBACK_PREFIX) :], occurred)
            return
        step = self._step(step_id, resource.get(ev.LABEL_PHASE))
        task_run, _ = related_id(event, "task-run")
        if task_run:
            self.task_runs[task_run] = step_id
            step.task_run_id = task_run
        step.flow_run_id = flow_run or step.flow_run_id
        if name == ev.STEP_STARTED:
            step.status = "waiting" if step.phase == "gate" else "running"
            step.attempts += 1
            step.started, step.ended, step.duration_s = occurred, None, None
            step.error, step.failed_for_good, step.progress = None, False, None
        elif name == ev.STEP_COMPLETED:
            step.status, step.ended = "completed", occurred
            step.duration_s = payload.get("duration_s")
            step.figures = {k: v for k, v in payload.items() if k != "duration_s"}
            step.progress = None
            self._clear_gate(step_id)
        elif name == ev.STEP_FAILED:
            step.status, step.ended = "retrying", occurred
            step.duration_s = payload.get("duration_s")
            step.error = payload.get("error")
            self._clear_gate(step_id)
        elif name == ev.STEP_SKIPPED:
            step.status, step.ended = "completed", occurred
        elif name == ev.STEP_PROGRESS and step.status == "running":
            step.progress = {**payload, "at": occurred}

    def _in_current(self, flow_run: str, occurred: datetime) -> bool:
        if flow_run == self.current_run:
            return True
        run = self.runs.get(flow_run)
        current = self.runs.get(self.current_run or "")
        # a rollback flow run of the current attempt (it began after the current run did)
        return bool(run and run.flow not in (None, ev.CUTOVER_FLOW) and current and run.first_seen >= current.first_seen)

    def _fold_flow_run(self, name: str, resource: dict[str, Any], payload: dict[str, Any], occurred: datetime) -> None:
        run = self.runs.get(resource.get(ev.LABEL_ID, "").rsplit(".", 1)[-1])
        if run is None or name.endswith(".heartbeat"):
            return
        run.name = resource.get(ev.LABEL_NAME) or run.name
        run.state_type = resource.get("prefect.state-type") or run.state_type
        run.state_name = resource.get("prefect.state-name") or run.state_name
        run.state_at = occurred
        details = (payload.get("validated_state") or {}).get("state_details") or {}
        run.pause_key = details.get("pause_key") if run.state_type == "PAUSED" else None
        if run.state_type in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            for gate in [g for g in self.gates.values() if g.flow_run_id == run.flow_run_id]:
                del self.gates[gate.step_id]
            if run.flow_run_id == self.current_run:
                for step in self.steps.values():
                    if step.status in ("retrying", "running") and step.flow_run_id == run.flow_run_id:
                        step.status, step.failed_for_good = "failed", True

    def _fold_gate(self, name: str, step_id: str, payload: dict[str, Any], flow_run: str | None, occurred: datetime) -> None:
        if name == ev.GATE_OVERDUE:
            if step_id in self.gates:
                self.gates[step_id].overdue = True
            return
        kind = "decision" if name == ev.DECISION_WAITING else "gate"
        label = str(payload.get("gate") or payload.get("name") or step_id.rsplit("/", 1)[-1])
        self.gates[step_id] = GateState(label, step_id, occurred, flow_run, kind)
        if step_id in self.steps:
            self.steps[step_id].status = "waiting"

    def _clear_gate(self, step_id: str) -> None:
        self.gates.pop(step_id, None)

    def _fold_compensation(self, name: str, step_id: str, occurred: datetime) -> None:
        step = self._step(step_id, None)
        if name == ev.STEP_STARTED:
            step.status = "compensating"
        elif name == ev.STEP_COMPENSATED:
            step.status, step.ended = "compensated", occurred
        elif name == ev.STEP_FAILED:
            step.status, step.error = "failed", "rollback step failed"

    def _step(self, step_id: str, phase: str | None) -> StepState:
        step = self.steps.get(step_id)
        if step is None:
            phase_name, application = step_phase(step_id, phase, self.plan)
            step = self.steps[step_id] = StepState(step_id, phase_name, application)
        return step

    # --- questions ----------------------------------------------------------------

    @property
    def run(self) -> RunInfo | None:
        return self.runs.get(self.current_run or "")

    def pending_gates(self) -> list[GateState]:
        """Gates and decisions waiting for a person: from the gate events, and from a
        gate step that started and has not ended while its run is paused."""
        found = dict(self.gates)
        run = self.run
        for step in self.steps.values():
            if step.phase == "gate" and step.status == "waiting" and step.step_id not in found:
                found[step.step_id] = GateState(
                    step.step_id.split("/", 1)[-1], step.step_id, step.started or datetime.now(UTC), step.flow_run_id
                )
        if run is not None and run.state_type == "PAUSED" and run.pause_key and run.pause_key.startswith("ponr-"):
            found.setdefault(
                "point-of-no-return",
                GateState(
                    "point-of-no-return",
                    "point-of-no-return",
                    run.state_at or datetime.now(UTC),
                    run.flow_run_id,
                    "decision",
                ),
            )
        return sorted(found.values(), key=lambda g: g.since)

    def applications(self) -> list[str]:
        names: list[str] = []
        for step in self.steps.values():
            if step.application and step.application not in names:
                names.append(step.application)
        return names

    def samples(self, exclude_current: bool = True) -> list[StepSample]:
        """Finished steps of the cutover flow's runs (rehearsals), for the estimates."""
        cutover_runs = {r.flow_run_id for r in self.runs.values() if r.flow in (None, ev.CUTOVER_FLOW)}
        return [
            s
            for run, s in self._completions
            if run in cutover_runs
            and not (exclude_current and run == self.current_run)
            and not s.step_id.startswith(ROLLBACK_PREFIX)
        ]
