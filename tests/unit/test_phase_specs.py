"""What a phase is lives in one place (cutover.plan.phases), what runs it in another
(cutover.phases.registry); the plan says what each step reads and survives a round trip
through the journal."""

from __future__ import annotations

import json

import pytest

from cutover import units
from cutover.phases.registry import COMPENSATE, RUN
from cutover.plan import build_plan
from cutover.plan.build import Plan, step_id
from cutover.plan.phases import PHASE_NAMES, PHASES
from cutover.runbook.loader import load_runbook

DEMO = "runbooks/demo.yaml"


def test_every_phase_has_one_spec_one_runner_and_a_compensation_exactly_when_it_declares_one():
    assert set(PHASES) == set(PHASE_NAMES) == set(RUN)
    assert set(COMPENSATE) == {name for name, spec in PHASES.items() if spec.compensation}
    segments = [spec.segment for spec in PHASES.values()]
    assert len(segments) == len(set(segments)), "a step id's segment names one phase"


def test_the_plan_survives_the_journal_exactly():
    plan = build_plan(load_runbook(DEMO), sizes={"burgerzaken/bzk": 5 << 30})
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.steps == plan.steps and again.methods == plan.methods and again.critical_path == plan.critical_path


def test_each_step_reads_what_it_needs_and_nothing_it_would_have_to_guess():
    plan = build_plan(load_runbook(DEMO))
    verify = plan.steps[step_id("zaaksysteem", "verify", "zaken")]
    assert verify.reads == (step_id("zaaksysteem", "freeze"),)
    assert plan.steps[step_id("gis", "source_check")].reads == (step_id("gis", "freeze"),)
    gate = plan.steps["gate/go-no-go"]
    assert {plan.steps[s].phase for s in gate.reads} == {"verify", "smoke"}
    assert {plan.steps[s].application for s in gate.reads} == {a.name for a in load_runbook(DEMO).applications}
    assert plan.steps[step_id("gis", "dns_switch")].reads == ("gate/go-no-go",), "the switch gets the change set approved"
    assert all(dep in plan.steps for step in plan.steps.values() for dep in step.reads)


@pytest.mark.parametrize(
    ("value", "text"), [(None, "-"), (512, "512 B"), (1536, "1.5 KiB"), (12 << 20, "12.0 MiB"), (3 << 40, "3.0 TiB")]
)
def test_sizes_are_written_one_way(value, text):
    assert units.size(value) == text


@pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (2.25, "2.2 s"), (90, "1.5 min"), (14400, "4 h"), (5000, "1.4 h")])
def test_durations_are_written_one_way(seconds, text):
    assert units.duration(seconds) == text
