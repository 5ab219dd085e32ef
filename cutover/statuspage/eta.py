"""The expected finish of the current run, against the plan and the window.

Estimates come from the rehearsals the event history holds (earlier runs of the same
cutover), scaled by this run's database sizes once its dumps have measured them; see
:mod:`cutover.plan.timeline`. "Behind" compares the forecast with the same estimates'
prediction at the run's start: it measures this run's delays, not the estimates' errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cutover.plan.timeline import database_key, forecast, step_estimates
from cutover.statuspage.run_state import CutoverState

# Closer than this to the plan counts as on schedule: a forecast moves by minutes as steps end.
ON_SCHEDULE_SLACK_S = 120.0
ON_SCHEDULE_SLACK_SHARE = 0.10


@dataclass(frozen=True)
class Eta:
    expected: datetime  # P50
    expected_p90: datetime
    planned: datetime  # P50 as predicted when the run began
    verdict: str  # on_schedule | behind | past_window | finished
    minutes: int  # behind the plan, or past the window's end (0 otherwise)
    rehearsals: int


def current_sizes(state: CutoverState) -> dict[str, int]:
    """Databases' bytes in the current run, from its finished dumps and streams."""
    sizes: dict[str, int] = {}
    if state.plan is None:
        return sizes
    for step in state.steps.values():
        key = database_key(state.plan, step.step_id)
        if key and step.status == "completed" and step.phase in ("stream", "export") and step.figures.get("bytes"):
            sizes[key] = int(step.figures["bytes"])
    return sizes


def run_eta(state: CutoverState, now: datetime, window_end: datetime | None) -> Eta | None:
    """None without a plan or before the run has begun."""
    run = state.run
    if state.plan is None or run is None:
        return None
    samples = state.samples()
    estimates = step_estimates(state.plan, samples, current_sizes(state))
    started = {s.step_id: s.started for s in state.steps.values() if s.started and s.status in ("running", "retrying", "waiting")}
    ended = {s.step_id: s.ended for s in state.steps.values() if s.ended and s.status == "completed"}
    origin = run.first_seen
    planned = forecast(state.plan, estimates, origin)
    rehearsals = len({s.run for s in samples})
    if run.state_type in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        end = run.state_at or now
        return Eta(end, end, planned.p50_end, "finished", 0, rehearsals)
    predicted = forecast(state.plan, estimates, origin, now=now, started=started, ended=ended)
    behind_s = (predicted.p50_end - planned.p50_end).total_seconds()
    slack = max(ON_SCHEDULE_SLACK_S, ON_SCHEDULE_SLACK_SHARE * planned.p50_s)
    if window_end is not None and predicted.p50_end > window_end:
        verdict, minutes = "past_window", round((predicted.p50_end - window_end).total_seconds() / 60)
    elif behind_s > slack:
        verdict, minutes = "behind", round(behind_s / 60)
    else:
        verdict, minutes = "on_schedule", 0
    return Eta(predicted.p50_end, predicted.p90_end, planned.p50_end, verdict, minutes, rehearsals)
