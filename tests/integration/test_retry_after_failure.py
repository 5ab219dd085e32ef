"""A failed cutover retried, through the ``cutover/cutover`` deployment and the worker, on
the sandbox: after the operator rolled forward past the point of no return (the retry
skips what was done), and after the run rolled itself back (the retry starts over from the
freeze, because the rollback undid it).

The runs are the one-application (gis) runbook of test_crash_and_cancel.py, streamed,
without that module's ballast: they only need to fail and be retried, so they stay short.
The ballast is that module's and lives only while its tests run, so these tests must not
be in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cutover.orchestration.follow import answer_point_of_no_return, retry_run
from cutover.postgres import dump, fingerprint
from cutover.sandbox.info import NEW_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset
from tests import faults
from tests.integration.test_crash_and_cancel import (
    APP,
    BALLAST,
    DB,
    assert_nothing_left,
    fingerprints,
    finish,
    flow_run,
    remove_work_dirs,
    runbook_variant,
    start,
    step_states,
    target_database,
    task_runs_named,
    wait_during_run,
)

pytestmark = pytest.mark.integration

CUTOVER = "werkendam-retry-tests"  # its work directories are this module's alone
NEVER_SHOWN = "a text the new site never shows"


@pytest.fixture
def estate(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    reset(sandbox)
    yield sandbox
    reset(sandbox)
    remove_work_dirs(sandbox, CUTOVER)


def failing_post_switch_check(data: dict[str, Any]) -> None:
    data["applications"][0]["dns"][0]["check"]["expect_text"] = NEVER_SHOWN


def paused_at_point_of_no_return(api_url: str, flow_run_id: str) -> str | None:
    """The pause key while the run waits for the point-of-no-return answer."""
    state = flow_run(api_url, flow_run_id).state
    key = state.state_details.pause_key if state is not None and state.is_paused() else None
    return key if key and key.startswith("ponr-") else None


def assert_moved(sandbox: SandboxInfo) -> None:
    """The target equals the source, and the name points at the new site."""
    source, target = fingerprints(sandbox)
    assert f"public.{BALLAST}" not in source.tables, "a plain run: no ballast in the source"
    assert fingerprint.compare(source, target) == []
    assert faults.estate_snapshot(sandbox, [APP]).apps[APP].dns == (NEW_SITE_ADDRESS,)


def test_roll_forward_past_the_point_of_no_return_then_the_retry_completes(estate, cutover_worker, prefect_api, tmp_path):
    api = prefect_api.api_url
    runbook = runbook_variant(tmp_path, "stream", cutover=CUTOVER, edit=failing_post_switch_check)
    run_id = start(api, runbook)
    wait_during_run(api, run_id, lambda: paused_at_point_of_no_return(api, run_id), "the point-of-no-return question")
    answer_point_of_no_return(
        api, run_id, roll_back=False, acknowledge_writes_lost=False, decided_by="test", reason="fix the check"
    )

    failed = finish(api, run_id)

    assert failed.state_type == "FAILED" and "rolling forward" in failed.message, failed
    summary = failed.result
    assert summary["failed_steps"] == [f"{APP}/post-switch"] and summary["rollback"] is None, summary
    assert summary["decision"]["roll_back"] is False and summary["decision"]["decided_by"] == "test"
    assert_moved(estate)  # rolled forward: switched, and nothing undone
    assert_nothing_left(estate, run_id)

    fixed = runbook_variant(tmp_path, "stream", cutover=CUTOVER)  # the same file, the check as in the demo
    assert fixed == runbook and NEVER_SHOWN not in fixed.read_text()
    outcome = finish(api, run_id, since=retry_run(api, run_id))

    assert outcome.ok, (outcome.state_name, outcome.message)
    step_states(api, run_id, f"{APP}/freeze", ["Cached", "Completed"])
    step_states(api, run_id, f"{APP}/stream/{DB}", ["Cached", "Completed"])
    step_states(api, run_id, f"{APP}/post-switch", ["Completed", "Failed"])
    assert_moved(estate)
    assert_nothing_left(estate, run_id)


def test_rolled_back_by_itself_then_the_retry_starts_over_and_completes(estate, cutover_worker, prefect_api, tmp_path):
    api = prefect_api.api_url
    before = faults.estate_snapshot(estate, [APP])
    runbook = runbook_variant(tmp_path, "stream", cutover=CUTOVER)
    with faults.app_fault(estate, APP, "cloud", "/health", "GET", status=500):  # the smoke test fails
        run_id = start(api, runbook)
        failed = finish(api, run_id)

    assert failed.state_type == "FAILED" and "rolled back" in failed.message, failed
    assert failed.result["failed_steps"] == [f"{APP}/smoke"], failed.result
    faults.assert_rolled_back(estate, before)
    assert_nothing_left(estate, run_id)

    outcome = finish(api, run_id, since=retry_run(api, run_id))

    assert outcome.ok, (outcome.state_name, outcome.message)
    # the rollback undid the freeze and the stream: the retry did them again, as the run's
    # next generation (".g1" in its cache keys, dump directories and target marker)
    step_states(api, run_id, f"{APP}/freeze", ["Completed", "Completed"])
    step_states(api, run_id, f"{APP}/stream/{DB}", ["Completed", "Completed"])
    freezes = task_runs_named(api, run_id, f"{APP}/freeze")
    assert sorted(tag for r in freezes for tag in r.tags if tag.startswith("attempt:")) == [
        f"attempt:{run_id}",
        f"attempt:{run_id}.g1",
    ]
    assert all(len(r.tags) == 1 for r in freezes), "one tag, the attempt: Prefect asks for a tag lease once per tag set"
    target = target_database(estate, DB)
    assert target is not None and target[1] == f"{dump.MARKER_PREFIX}{run_id}.g1:imported", target
    assert_moved(estate)
    assert_nothing_left(estate, run_id)
