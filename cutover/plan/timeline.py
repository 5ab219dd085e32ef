"""When a cutover will end: the plan's steps timed by earlier runs of the same runbook.

Every run records each step's duration and bytes (the ``cutover.step.completed`` events);
rehearsals are those earlier runs. A step's estimate is the P50 and P90 of its durations
over the rehearsals that ran it, each scaled by the size of its database in this run
against that rehearsal's (a database twice as large takes twice as long to dump, send,
restore and verify); a step no rehearsal ran keeps the planner's default. The finish is a
forward pass over the DAG (a step starts when the last step it waits for ends), so it
follows the critical path. P90 puts every step at its own P90: pessimistic on purpose.

During a run :func:`forecast` does the same from "now": finished steps count with their
real end, running steps with their real start, the rest start when they can.

Pure Python, no Prefect: ``cutover plan --timeline`` and the status page both use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cutover.plan.build import Plan
from cutover.plan.render import duration

SIZED_PHASES = frozenset({"export", "transfer", "import", "stream", "verify"})
# the steps whose bytes tell how large a database was in that run
_SIZE_PHASES = ("stream", "export", "transfer")


@dataclass(frozen=True)
class StepSample:
    """One step's finished attempt in one run."""

    run: str  # the flow run id
    step_id: str
    duration_s: float
    bytes: int | None = None
    finished: datetime | None = None


@dataclass(frozen=True)
class StepEstimate:
    p50_s: float
    p90_s: float
    runs: int  # rehearsals that measured it; 0 means the planner's default


@dataclass(frozen=True)
class Forecast:
    """A predicted end, with the per-step times of the P50 pass (seconds from ``origin``)."""

    origin: datetime
    p50_end: datetime
    p90_end: datetime
    starts_s: dict[str, float] = field(default_factory=dict)
    ends_s: dict[str, float] = field(default_factory=dict)

    @property
    def p50_s(self) -> float:
        return (self.p50_end - self.origin).total_seconds()

    @property
    def p90_s(self) -> float:
        return (self.p90_end - self.origin).total_seconds()


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def database_key(plan: Plan, step_id: str) -> str | None:
    step = plan.steps.get(step_id)
    if step is None or step.database is None or step.application is None:
        return None
    return f"{step.application}/{step.database}"


def sizes_by_run(plan: Plan, samples: Iterable[StepSample]) -> dict[str, dict[str, int]]:
    """Per run, per database (``app/db``): its bytes in that run, from the stream's or the
    export's figures."""
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for sample in samples:
        step = plan.steps.get(sample.step_id)
        key = database_key(plan, sample.step_id)
        if step is None or key is None or not sample.bytes or step.phase not in _SIZE_PHASES:
            continue
        rank = _SIZE_PHASES.index(step.phase)
        current = found.setdefault(sample.run, {}).get(key)
        if current is None or rank < current[0]:
            found[sample.run][key] = (rank, int(sample.bytes))
    return {run: {key: size for key, (_, size) in dbs.items()} for run, dbs in found.items()}


def methods_from_steps(step_ids: Iterable[str]) -> dict[str, str]:
    """``app/db`` -> stream|file, as runs moved them (first seen wins): a plan of an
    ``auto`` database needs the sizes of a run to know, and a rehearsal shows it."""
    methods: dict[str, str] = {}
    for step_id in step_ids:
        parts = step_id.split("/")
        if len(parts) == 3 and parts[1] in ("stream", "export", "transfer", "import"):
            methods.setdefault(f"{parts[0]}/{parts[2]}", "stream" if parts[1] == "stream" else "file")
    return methods


def step_estimates(plan: Plan, samples: Iterable[StepSample], sizes: Mapping[str, int] | None = None) -> dict[str, StepEstimate]:
    """Every plan step's estimate. ``samples`` are the rehearsals' finished steps (the
    last finished attempt per run and step counts); ``sizes`` the databases' bytes in
    this run where known (``app/db``), to scale the rehearsals' durations by."""
    samples = list(samples)
    sizes = sizes or {}
    run_sizes = sizes_by_run(plan, samples)
    last: dict[tuple[str, str], StepSample] = {}
    for sample in samples:
        key = (sample.run, sample.step_id)
        before = last.get(key)
        if before is None or (sample.finished and before.finished and sample.finished > before.finished):
            last[key] = sample
    durations: dict[str, list[float]] = {}
    for (run, step_id), sample in last.items():
        step = plan.steps.get(step_id)
        if step is None:
            continue  # a step this plan no longer has (renamed, other method)
        seconds = float(sample.duration_s)
        db = database_key(plan, step_id)
        if step.phase in SIZED_PHASES and db is not None:
            then, now = run_sizes.get(run, {}).get(db), sizes.get(db)
            if then and now:
                seconds *= now / then
        durations.setdefault(step_id, []).append(seconds)
    estimates = {}
    for step_id, step in plan.steps.items():
        measured = durations.get(step_id)
        if measured:
            estimates[step_id] = StepEstimate(percentile(measured, 50), percentile(measured, 90), len(measured))
        else:
            estimates[step_id] = StepEstimate(step.estimate_s, step.estimate_s, 0)
    return estimates


