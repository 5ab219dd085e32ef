"""Benchmark: how long a freed per-host slot stands idle before a waiting step takes it,
with nothing else writing to the server: the floor under the copy steps' hand-overs that
bench/window.py sees (docs/benchmarks.md, "The window").

A local Prefect server of cutover's (SQLite, config/prefect-local.toml) in a temporary
home; a global concurrency limit of 2 on two names, as a copy step takes a dump and a
restore slot; one flow run of ``--tasks`` tasks that hold both for ``--hold`` seconds. Prints
when each task got and freed its slots and the gaps between a release and the next take.

    .venv/bin/python bench/slot_handover.py [--tasks 7] [--hold 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=7)
    parser.add_argument("--hold", type=float, default=4.0)
    args = parser.parse_args()

    from cutover.orchestration.server import start_server, stop_server

    home = Path(tempfile.mkdtemp(prefix="slot-handover-"))
    server = start_server(home)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        from prefect import flow, task
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.concurrency.sync import concurrency

        names = ["bench-dump", "bench-restore"]
        with get_client(sync_client=True) as client:
            for name in names:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=2))
        events: list[tuple[float, str, int]] = []
        lock = threading.Lock()

        @task
        def hold(i: int) -> None:
            with concurrency(names, occupy=1, lease_duration=60):  # as tasks/steps.py takes a step's slots
                with lock:
                    events.append((time.monotonic(), "got", i))
                time.sleep(args.hold)
                with lock:
                    events.append((time.monotonic(), "freed", i))

        @flow
        def holders() -> None:
            for future in [hold.submit(i) for i in range(args.tasks)]:
                future.result()

        start = time.monotonic()
        holders()
        for at, what, i in sorted(events):
            print(f"{at - start:7.2f} s  {what:<5} task {i}")
        freed = sorted(at for at, what, _ in events if what == "freed")
        taken = sorted(at for at, what, _ in events if what == "got")[2:]  # the first two find free slots
        gaps = [round(t - f, 2) for t, f in zip(taken, freed, strict=False)]
        print(f"hand-overs: {gaps}; median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s")
    finally:
        stop_server(home)


if __name__ == "__main__":
    main()
