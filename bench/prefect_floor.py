"""Prefect alone, for the orchestration benchmark: a plain Prefect flow with one task run
per step of a plan, the same dependencies, each task an HTTP GET of ``URL``, results
persisted (as Cutover's are, so a rerun can skip them). No Cutover code runs in it: what
its task runs cost is what any step that is a Prefect task run costs on that server.

    PREFECT_API_URL=... python bench/prefect_floor.py GRAPH.json URL

``GRAPH.json``: ``{"step id": ["step id it waits for", ...], ...}``, in a topological
order (a plan's ``steps`` are). Prints the flow run id.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
from prefect import flow, task
from prefect.context import get_run_context
from prefect.futures import wait

CLIENT = httpx.Client(timeout=10)  # one for every task: a client costs ~30 ms of CPU to make


@task(persist_result=True)
def step(step_id: str, url: str) -> int:
    # the step id among the inputs: Prefect's default cache key is the inputs within the
    # run, and steps with the same inputs would be Cached instead of run
    return CLIENT.get(url).raise_for_status().status_code


@flow(name="prefect-floor", persist_result=True)
def floor(graph: dict[str, list[str]], url: str) -> str:
    futures = {}
    for step_id in graph:  # in the plan's topological order, as written
        futures[step_id] = step.with_options(task_run_name=step_id).submit(
            step_id, url, wait_for=[futures[d] for d in graph[step_id]]
        )
    done = wait(list(futures.values()))
    if done.not_done:
        raise RuntimeError(f"{len(done.not_done)} task runs did not finish")
    for future in futures.values():
        future.result()
    return str(get_run_context().flow_run.id)


if __name__ == "__main__":
    graph_file, url = sys.argv[1], sys.argv[2]
    print(floor(json.loads(Path(graph_file).read_text()), url))
