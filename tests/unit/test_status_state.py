"""Folding events into a cutover's state, and the public and team views of it."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from cutover.plan import build_plan
from cutover.runbook import load_runbook
from cutover.statuspage.eta import run_eta
from cutover.statuspage.public_view import application_status, localized, public_state
from cutover.statuspage.run_state import CutoverState
from cutover.statuspage.team_view import team_state
from tests.unit.status_events import T0, flow_run_event, step_done, step_event


@pytest.fixture(scope="module")
def runbook():
    return load_runbook("runbooks/demo.yaml")


@pytest.fixture
def plan(runbook):
    keys = [f"{a.name}/{d.name}" for a in runbook.applications for d in a.databases]
    return build_plan(runbook, methods={k: "stream" for k in keys})


def statuses(state):
    public = public_state(state, None, None)
    return {a["name"]: a["status"] for a in public["applications"]}


def test_applications_move_from_planned_to_live(plan):
    state = CutoverState("gemeente-werkendam", plan)
    assert set(statuses(state).values()) == {"planned"}
    state.apply_all(step_done("gis/freeze", "freeze", 0, 1))
    assert statuses(state)["gis"] == "frozen"
    state.apply(step_event("cutover.step.started", "gis/stream/gis", "stream", 2))
    assert statuses(state)["gis"] == "moving"
    state.apply(step_event("cutover.step.completed", "gis/stream/gis", "stream", 5, payload={"duration_s": 3, "bytes": 10}))
    state.apply(step_event("cutover.step.started", "gis/verify/gis", "verify", 6))
    assert statuses(state)["gis"] == "checking"
    state.apply_all(step_done("gis/post-switch", "post_switch", 7, 1))
    assert statuses(state)["gis"] == "live"


def test_a_failed_attempt_that_is_retried_is_not_attention_but_a_failure_for_good_is(plan):
    state = CutoverState("gemeente-werkendam", plan)
    state.apply(step_event("cutover.step.started", "gis/stream/gis", "stream", 1, task_run="t1"))
    state.apply(
        step_event(
            "cutover.step.failed",
            "gis/stream/gis",
            "stream",
            2,
            payload={"error": "pg_restore exited 1 on 127.0.0.3"},
            task_run="t1",
        )
    )
    assert statuses(state)["gis"] == "moving"
    failed = step_event("cutover.step.failed", "gis/stream/gis", "stream", 3)
    failed.update(
        event="prefect.task-run.Failed",
        resource={"prefect.resource.id": "prefect.task-run.t1", "prefect.resource.name": "gis/stream/gis"},
    )
    state.apply(failed)
    assert statuses(state)["gis"] == "attention"
    assert public_state(state, None, None)["state"] == "attention"


def test_rollback_steps_mark_the_application_rolled_back(plan):
    state = CutoverState("gemeente-werkendam", plan)
    state.apply_all(step_done("gis/freeze", "freeze", 0, 1))
    state.apply(step_event("cutover.step.started", "rollback/gis/freeze", "rollback", 5))
    assert statuses(state)["gis"] == "rolling_back"
    state.apply(step_event("cutover.step.compensated", "rollback/gis/freeze", "rollback", 6))
    assert statuses(state)["gis"] == "rolled_back"


def test_the_state_does_not_depend_on_the_order_events_arrive_in(plan):
    events = []
    for i, app in enumerate(["gis", "burgerzaken", "portaal"]):
        events += step_done(f"{app}/freeze", "freeze", i, 1)
        events += step_done(f"{app}/finalize", "finalize", 10 + i, 1)
    events.append(flow_run_event("Completed", 30))
    in_order = CutoverState("gemeente-werkendam", plan)
    in_order.apply_all(events)
    shuffled = CutoverState("gemeente-werkendam", plan)
    mixed = events[:]
    random.Random(4).shuffle(mixed)
    for event in mixed + mixed[:3]:  # and some seen twice
        shuffled.apply(event)
    assert public_state(shuffled, None, None) == public_state(in_order, None, None)


def test_an_earlier_run_is_a_rehearsal_and_the_latest_run_is_shown(plan):
    state = CutoverState("gemeente-werkendam", plan)
    state.apply_all(step_done("gis/freeze", "freeze", 0, 4, run="old"))
    state.apply_all(step_done("gis/finalize", "finalize", 5, 1, run="old"))
    state.apply(step_event("cutover.step.started", "gis/freeze", "freeze", 100, run="new"))
    assert state.current_run == "new"
    assert statuses(state)["gis"] == "frozen"
    assert {(s.run, s.step_id) for s in state.samples()} == {("old", "gis/freeze"), ("old", "gis/finalize")}


def test_other_cutovers_are_ignored(plan):
    state = CutoverState("gemeente-werkendam", plan)
    assert not state.apply(step_event("cutover.step.started", "gis/freeze", "freeze", 0, cutover="gemeente-urk"))
    assert state.run is None


def test_a_gate_step_waiting_shows_as_pending_with_its_flow_run(plan):
    state = CutoverState("gemeente-werkendam", plan)
    state.apply(step_event("cutover.step.started", "gate/go-no-go", "gate", 5))
    gates = state.pending_gates()
    assert [(g.name, g.flow_run_id) for g in gates] == [("go-no-go", "run-1")]
    assert public_state(state, None, None)["state"] == "waiting"
    state.apply(step_event("cutover.step.completed", "gate/go-no-go", "gate", 9))
    assert state.pending_gates() == []


def test_the_public_state_carries_no_internals(plan):
    state = CutoverState("gemeente-werkendam", plan)
    state.apply(step_event("cutover.step.started", "burgerzaken/stream/bzk", "stream", 1, task_run="t1"))
    state.apply(
        step_event(
            "cutover.step.progress", "burgerzaken/stream/bzk", "stream", 2, payload={"bytes_sent": 18081, "rate_bps": 5432}
        )
    )
    state.apply(
        step_event(
            "cutover.step.failed",
            "burgerzaken/stream/bzk",
            "stream",
            3,
            payload={"error": "connection to 127.0.0.3:5433 database bzk password=hunter2 refused"},
        )
    )
    eta = run_eta(state, T0 + timedelta(seconds=10), None)
    for lang in ("en", "nl"):
        text = json.dumps(localized(public_state(state, eta, None), lang))
        for internal in ("127.0.0", "5433", "bzk", "hunter2", "stream/", "18081", "5432", "run-1", "t1"):
            assert internal not in text, (lang, internal)


def test_eta_says_behind_when_a_step_overruns_its_rehearsals(plan):
    state = CutoverState("gemeente-werkendam", plan)
    for sid, step in plan.steps.items():  # a rehearsal where every step took 1 s
        state.apply_all(step_done(sid, step.phase, 0, 1, run="rehearsal"))
    state.apply(step_event("cutover.step.started", "portaal/freeze", "freeze", 100, run="live"))
    on_time = run_eta(state, T0 + timedelta(seconds=101), None)
    assert on_time.verdict == "on_schedule" and on_time.rehearsals == 1
    late = run_eta(state, T0 + timedelta(seconds=100 + 3600), None)
    assert late.verdict == "behind" and late.minutes >= 59
    past = run_eta(state, T0 + timedelta(seconds=100 + 3600), T0 + timedelta(seconds=200))
    assert past.verdict == "past_window"


def test_team_view_shows_throughput_and_links_into_the_prefect_ui(plan):
    state = CutoverState("gemeente-werkendam", plan)
    state.apply(step_event("cutover.step.started", "gis/stream/gis", "stream", 1, task_run="t9"))
    state.apply(
        step_event(
            "cutover.step.progress",
            "gis/stream/gis",
            "stream",
            3,
            payload={"bytes_sent": 5_000_000, "rate_bps": 2_500_000, "elapsed_s": 2.0},
        )
    )
    team = team_state(state, None, "http://ui.example", T0 + timedelta(seconds=4))
    assert team["throughput"] == [
        {"step_id": "gis/stream/gis", "sent": "5.0 MB", "rate": "2.5 MB/s", "percent": None, "elapsed": "2.0 s"}
    ]
    row = next(r for a in team["applications"] for r in a["steps"] if r["step_id"] == "gis/stream/gis")
    assert row["link"] == "http://ui.example/runs/task-run/t9" and row["status"] == "running"
    assert team["run"]["link"] == "http://ui.example/runs/flow-run/run-1"


def test_application_status_without_steps_is_planned():
    assert application_status([]) == "planned"
