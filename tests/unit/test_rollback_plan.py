"""The rollback plan on random estates, and the names of the run journal's variables."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.journal import MemoryJournal, attempt_key, attempts, begin_rollback, end_rollback, unfinished_rollback
from cutover.plan import build_plan
from cutover.plan.rollback import plan_rollback, rollback_id
from cutover.runbook import load_runbook, parse_runbook
from cutover.runbook.synthetic import estate_yaml
from tasks.journal import variable_name
from tests.unit.test_planner import acyclic_estates


def descendants(plan, sid: str) -> set[str]:
    below: dict[str, set[str]] = {s: set() for s in plan.steps}
    for step in plan.steps.values():
        for dep in step.depends_on:
            below[dep].add(step.id)
    seen, todo = set(), [sid]
    while todo:
        for nxt in below[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(acyclic_estates(), st.data())
def test_every_started_step_with_a_compensation_is_undone_after_everything_that_followed_it(estate, data):
    n, dbs, deps = estate
    plan = build_plan(parse_runbook(estate_yaml(n, dbs, deps), "synthetic.yaml", {}))
    started = data.draw(st.sets(st.sampled_from(plan.order())))
    compensations = plan_rollback(plan, started)
    ids = [c.id for c in compensations]
    assert len(ids) == len(set(ids))
    assert {c.step for c in compensations} == {s for s in started if plan.steps[s].compensation}
    position = {cid: i for i, cid in enumerate(ids)}
    waits: dict[str, set[str]] = {}
    for comp in compensations:
        assert all(position[d] < position[comp.id] for d in comp.depends_on), "dependencies come first"
        waits[comp.id] = set(comp.depends_on).union(*(waits[d] for d in comp.depends_on))
    for comp in compensations:
        later = {rollback_id(s) for s in descendants(plan, comp.step) if rollback_id(s) in position}
        assert later <= waits[comp.id], f"{comp.id} must wait for the undoing of what came after it"
        assert comp.id not in waits[comp.id]


def test_one_application_is_undone_dns_first_source_last():
    plan = build_plan(load_runbook("runbooks/demo.yaml"), methods={"gis/gis": "stream"})
    started = {"gis/freeze", "gis/stream/gis", "gis/verify/gis", "gis/start", "gis/smoke", "gis/source-check", "gis/dns"}
    chain = {c.step: c.depends_on for c in plan_rollback(plan, started)}
    assert chain == {
        "gis/dns": (),
        "gis/start": ("rollback/gis/dns",),
        "gis/stream/gis": ("rollback/gis/start",),
        "gis/freeze": ("rollback/gis/stream/gis",),
    }


def test_nothing_started_means_nothing_to_undo():
    assert plan_rollback(build_plan(load_runbook("runbooks/demo.yaml")), set()) == []


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=40))
def test_journal_variable_names_are_valid_prefect_names_and_keep_inputs_apart(run_key, key):
    name = variable_name(run_key, key)
    assert re.fullmatch(r"[a-z0-9_-]{1,255}", name)
    assert variable_name(run_key, key) == name


def test_journal_variable_names_that_clean_up_alike_stay_apart():
    assert variable_name("run", "dns-Portaal") != variable_name("run", "dns-portaal")
    assert variable_name("run", "dns-a.b") != variable_name("run", "dns-a-b")
    assert variable_name("run", "dns-" + "x" * 300) != variable_name("run", "dns-" + "x" * 301)


def test_attempt_keys_change_for_the_applications_each_rollback_undoes_and_only_for_them():
    run = "0b7f6c2e-1111-4222-8333-444455556666"
    journal = MemoryJournal()
    now = attempts(run, journal)
    assert now.of("gis") == now.of("portaal") == now.run == run
    assert attempt_key(run, journal) == run
    begin_rollback(journal, run, {"gis": now.of("gis")}, now.run)
    assert unfinished_rollback(journal) == {"of": {"gis": run}, "run": run, "finished": False}
    later = attempts(run, journal)
    assert later.of("gis") == f"{run}.g1", "a retry moves the rolled-back application again"
    assert later.of("portaal") == run, "an application that was not rolled back keeps its finished steps"
    assert later.run == f"{run}.g1" and later.of_gate(["gis", "portaal"]) == f"{run}.g1-0"
    begin_rollback(journal, run, {"gis": now.of("gis")}, now.run)  # finishing the same rollback again
    assert attempts(run, journal).of("gis") == f"{run}.g1", "counted once"
    end_rollback(journal, finished=True)
    assert unfinished_rollback(journal) is None
    begin_rollback(journal, run, {"gis": later.of("gis"), "portaal": later.of("portaal")}, later.run)
    assert attempts(run, journal).of_gate(["gis", "portaal"]) == f"{run}.g2-1"


def test_the_point_of_no_return_is_crossed_only_by_what_cannot_be_undone():
    from cutover.plan.rollback import past_point_of_no_return

    runbook = load_runbook("runbooks/demo.yaml")
    plan = build_plan(runbook)
    before = {"gis/freeze", "gis/smoke", "gis/source-check"}
    nothing, switched = (lambda: []), (lambda: ["gis.werkendam.test."])
    assert not past_point_of_no_return(plan, before, before, switched)
    assert not past_point_of_no_return(plan, before | {"gis/dns"}, before, nothing), "a switch that changed nothing"
    assert past_point_of_no_return(plan, before | {"gis/dns"}, before, switched), "a switch that changed a record"
    assert past_point_of_no_return(plan, before | {"gis/dns"}, before | {"gis/dns"}, nothing)
    # with the point at finalize, a switched DNS can still be reverted; a begun finalize cannot
    at_finalize = build_plan(runbook.model_copy(update={"point_of_no_return": "finalize"}))
    done = before | {"gis/dns", "gis/post-switch"}
    assert not past_point_of_no_return(at_finalize, done, done, switched)
    assert past_point_of_no_return(at_finalize, done | {"gis/finalize"}, done, nothing)
