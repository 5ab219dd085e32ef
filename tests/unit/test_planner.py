"""The planner on random estates: every step once, every edge respected, cycles caught."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutover.errors import RunbookError
from cutover.plan import CycleError, build_plan, step_id, topological_order
from cutover.runbook import load_runbook, parse_runbook
from cutover.runbook.synthetic import estate_yaml


@st.composite
def acyclic_estates(draw):
    n = draw(st.integers(1, 12))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    dbs = draw(st.integers(0, 3))
    return n, dbs, deps


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(acyclic_estates())
def test_plan_has_every_step_once_and_respects_every_edge(estate):
    n, dbs, deps = estate
    plan = build_plan(parse_runbook(estate_yaml(n, dbs, deps), "synthetic.yaml", {}))
    order = plan.order()
    position = {sid: i for i, sid in enumerate(order)}
    # freeze, per database (stream: stream+verify, file: export+transfer+import+verify),
    # start, smoke, source-check, dns, post-switch, finalize; plus one gate
    per_db = [2 if j % 2 == 0 else 4 for j in range(dbs)]
    assert len(order) == len(set(order)) == n * (7 + sum(per_db)) + 1
    for step in plan.steps.values():
        for dep in step.depends_on:
            assert position[dep] < position[step.id], f"{dep} must come before {step.id}"
    for i in range(n):
        app = f"app{i:04d}"
        for d in deps[i]:
            dep = f"app{d:04d}"
            assert position[step_id(app, "freeze")] < position[step_id(dep, "freeze")]  # consumers first
            assert position[step_id(dep, "smoke")] < position[step_id(app, "smoke")]
            assert position[step_id(dep, "dns_switch")] < position[step_id(app, "dns_switch")]
        assert position["gate/go-no-go"] < position[step_id(app, "dns_switch")]
        assert position[step_id(app, "smoke")] < position["gate/go-no-go"]
    # the critical path is a chain of real edges whose estimates add up to the plan's
    path = plan.critical_path
    assert all(a in plan.steps[b].depends_on for a, b in itertools.pairwise(path))
    assert sum(plan.steps[s].estimate_s for s in path) == pytest.approx(plan.estimate_s)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 10), st.data())
def test_a_dependency_cycle_is_always_detected_and_named(n, data):
    # a chain 0 <- 1 <- ... <- n-1, closed by an edge from some application back to a later one
    deps = [[i - 1] if i else [] for i in range(n)]
    low = data.draw(st.integers(0, n - 2))
    high = data.draw(st.integers(low + 1, n - 1))
    deps[low] = sorted({*deps[low], high})
    with pytest.raises(RunbookError) as caught:
        parse_runbook(estate_yaml(n, 1, deps), "synthetic.yaml", {})
    cycles = [str(p) for p in caught.value.problems if "dependency cycle" in str(p)]
    assert len(cycles) == 1
    names = cycles[0].split("dependency cycle: ")[1].split(" -> ")
    assert names[0] == names[-1]
    assert set(names) == {f"app{i:04d}" for i in range(low, high + 1)}


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdefgh"), st.lists(st.sampled_from("abcdefgh"), max_size=3), min_size=1))
def test_topological_order_is_valid_or_names_a_real_cycle(graph):
    graph = {node: [p for p in preds if p in graph] for node, preds in graph.items()}
    try:
        order = topological_order(graph)
    except CycleError as exc:
        cycle = exc.cycle
        assert cycle[0] == cycle[-1]
        for before, after in itertools.pairwise(cycle):
            assert before in graph[after], f"{before} -> {after} is not an edge"
    else:
        assert sorted(order) == sorted(graph)
        position = {n: i for i, n in enumerate(order)}
        assert all(position[p] < position[n] for n, preds in graph.items() for p in preds)


def test_demo_plan_ids_are_stable_and_readable():
    plan = build_plan(load_runbook("runbooks/demo.yaml"))
    assert plan.methods["burgerzaken/bzk"] == "copy", "no size known: copied table by table"
    assert plan.steps["burgerzaken/verify/bzk"].depends_on == ("burgerzaken/stream/bzk",)
    files = build_plan(load_runbook("runbooks/demo.yaml"), methods={"burgerzaken/bzk": "file"})
    assert files.steps["burgerzaken/verify/bzk"].depends_on == ("burgerzaken/import/bzk",)
    assert files.steps["burgerzaken/import/bzk"].depends_on == ("burgerzaken/transfer/bzk",)
    assert plan.steps["portaal/dns"].irreversible and not plan.steps["portaal/smoke"].irreversible
    assert plan.steps["burgerzaken/freeze"].compensation.startswith("unfreeze")
    assert build_plan(load_runbook("runbooks/demo.yaml")).digest() == plan.digest()


def test_auto_method_follows_size():
    runbook = load_runbook("runbooks/demo.yaml")
    small = build_plan(runbook, sizes={"burgerzaken/bzk": 10_000_000})
    large = build_plan(runbook, sizes={"burgerzaken/bzk": 50 << 30})
    assert small.methods["burgerzaken/bzk"] == "stream" and "burgerzaken/stream/bzk" in small.steps
    assert large.methods["burgerzaken/bzk"] == "copy" and "burgerzaken/stream/bzk" in large.steps
    assert "burgerzaken/transfer/bzk" not in large.steps, "copied: no dump files to move"
    assert large.steps["burgerzaken/stream/bzk"].estimate_s > small.steps["burgerzaken/stream/bzk"].estimate_s
