"""The order the cutover flow hands steps out in (flows/cutover_flow.py, Progress).

A step placed at a site goes to that site's step worker, which may miss the end of a step
run by another process: so it is handed out only once every step it waits for has ended,
and a step waiting for one not yet handed out waits too. Without placement, every step is
handed out at once, Prefect's ``wait_for`` orders them. The futures here stand for the
steps' task runs: their states are set by the test, as the steps would end."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from prefect.states import Completed, Pending

from cutover.journal import Attempts
from cutover.plan import build_plan
from cutover.plan.placement import site_of
from cutover.runbook import parse_runbook
from flows import cutover_flow
from tests.unit.runbook_texts import MINIMAL


class StepFuture:
    """What the flow reads of a submitted step: its state."""

    def __init__(self) -> None:
        self.state: Any = Pending()


def progress(text: str) -> cutover_flow.Progress:
    runbook = parse_runbook(text, "placed.yaml", {})
    plan = build_plan(runbook)
    return cutover_flow.Progress("placed.yaml", runbook, plan, Attempts("run-1"), "run-1")


@pytest.fixture
def handed_out(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, bool]]]:
    """Every submitted step, in order, with whether each step it waits for had ended then."""
    seen: list[tuple[str, dict[str, bool]]] = []
    futures: dict[str, StepFuture] = {}

    def submit_step(runbook_path, runbook, step, attempt_key, flow_run_id, run_key, upstream, wait_for, rolled_back):  # type: ignore[no-untyped-def]
        ended = {sid: futures[sid].state.is_final() for sid in [*step.depends_on, *step.reads] if sid in futures}
        seen.append((step.id, ended))
        futures[step.id] = StepFuture()
        return futures[step.id]

    monkeypatch.setattr(cutover_flow, "submit_step", submit_step)
    monkeypatch.setattr(cutover_flow, "HAND_OUT_POLL_S", 0.01)
    return seen


def end_steps_one_by_one(run: cutover_flow.Progress, stop: threading.Event) -> None:
    """End the handed-out steps in the order they were handed out, one every few ms."""
    while not stop.is_set():
        pending = [f for f in list(run.futures.values()) if not f.state.is_final()]
        if pending:
            pending[0].state = Completed()
        time.sleep(0.005)


def test_a_placed_step_is_handed_out_only_after_every_step_it_waits_for_has_ended(handed_out):
    run = progress(MINIMAL + "gates: [{name: go-no-go}]\nplacement: {}\n")
    due = list(run.plan.steps.values())
    stop = threading.Event()
    ender = threading.Thread(target=end_steps_one_by_one, args=(run, stop), daemon=True)
    ender.start()
    try:
        run.hand_out_in_order(due)
    finally:
        stop.set()
        ender.join()

    assert [sid for sid, _ in handed_out] and sorted(sid for sid, _ in handed_out) == sorted(run.plan.steps)
    position = {sid: i for i, (sid, _) in enumerate(handed_out)}
    cross_application = 0
    for sid, ended in handed_out:
        step = run.plan.steps[sid]
        upstream = [*step.depends_on, *step.reads]
        assert all(position[up] < position[sid] for up in upstream), f"{sid} was handed out before a step it waits for"
        if site_of(run.runbook, step) is not None:
            assert all(ended.values()), f"{sid} (placed) was handed out while {[u for u, e in ended.items() if not e]} still ran"
            assert set(ended) == set(upstream)
            cross_application += any(run.plan.steps[up].application not in (None, step.application) for up in upstream)
    assert cross_application, "the runbook must have a placed step waiting for another application's step"


def test_without_placement_every_step_is_handed_out_at_once_in_plan_order(handed_out):
    run = progress(MINIMAL)
    run.hand_out_in_order(list(run.plan.steps.values()))  # no step ever ends: nothing may wait for one
    assert [sid for sid, _ in handed_out] == list(run.plan.steps)
    assert any(not all(ended.values()) for _, ended in handed_out if ended), "steps were handed out before others ended"
