"""Saving the healthy part of the weekend (``on_failure: roll_back_affected``), through the
``cutover/cutover`` deployment and the worker, on the whole demo estate, the gate answered
by hand through the API.

zaaksysteem's smoke test fails for good, and gis's database is shared with zaaksysteem.
What goes back is computed here from the runbook's own graph: zaaksysteem, what depends on
it (portaal), what shares a database with it (gis), and what depends on those
(belastingen). Those are rolled back (sources writable, DNS back, targets renamed aside);
burgerzaken goes on through the gate, which shows the split, and is live on the new site,
verified. The run ends Failed, partly cut over. A retry after the fault is gone moves the
rest (burgerzaken's steps are taken from the cache) and completes: no database is ever
live on the new site while an application that uses it is on the old one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cutover.orchestration.follow import answer_gate, paused_question, retry_run
from cutover.postgres import fingerprint, freeze
from cutover.postgres.endpoint import connect
from cutover.runbook.loader import load_runbook
from cutover.sandbox.info import NEW_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset
from tests import faults
from tests.integration.test_crash_and_cancel import endpoint, finish, remove_work_dirs, start, step_states, wait_during_run

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[2] / "runbooks" / "demo.yaml"
CUTOVER = "werkendam-partial-tests"
FAILING = "zaaksysteem"


@pytest.fixture
def estate(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    reset(sandbox)
    yield sandbox
    reset(sandbox)
    remove_work_dirs(sandbox, CUTOVER)


def runbook_variant(directory: Path) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["cutover"] = CUTOVER
    data["window"] = {k: v.isoformat() for k, v in data["window"].items()}
    data["on_failure"] = "roll_back_affected"
    data["defaults"].update(retries=1, retry_delay_s=1)
    gis = next(app for app in data["applications"] if app["name"] == "gis")
    gis["databases"][0]["shared_with"] = [FAILING]
    path = directory / "partial.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def goes_back_with(runbook: Any, failed: str) -> set[str]:
    """The test's own reading of the runbook: dependents, and applications sharing a database."""
    back, frontier = {failed}, [failed]
    while frontier:
        name = frontier.pop()
        linked = {app.name for app in runbook.applications if name in app.depends_on}
        for app in runbook.applications:
            for db in app.databases:
                sharers = {app.name, *db.shared_with}
                if name in sharers:
                    linked |= sharers
        for other in linked - back:
            back.add(other)
            frontier.append(other)
    return back


def answer_the_gate(api: str, run_id: str, expect_back: set[str]) -> None:
    question = wait_during_run(
        api, run_id, lambda: (q := paused_question(api, run_id)) and q.get("kind") == "gate" and q, "the gate's question"
    )
    assert set(question["rolled_back"]) == expect_back, question
    assert set(question["applications"]).isdisjoint(expect_back), "go is only for the applications still going"
    answer_gate(api, run_id, True, "Anna de Vries", "the rest is verified", gate="go-no-go")


def assert_live_and_verified(sandbox: SandboxInfo, runbook: Any, names: set[str]) -> None:
    for app in runbook.applications:
        if app.name not in names:
            continue
        assert faults.estate_snapshot(sandbox, [app.name]).apps[app.name].dns == (NEW_SITE_ADDRESS,), app.name
        for db in app.databases:
            with (
                connect(endpoint(sandbox.onprem), db.name, autocommit=True) as src,
                connect(endpoint(sandbox.cloud), db.target, autocommit=True) as dst,
            ):
                assert fingerprint.compare(fingerprint.fingerprint(src), fingerprint.fingerprint(dst)) == [], db.name


def test_a_failing_application_takes_back_exactly_what_depends_on_it_and_a_retry_moves_the_rest(
    estate, cutover_worker, prefect_api, tmp_path
):
    api = prefect_api.api_url
    path = runbook_variant(tmp_path)
    runbook = load_runbook(path)
    back = goes_back_with(runbook, FAILING)
    assert back == {"zaaksysteem", "portaal", "gis", "belastingen"}, "the estate this test is about"
    going = {app.name for app in runbook.applications} - back
    before = faults.estate_snapshot(estate, sorted(back))

    with faults.app_fault(estate, FAILING, "cloud", "/health", "GET", status=500):
        run_id = start(api, path)
        answer_the_gate(api, run_id, back)
        partly = finish(api, run_id)

    assert partly.state_type == "FAILED" and "partly cut over" in partly.message, partly.message
    summary = partly.result
    assert summary["rollback"]["partial"] and set(summary["rollback"]["applications"]) == back
    assert {name for name, app in summary["applications"].items() if app["site"] == "old site"} == back
    assert {name for name, app in summary["applications"].items() if app["site"] == "new site"} == going
    faults.assert_rolled_back(estate, before)  # sources writable, DNS back, targets aside: for those that went back
    assert_live_and_verified(estate, runbook, going)
    with connect(endpoint(estate.onprem), "postgres", autocommit=True) as admin:
        for app in runbook.applications:
            for db in app.databases:
                assert freeze.is_read_only(admin, db.name) == (app.name in going), db.name

    # the cause is gone: the retry moves the rest; what went live stays done
    outcome_since = retry_run(api, run_id)
    answer_the_gate(api, run_id, set())
    outcome = finish(api, run_id, since=outcome_since)
    assert outcome.ok, (outcome.state_name, outcome.message)
    step_states(api, run_id, "burgerzaken/freeze", ["Cached", "Completed"])
    step_states(api, run_id, f"{FAILING}/freeze", ["Completed", "Completed"])
    assert_live_and_verified(estate, runbook, back | going)
