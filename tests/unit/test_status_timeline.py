"""The forecast: rehearsal durations scaled by size, P50/P90, a forward pass over the plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cutover.plan import build_plan
from cutover.plan.timeline import StepSample, forecast, methods_from_steps, percentile, step_estimates, timeline_text
from cutover.runbook import load_runbook

T0 = datetime(2027, 7, 16, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def runbook():
    return load_runbook("runbooks/demo.yaml")


def stream_plan(runbook):
    keys = [f"{a.name}/{d.name}" for a in runbook.applications for d in a.databases]
    return build_plan(runbook, methods={k: "stream" for k in keys})


def test_percentile_interpolates_between_ranks():
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([10, 20, 30, 40], 90) == pytest.approx(37)
    assert percentile([7], 90) == 7


def test_a_step_without_rehearsal_keeps_the_planners_default(runbook):
    plan = stream_plan(runbook)
    estimates = step_estimates(plan, [])
    assert all(e.runs == 0 and e.p50_s == plan.steps[s].estimate_s for s, e in estimates.items())
    assert forecast(plan, estimates, T0).p50_s == pytest.approx(plan.estimate_s)


def test_rehearsals_give_p50_and_p90_per_step(runbook):
    plan = stream_plan(runbook)
    samples = [
        StepSample(f"r{i}", "burgerzaken/stream/bzk", seconds, 1_000_000) for i, seconds in enumerate([10, 20, 30, 40, 50])
    ]
    estimate = step_estimates(plan, samples)["burgerzaken/stream/bzk"]
    assert (estimate.p50_s, estimate.p90_s, estimate.runs) == (30, 46, 5)


def test_durations_scale_with_the_size_of_the_database_in_this_run(runbook):
    plan = stream_plan(runbook)
    samples = [StepSample("r1", "burgerzaken/stream/bzk", 20.0, 1_000_000), StepSample("r1", "burgerzaken/verify/bzk", 4.0)]
    estimates = step_estimates(plan, samples, sizes={"burgerzaken/bzk": 3_000_000})
    assert estimates["burgerzaken/stream/bzk"].p50_s == pytest.approx(60.0)
    assert estimates["burgerzaken/verify/bzk"].p50_s == pytest.approx(12.0), "verify scales by its database's size too"


def test_the_last_finished_attempt_of_a_step_in_a_run_counts():
    runbook = load_runbook("runbooks/demo.yaml")
    plan = stream_plan(runbook)
    samples = [
        StepSample("r1", "gis/freeze", 100.0, finished=T0),
        StepSample("r1", "gis/freeze", 2.0, finished=T0 + timedelta(seconds=200)),
    ]
    assert step_estimates(plan, samples)["gis/freeze"].p50_s == 2.0


def test_forecast_from_now_counts_finished_and_running_steps_with_their_real_times(runbook):
    plan = stream_plan(runbook)
    estimates = step_estimates(plan, [StepSample("r", sid, 1.0) for sid in plan.steps])
    before = forecast(plan, estimates, T0)
    now = T0 + timedelta(seconds=600)
    ended = {"portaal/freeze": T0 + timedelta(seconds=500)}
    during = forecast(plan, estimates, T0, now=now, ended=ended)
    assert during.p50_end > before.p50_end, "ten minutes spent on the first step delay the end"
    assert during.p50_end >= now


def test_plan_timeline_text_warns_when_p90_ends_after_the_window(runbook):
    plan = stream_plan(runbook)
    slow = [StepSample(f"r{i}", "burgerzaken/stream/bzk", seconds) for i, seconds in enumerate([60, 70, 400_000])]
    text, late = timeline_text(plan, step_estimates(plan, slow), runbook.window.start, runbook.window.end)
    assert late and "AFTER the window ends" in text and "3 rehearsal(s)" in text
    text, late = timeline_text(plan, step_estimates(plan, slow[:1]), runbook.window.start, runbook.window.end)
    assert not late and "before the window ends" in text


def test_methods_come_from_the_step_ids_runs_took():
    assert methods_from_steps(["gis/stream/gis", "zaaksysteem/export/zaken", "gis/freeze"]) == {
        "gis/gis": "stream",
        "zaaksysteem/zaken": "file",
    }


def test_rehearsal_samples_are_the_cutover_flows_forward_steps():
    from cutover.statuspage.rehearsals import samples_from_events
    from tests.unit.status_events import step_event

    events = [
        step_event("cutover.step.completed", "gis/stream/gis", "stream", 5, run="r1", payload={"duration_s": 3.5, "bytes": 99}),
        step_event("cutover.step.completed", "rollback/gis/freeze", "rollback", 9, run="r1"),
        step_event("cutover.step.completed", "gis/freeze", "freeze", 9, run="r2", flow="cutover-rollback"),
    ]
    samples = samples_from_events(events)
    assert [(s.run, s.step_id, s.duration_s, s.bytes) for s in samples] == [("r1", "gis/stream/gis", 3.5, 99)]


def test_plan_timeline_without_an_api_uses_the_defaults(monkeypatch):
    from typer.testing import CliRunner

    from cutover.cli.main import app

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["plan", "runbooks/demo.yaml", "--timeline"])
    assert result.exit_code == 0, result.output
    assert "no rehearsal found" in result.output and "P90 finish" in result.output
