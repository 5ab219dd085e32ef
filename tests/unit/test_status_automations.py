"""The notification automations are valid Prefect triggers that watch the right events."""

from __future__ import annotations

from prefect.events.schemas.automations import EventTrigger, Posture

from cutover import event_names as ev
from cutover.orchestration.automations import automation_specs


def test_every_automation_is_a_valid_event_trigger():
    specs = automation_specs(silent_minutes=10, point_of_no_return_phases=("finalize",))
    triggers = {spec.name: EventTrigger.model_validate(spec.trigger) for spec in specs}
    assert set(triggers) == {
        "cutover: decision waiting",
        "cutover: step failed for good",
        "cutover: past the point of no return",
        "cutover: gone silent",
    }
    assert triggers["cutover: decision waiting"].expect == {ev.GATE_WAITING, ev.DECISION_WAITING, ev.GATE_OVERDUE}
    assert triggers["cutover: past the point of no return"].match.root[ev.LABEL_PHASE] == ["finalize"]


def test_silence_is_a_proactive_window_that_every_start_or_progress_restarts():
    spec = next(s for s in automation_specs(silent_minutes=10) if s.name.endswith("gone silent"))
    trigger = EventTrigger.model_validate(spec.trigger)
    assert trigger.posture == Posture.Proactive and trigger.within.total_seconds() == 600
    assert trigger.for_each == {ev.LABEL_CUTOVER}
    # an event in both sets restarts the window (Prefect's heartbeat pattern); a completion
    # only counts, so a finished run's last completion does not start a window of its own
    assert {ev.STEP_STARTED, ev.STEP_PROGRESS} <= trigger.after & trigger.expect
    assert ev.STEP_COMPLETED in trigger.expect - trigger.after
