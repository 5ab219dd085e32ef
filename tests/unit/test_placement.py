"""Where a step runs: the runbook's placement, read by the planner's site_of."""

from __future__ import annotations

import pytest

from cutover.errors import RunbookError
from cutover.plan import build_plan
from cutover.plan.placement import site_of, sites_used
from cutover.runbook import parse_runbook
from tests.unit.runbook_texts import MINIMAL

# gis moves as files, so that every phase of a move has a step to place
FILES = MINIMAL.replace("{name: gis, from: old, to: new}", "{name: gis, from: old, to: new, method: file}")


def _plan(text: str):
    runbook = parse_runbook(text, "placed.yaml", {})
    return runbook, build_plan(runbook)


def test_without_placement_every_step_runs_in_the_flow_run():
    runbook, plan = _plan(MINIMAL)
    assert {site_of(runbook, step) for step in plan.steps.values()} == {None}


def test_default_placement_runs_freeze_export_and_import_at_the_source_and_verify_and_smoke_at_the_target():
    runbook, plan = _plan(FILES + "gates: [{name: go-no-go}]\nplacement: {}\n")
    sites = {sid: site_of(runbook, step) for sid, step in plan.steps.items()}
    assert sites["gis/freeze"] == "old"
    assert sites["gis/export/gis"] == "old"
    assert sites["gis/transfer/gis"] == "old"
    assert sites["gis/import/gis"] == "old", "the import reads the dump and the roles where they are"
    assert sites["gis/verify/gis"] == "new"
    assert sites["portal/stream/portal"] == "old"
    assert sites["portal/smoke"] == "new"
    assert sites["portal/source-check"] == "old"
    assert sites["gis/dns"] == "new"
    gates = [sid for sid, step in plan.steps.items() if step.phase == "gate"]
    assert gates and all(sites[g] is None for g in gates), "a gate pauses the flow run: it stays there"
    counts = sites_used(runbook, list(plan.steps.values()))
    assert set(counts) == {"old", "new", ""} and sum(counts.values()) == len(plan.steps)


def test_a_phase_left_out_of_both_lists_runs_in_the_flow_run():
    runbook, plan = _plan(FILES + "placement: {at_source: [freeze, export], at_target: [import]}\n")
    assert site_of(runbook, plan.steps["gis/freeze"]) == "old"
    assert site_of(runbook, plan.steps["gis/transfer/gis"]) is None
    assert site_of(runbook, plan.steps["portal/smoke"]) is None


def test_a_phase_placed_at_both_ends_is_a_located_runbook_error():
    with pytest.raises(RunbookError) as caught:
        parse_runbook(MINIMAL + "placement: {at_source: [freeze, smoke], at_target: [smoke]}\n", "placed.yaml", {})
    text = str(caught.value)
    assert "placed.yaml:" in text and "placement" in text and "smoke is in at_source and in at_target" in text


def test_a_gate_cannot_be_placed_at_a_site():
    with pytest.raises(RunbookError) as caught:
        parse_runbook(MINIMAL + "placement: {at_target: [gate]}\n", "placed.yaml", {})
    assert "placement.at_target" in str(caught.value)


def test_a_sites_step_task_keeps_its_own_task_key_through_with_options():
    """Prefect's task worker serves a copy made with with_options: the key routes the steps."""
    from tasks.site_steps import site_task, task_key

    onprem, cloud = site_task("onprem"), site_task("cloud")
    assert onprem.task_key == task_key("onprem") != cloud.task_key == task_key("cloud")
    assert onprem.with_options(name="gis/freeze", persist_result=True).task_key == task_key("onprem")
