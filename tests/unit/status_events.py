"""Synthetic Prefect events in the API's JSON shape, for the status page's unit tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2027, 7, 16, 16, 0, tzinfo=UTC)
_ids = itertools.count(1)


def step_event(
    name: str,
    step_id: str,
    phase: str,
    at_s: float,
    run: str = "run-1",
    payload: dict[str, Any] | None = None,
    cutover: str = "gemeente-werkendam",
    task_run: str | None = None,
    flow: str = "cutover",
) -> dict[str, Any]:
    related = [
        {
            "prefect.resource.id": f"prefect.flow-run.{run}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": f"{cutover} {run}",
        },
        {"prefect.resource.id": "prefect.flow.f1", "prefect.resource.role": "flow", "prefect.resource.name": flow},
    ]
    if task_run:
        related.insert(
            1,
            {
                "prefect.resource.id": f"prefect.task-run.{task_run}",
                "prefect.resource.role": "task-run",
                "prefect.resource.name": step_id,
            },
        )
    return {
        "id": f"e{next(_ids)}",
        "occurred": (T0 + timedelta(seconds=at_s)).isoformat(),
        "event": name,
        "resource": {
            "prefect.resource.id": f"cutover.{cutover}.{step_id}",
            "prefect.resource.name": step_id,
            "cutover.name": cutover,
            "cutover.phase": phase,
        },
        "related": related,
        "payload": payload or {},
    }


def flow_run_event(state: str, at_s: float, run: str = "run-1", pause_key: str | None = None) -> dict[str, Any]:
    return {
        "id": f"e{next(_ids)}",
        "occurred": (T0 + timedelta(seconds=at_s)).isoformat(),
        "event": f"prefect.flow-run.{state}",
        "resource": {
            "prefect.resource.id": f"prefect.flow-run.{run}",
            "prefect.resource.name": run,
            "prefect.state-name": state,
            "prefect.state-type": state.upper(),
        },
        "related": [
            {"prefect.resource.id": "prefect.flow.f1", "prefect.resource.role": "flow", "prefect.resource.name": "cutover"}
        ],
        "payload": {"validated_state": {"state_details": {"pause_key": pause_key} if pause_key else {}}},
    }


def step_done(
    step_id: str, phase: str, start_s: float, seconds: float, run: str = "run-1", **figures: Any
) -> list[dict[str, Any]]:
    return [
        step_event("cutover.step.started", step_id, phase, start_s, run),
        step_event("cutover.step.completed", step_id, phase, start_s + seconds, run, {"duration_s": seconds, **figures}),
    ]
