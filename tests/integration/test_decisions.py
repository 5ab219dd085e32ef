"""Decisions the way operators take them, through the ``cutover/cutover`` deployment and
the worker, on the sandbox, with every gate answered by hand through the API (never
``auto_approve``): a retry after an automatic rollback pauses at its gate and, past the
switch, at the point of no return; a form cannot be answered by accident; a gate that
nobody answers says it is overdue, or decides no-go; a source frozen before the run stays
frozen after the run's rollback; an error that waiting cannot fix is tried once.

The runs are the one-application (gis) runbook of test_crash_and_cancel.py, streamed,
without that module's ballast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

from cutover.decisions import GO, is_decision_pause, is_gate_pause
from cutover.orchestration import OrchestrationError
from cutover.orchestration.api import prefect_client
from cutover.orchestration.follow import answer_gate, answer_pause, answer_point_of_no_return, paused_question, retry_run
from cutover.postgres import freeze
from cutover.postgres.endpoint import connect
from cutover.sandbox.info import NEW_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset
from tests import faults
from tests.integration.test_crash_and_cancel import (
    APP,
    DB,
    endpoint,
    finish,
    flow_run,
    remove_work_dirs,
    runbook_variant,
    start,
    step_states,
    task_runs_named,
    wait_during_run,
)
from tests.integration.test_faults import ProgramGate

pytestmark = pytest.mark.integration

CUTOVER = "werkendam-decision-tests"
NEVER_SHOWN = "a text the new site never shows"
APPROVER = "Anna de Vries"


@pytest.fixture
def estate(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    reset(sandbox)
    yield sandbox
    reset(sandbox)
    remove_work_dirs(sandbox, CUTOVER)


def manual_gate(timeout_s: float = 3600, on_timeout: str = "wait", approvers: list[str] | None = None):
    def edit(data: dict[str, Any]) -> None:
        data["gates"] = [
            {
                "name": "go-no-go",
                "applications": "all",
                "approvers": approvers if approvers is not None else ["leads"],
                "timeout_s": timeout_s,
                "on_timeout": on_timeout,
            }
        ]
        data["teams"] = {"leads": [APPROVER, "Joost Bakker"]}

    return edit


def failing_post_switch_check(data: dict[str, Any]) -> None:
    data["applications"][0]["dns"][0]["check"]["expect_text"] = NEVER_SHOWN


def both(*edits):
    def edit(data: dict[str, Any]) -> None:
        for one in edits:
            one(data)

    return edit


def paused_with(api_url: str, run_id: str, kind: str) -> dict[str, Any] | None:
    question = paused_question(api_url, run_id)
    return question if question and question.get("kind") == kind else None


def events_named(api_url: str, name: str, since: datetime) -> list[Any]:
    with prefect_client(api_url) as client:
        page = client.read_events(
            EventFilter(event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)), limit=50
        )
    return list(page.events)


def test_a_retry_after_a_rollback_pauses_at_its_gate_and_past_the_switch_and_both_are_answered_by_hand(
    estate, cutover_worker, prefect_api, tmp_path
):
    api = prefect_api.api_url
    before = faults.estate_snapshot(estate, [APP])
    began = datetime.now(UTC)
    runbook = runbook_variant(tmp_path, "stream", cutover=CUTOVER, edit=manual_gate(timeout_s=3))
    with faults.app_fault(estate, APP, "cloud", "/health", "GET", status=500):  # the smoke test fails
        run_id = start(api, runbook)
        failed = finish(api, run_id)
    assert failed.state_type == "FAILED" and "rolled back" in failed.message, failed
    faults.assert_rolled_back(estate, before)

    # the retry is the run's next generation (".g1"): its gate must still pause
    runbook_variant(tmp_path, "stream", cutover=CUTOVER, edit=both(manual_gate(timeout_s=3), failing_post_switch_check))
    since = retry_run(api, run_id)
    question = wait_during_run(api, run_id, lambda: paused_with(api, run_id, "gate"), "the gate's question")
    key = question["pause_key"]
    assert is_gate_pause(key) and "g1" in key, key
    assert question["gate"] == "go-no-go" and question["applications"] == [APP]
    assert question["approvers"] == [APPROVER, "Joost Bakker"]
    assert question["command"] == f"cutover decide {run_id} --gate go-no-go --go|--no-go --by NAME --reason TEXT"

    # nobody answers within the gate's 3 s: it says it is overdue and keeps waiting
    overdue = wait_during_run(api, run_id, lambda: events_named(api, "cutover.gate.overdue", began), "cutover.gate.overdue")
    assert overdue[0].payload["flow_run_id"] == run_id and overdue[0].payload["on_timeout"] == "wait"
    assert events_named(api, "cutover.gate.waiting", began), "the pause said it was waiting"
    assert flow_run(api, run_id).state.is_paused(), "overdue, still waiting"

    # the form cannot be answered by accident: no default answer, an approver's name
    with pytest.raises(OrchestrationError, match="decision"):
        answer_pause(api, run_id, {"decided_by": APPROVER}, what="gate")
    with pytest.raises(OrchestrationError):
        answer_pause(api, run_id, {"decision": GO, "decided_by": ""}, what="gate")
    with pytest.raises(OrchestrationError):
        answer_gate(api, run_id, True, "Mallory", "not an approver")
    with pytest.raises(OrchestrationError, match="waits at gate go-no-go, not other"):
        answer_gate(api, run_id, True, APPROVER, "wrong gate", gate="other")
    assert flow_run(api, run_id).state.is_paused(), "every refused answer left the run waiting"
    answer_gate(api, run_id, True, APPROVER, "verification and smoke tests passed", gate="go-no-go")

    # past the switch the post-switch check fails: the run asks, and is answered by hand
    question = wait_during_run(
        api, run_id, lambda: paused_with(api, run_id, "point-of-no-return"), "the point-of-no-return question"
    )
    assert is_decision_pause(question["pause_key"]) and "g1" in question["pause_key"], question
    assert question["failed"] == [f"{APP}/post-switch"]
    answer_point_of_no_return(
        api, run_id, roll_back=False, acknowledge_writes_lost=False, decided_by=APPROVER, reason="fix the check"
    )
    rolled_forward = finish(api, run_id, since=since)
    assert rolled_forward.state_type == "FAILED" and "rolling forward" in rolled_forward.message, rolled_forward
    summary = rolled_forward.result
    assert summary["decision"]["decided_by"] == APPROVER and summary["rollback"] is None
    assert faults.estate_snapshot(estate, [APP]).apps[APP].dns == (NEW_SITE_ADDRESS,)

    # fixed: the retry completes, and does not ask the gate again (its decision is kept)
    runbook_variant(tmp_path, "stream", cutover=CUTOVER, edit=manual_gate(timeout_s=3))
    outcome = finish(api, run_id, since=retry_run(api, run_id))
    assert outcome.ok, (outcome.state_name, outcome.message)
    gates = step_states(api, run_id, "gate/go-no-go", ["Cached", "Completed"])  # asked once: the first attempt failed before it
    assert all(run.tags == [f"attempt:{run_id}.g1"] for run in gates), "one tag, its attempt (after the rollback: g1)"
    decided = events_named(api, "cutover.gate.decided", began)
    assert [e.payload["decided_by"] for e in decided] == [APPROVER]
    assert flow_run(api, run_id).name.startswith(CUTOVER + " "), "the run is named after its cutover"


def test_a_gate_nobody_answers_decides_no_go_when_the_runbook_says_so_and_rolls_back(
    estate, cutover_worker, prefect_api, tmp_path
):
    api = prefect_api.api_url
    before = faults.estate_snapshot(estate, [APP])
    runbook = runbook_variant(tmp_path, "stream", cutover=CUTOVER, edit=manual_gate(timeout_s=2, on_timeout="no_go"))
    run_id = start(api, runbook)
    outcome = finish(api, run_id)
    assert outcome.state_type == "FAILED", outcome
    assert "gate go-no-go: no-go by nobody: no decision within 2 s (on_timeout: no_go)" in outcome.message, outcome.message
    assert outcome.result["failed_steps"] == ["gate/go-no-go"] and outcome.result["rollback"]["rolled_back"]
    faults.assert_rolled_back(estate, before)


def test_a_source_frozen_before_the_run_stays_frozen_and_its_old_site_in_maintenance_after_the_rollback(
    estate, cutover_worker, prefect_api, tmp_path
):
    api = prefect_api.api_url
    with connect(endpoint(estate.onprem), "postgres", autocommit=True) as admin:
        freeze.set_read_only(admin, DB)  # frozen by somebody else: an earlier cutover, an administrator
    with faults.app_fault(estate, APP, "cloud", "/health", "GET", status=500):
        run_id = start(api, runbook_variant(tmp_path, "stream", cutover=CUTOVER))
        outcome = finish(api, run_id)
    assert outcome.state_type == "FAILED" and "rolled back" in outcome.message, outcome
    assert f"{APP}/freeze" in outcome.result["rollback"]["undone"]
    with connect(endpoint(estate.onprem), "postgres", autocommit=True) as admin:
        assert freeze.is_read_only(admin, DB), "the rollback must not unfreeze what this run did not freeze"
    state = faults.estate_snapshot(estate, [APP]).apps[APP]
    assert state.maintenance["onprem"] is True, "the old site stays in maintenance: it was not live when the run began"
    assert state.dns != (NEW_SITE_ADDRESS,)


def test_an_error_that_waiting_cannot_fix_is_tried_once_and_rolls_back(estate, cutover_worker, prefect_api, tmp_path):
    api = prefect_api.api_url
    gate = ProgramGate(tmp_path / "bin", programs=("pg_dumpall",))

    def through_gate(data: dict[str, Any]) -> None:
        data["sites"]["onprem"]["postgres"]["bin_dir"] = str(gate.dir)

    gate.hold("pg_dumpall", "before")  # past the preflight, about to prepare the target
    run_id = start(api, runbook_variant(tmp_path, "stream", cutover=CUTOVER, edit=through_gate))
    try:
        gate.reached("pg_dumpall", "before", timeout_s=120)
        with connect(endpoint(estate.cloud), "postgres", autocommit=True) as admin:
            admin.execute(f"create database {DB}")
        with connect(endpoint(estate.cloud), DB, autocommit=True) as conn:
            conn.execute("create table somebody_elses (id int)")
    finally:
        gate.release("pg_dumpall", "before")
    try:
        outcome = finish(api, run_id)
        assert outcome.state_type == "FAILED", outcome
        step = f"{APP}/stream/{DB}"
        assert "not created by this run" in outcome.result["errors"][step], outcome.result["errors"]
        runs = task_runs_named(api, run_id, step)
        assert len(runs) == 1 and runs[0].run_count == 1, [(r.state.name, r.run_count) for r in runs]
        assert outcome.result["rollback"]["rolled_back"]
        with connect(endpoint(estate.cloud), DB, autocommit=True) as conn:
            assert conn.execute("select count(*) from pg_tables where tablename = 'somebody_elses'").fetchone()[0] == 1, (
                "somebody else's database is left as it was"
            )
    finally:
        with connect(endpoint(estate.cloud), "postgres", autocommit=True) as admin:
            admin.execute(f"drop database if exists {DB} with (force)")


def test_the_ui_form_of_a_gate_has_no_default_and_is_refused_untouched(estate, cutover_worker, prefect_api, tmp_path):
    """The form's schema as the UI gets it: a decision to pick (no default), a name required."""
    api = prefect_api.api_url
    run_id = start(api, runbook_variant(tmp_path, "stream", cutover=CUTOVER, edit=manual_gate(approvers=[])))
    question = wait_during_run(api, run_id, lambda: paused_with(api, run_id, "gate"), "the gate's question")
    schema_key = f"paused-{question['pause_key']}-schema"
    response = httpx.get(f"{api}/flow_runs/{run_id}/input/{schema_key}", timeout=10)
    response.raise_for_status()
    schema = response.json()
    schema = json.loads(schema) if isinstance(schema, str) else schema
    assert set(schema["required"]) >= {"decision", "decided_by"}, schema
    assert "default" not in schema["properties"]["decision"]
    with pytest.raises(OrchestrationError):
        answer_pause(api, run_id, {}, what="gate")
    answer_gate(api, run_id, False, "Joost Bakker", "smoke results look odd")
    outcome = finish(api, run_id)
    assert outcome.state_type == "FAILED" and "no-go by Joost Bakker: smoke results look odd" in outcome.message
    assert outcome.result["rollback"]["rolled_back"], "a no-go rolls back"
