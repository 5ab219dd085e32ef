"""What a failure rolls back under ``on_failure: roll_back_affected``: on random estates
(dependencies, move_together groups, shared databases), the set is closed under "depends
on", "moves together" and "shares a database", holds the failed applications, and nothing
in it is there without a chain of those relations back to a failure."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cutover.plan.affected import affected_by, groups_of
from cutover.runbook.loader import load_runbook
from cutover.runbook.model import Runbook

DEMO = load_runbook("runbooks/demo.yaml")


@st.composite
def estates(draw: st.DrawFn) -> tuple[Runbook, list[str]]:
    count = draw(st.integers(2, 12))
    names = [f"app{i}" for i in range(count)]
    apps = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        shared = (
            draw(st.lists(st.sampled_from([n for n in names if n != name]), unique=True, max_size=2))
            if draw(st.booleans())
            else []
        )
        databases = (
            [{"name": f"db{i}", "from": "onprem", "to": "cloud", "shared_with": shared}] if shared or draw(st.booleans()) else []
        )
        apps.append({"name": name, "depends_on": deps, "databases": databases})
    groups = draw(st.lists(st.lists(st.sampled_from(names), unique=True, min_size=2, max_size=3), max_size=2))
    base = DEMO.model_dump(by_alias=True)
    base.update(applications=apps, gates=[], move_together=groups, on_failure="roll_back_affected")
    runbook = Runbook.model_validate(base)
    failed = draw(st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=2))
    return runbook, failed


def relations(runbook: Runbook) -> dict[str, set[str]]:
    """Undirected "goes back with" edges, computed here from the runbook's own words."""
    edges: dict[str, set[str]] = {app.name: set() for app in runbook.applications}
    for app in runbook.applications:
        for dep in app.depends_on:
            edges[dep].add(app.name)  # a failure of dep takes app with it (app reads dep)
        for db in app.databases:
            for other in db.shared_with:
                edges[app.name].add(other)
                edges[other].add(app.name)
    for group in runbook.move_together:
        for a in group:
            edges[a] |= {b for b in group if b != a}
    return edges


@settings(max_examples=300, deadline=None)
@given(estates())
def test_the_affected_set_is_closed_and_nothing_outside_it_is_touched(estate):
    runbook, failed = estate
    back = affected_by(runbook, failed)
    edges = relations(runbook)
    assert set(failed) <= set(back) and all(back[name] == "failed" for name in failed)
    for name in back:
        assert edges[name] <= set(back), f"{name} goes back, so must {edges[name] - set(back)}"
    reachable, frontier = set(failed), list(failed)
    while frontier:
        for other in edges[frontier.pop()]:
            if other not in reachable:
                reachable.add(other)
                frontier.append(other)
    assert set(back) == reachable, "nothing is rolled back without a chain back to a failure"
    for app in runbook.applications:
        for dep in app.depends_on:
            if dep in back:
                assert app.name in back, f"{app.name} depends on {dep}, which goes back"


def test_the_demo_under_roll_back_affected_and_the_default():
    affected = DEMO.model_copy(update={"on_failure": "roll_back_affected"})
    assert affected_by(affected, ["gis"]) == {"gis": "failed", "belastingen": "depends on gis", "portaal": "depends on gis"}
    assert affected_by(affected, ["portaal"]) == {"portaal": "failed"}
    assert set(affected_by(DEMO, ["portaal"])) == {a.name for a in DEMO.applications}, "roll_back_all, the default"


def test_applications_sharing_a_database_move_together():
    data = DEMO.model_dump(by_alias=True)
    data["on_failure"] = "roll_back_affected"
    gis = next(a for a in data["applications"] if a["name"] == "gis")
    gis["databases"][0]["shared_with"] = ["zaaksysteem"]
    runbook = Runbook.model_validate(data)
    assert groups_of(runbook)["zaaksysteem"] == ["gis"]
    back = affected_by(runbook, ["zaaksysteem"])
    assert back["gis"] == "shares database gis with zaaksysteem"
    assert "portaal" in back and "burgerzaken" not in back