def _forward(
    plan: Plan, seconds: Mapping[str, float], now_s: float, started_s: Mapping[str, float], ended_s: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for step_id, step in plan.steps.items():  # topological order
        if step_id in ended_s:
            starts[step_id] = started_s.get(step_id, ended_s[step_id])
            ends[step_id] = ended_s[step_id]
            continue
        if step_id in started_s:
            starts[step_id] = started_s[step_id]
            ends[step_id] = max(now_s, started_s[step_id] + seconds[step_id])
            continue
        ready = max((ends[d] for d in step.depends_on), default=0.0)
        starts[step_id] = max(now_s, ready)
        ends[step_id] = starts[step_id] + seconds[step_id]
    return starts, ends


def forecast(
    plan: Plan,
    estimates: Mapping[str, StepEstimate],
    origin: datetime,
    now: datetime | None = None,
    started: Mapping[str, datetime] | None = None,
    ended: Mapping[str, datetime] | None = None,
) -> Forecast:
    """The predicted end of a run that began at ``origin``. Without ``now`` it is the
    prediction before the start; with it, ``ended`` steps finished at their times and
    ``started`` ones (not ended) run since theirs, and nothing else starts before ``now``."""

    def offsets(times: Mapping[str, datetime] | None) -> dict[str, float]:
        return {sid: (t - origin).total_seconds() for sid, t in (times or {}).items() if sid in plan.steps}

    now_s = (now - origin).total_seconds() if now is not None else 0.0
    started_s, ended_s = offsets(started), offsets(ended)
    p50 = {sid: e.p50_s for sid, e in estimates.items()}
    p90 = {sid: e.p90_s for sid, e in estimates.items()}
    starts, ends50 = _forward(plan, p50, now_s, started_s, ended_s)
    _, ends90 = _forward(plan, p90, now_s, started_s, ended_s)
    end50 = max(ends50.values(), default=now_s)
    end90 = max(ends90.values(), default=now_s)
    return Forecast(origin, origin + timedelta(seconds=end50), origin + timedelta(seconds=end90), starts, ends50)


def timeline_text(plan: Plan, estimates: Mapping[str, StepEstimate], start: datetime, end: datetime) -> tuple[str, bool]:
    """``cutover plan --timeline``: the critical path's steps with their P50/P90 and when
    they would end if the run began at the window's ``start``, then the finish against the
    window's ``end``. Returns the text and whether P90 ends after the window."""
    predicted = forecast(plan, estimates, start)
    rehearsals = max((e.runs for e in estimates.values()), default=0)
    width = max((len(s) for s in plan.critical_path), default=10)
    lines = [
        f"cutover {plan.cutover}: timeline from "
        + (f"{rehearsals} rehearsal(s)" if rehearsals else "the planner's defaults (no rehearsal found)")
        + ", along the critical path",
        "",
        f"  {'step':<{width}}  {'P50':>8}  {'P90':>8}  {'runs':>4}  ends (P50)",
    ]
    for step_id in _critical_path(plan, predicted):
        e = estimates[step_id]
        ends = start + timedelta(seconds=predicted.ends_s[step_id])
        lines.append(f"  {step_id:<{width}}  {duration(e.p50_s):>8}  {duration(e.p90_s):>8}  {e.runs:>4}  {ends:%a %H:%M}")
    window = (end - start).total_seconds()
    late = predicted.p90_end > end
    lines += [
        "",
        f"window: {start:%a %Y-%m-%d %H:%M} to {end:%a %Y-%m-%d %H:%M} ({duration(window)})",
        f"P50 finish: {predicted.p50_end:%a %H:%M} ({duration(predicted.p50_s)}), " + _against(predicted.p50_end, end),
        f"P90 finish: {predicted.p90_end:%a %H:%M} ({duration(predicted.p90_s)}), " + _against(predicted.p90_end, end),
    ]
    return "\n".join(lines), late


def _against(finish: datetime, end: datetime) -> str:
    spare = (end - finish).total_seconds()
    return f"{duration(spare)} before the window ends" if spare >= 0 else f"{duration(-spare)} AFTER the window ends"


def _critical_path(plan: Plan, predicted: Forecast) -> list[str]:
    """The chain that decides the P50 end (the estimates may move it off the planner's)."""
    if not predicted.ends_s:
        return []
    step_id: str | None = max(predicted.ends_s, key=lambda s: predicted.ends_s[s])
    path = []
    while step_id is not None:
        path.append(step_id)
        deps = plan.steps[step_id].depends_on
        step_id = max(deps, key=lambda d: predicted.ends_s[d]) if deps else None
    return list(reversed(path))
