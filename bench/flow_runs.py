"""Cutover runs from the deployment, for the benchmarks: a local Prefect server, the
deployments and a worker with the sandbox's environment (started once, stopped at the end),
runs whose go/no-go gate is answered as soon as it asks, and their task runs' timings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from cutover.sandbox.info import SandboxInfo

PROJECT = Path(__file__).resolve().parent.parent
DEPLOYMENT = "cutover/cutover"


@dataclass(frozen=True)
class StepRun:
    name: str  # the step id
    start: float  # epoch seconds
    end: float

    @property
    def kind(self) -> str:
        """``burgerzaken/export/bzk`` -> ``export``; ``gate/go-no-go`` -> ``gate``."""
        parts = self.name.split("/")
        return "gate" if parts[0] == "gate" else (parts[1] if len(parts) > 1 else parts[0])


@dataclass(frozen=True)
class Stack:
    api_url: str
    pids: dict[str, int]  # the server's and the worker's (its flow runs are its children)


@contextmanager
def prefect_stack(info: SandboxInfo, database_url: str | None = None) -> Iterator[Stack]:
    """A Prefect server (home ``DIR/prefect-bench``, its SQLite database there; with
    ``database_url``, home ``DIR/prefect-bench-pg`` and that PostgreSQL database), the
    deployments and a worker, for the ``with`` block. Everything started is stopped after."""
    from cutover.orchestration.deployments import apply_deployments
    from cutover.orchestration.server import start_server, stop_server
    from cutover.orchestration.worker import start_worker, stop_worker

    home = Path(info.dir).absolute() / ("prefect-bench-pg" if database_url else "prefect-bench")
    try:
        server = start_server(home, database_url=database_url)
        apply_deployments(server.api_url, project_dir=PROJECT, home=server.home)
        worker = start_worker(server.home, server.api_url, env=info.environment(), project_dir=PROJECT)
        yield Stack(server.api_url, {"prefect server": server.pid, "worker and flow run": worker.pid})
    finally:
        stop_worker(home)
        stop_server(home)


def run_cutover(api_url: str, runbook: str) -> str:
    """A run of the cutover deployment for ``runbook`` (a path the worker can read), its gate
    approved at once; returns the flow run id once it ended; raises unless it completed."""
    from cutover.orchestration.follow import answer_gate, follow_run, start_run

    # a rehearsal: the demo's window is a date in the calendar, not now
    run_id = start_run(api_url, DEPLOYMENT, {"runbook": runbook, "outside_window": True})

    def on_pause(flow_run_id: str, key: str) -> None:
        if key.startswith("gate-"):
            answer_gate(api_url, flow_run_id, True, "bench", "benchmark: approved at once")

    outcome = follow_run(api_url, run_id, out=lambda _line: None, on_pause=on_pause)
    if not outcome.ok:
        raise RuntimeError(f"the cutover run {run_id} did not complete: {outcome.state_name} {outcome.message}")
    return run_id


def step_runs(api_url: str, flow_run_id: str) -> list[StepRun]:
    """The finished task runs of the flow run, with their start and end times."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    from cutover.orchestration.api import prefect_client

    found: list[Any] = []
    with prefect_client(api_url) as client:
        while True:
            page = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(flow_run_id)])),
                limit=200,
                offset=len(found),
            )
            found += page
            if len(page) < 200:
                break
    return [StepRun(r.name, r.start_time.timestamp(), r.end_time.timestamp()) for r in found if r.start_time and r.end_time]


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``(start, end)`` intervals."""
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total
