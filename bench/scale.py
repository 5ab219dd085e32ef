"""Scale: a generated estate of N applications (default 300) with a small database each, a few
shared registries that most applications depend on, through the real cutover flow from its
deployment, on the production topology of bench/topology.py (server on PostgreSQL, a step
worker per site, ``placement``) or on the embedded default (``--embedded``: SQLite, one
worker, every step in the flow run).

Per step, from the task runs (as bench/orchestration.py): *hand-over*, the end of the last
step it waits for to its own start, and *duration*, its start to its end; median and p95.
Besides: the whole run, how responsive the API stayed (a probe every 5 s: /health and a
task-run count), and the CPU each process used (server, control worker and its flow run,
step workers, PostgreSQL), which names the bottleneck.

    .venv/bin/cutover sandbox up --dir .sandbox-topology
    .venv/bin/python bench/scale.py --dir .sandbox-topology [--apps 300] [--embedded] [--json FILE]

The source databases (``scale_*``) are created from a template in the onprem cluster and
dropped again at the end, as are the targets (``cutover sandbox reset``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cpu
import psycopg
import sandbox_tools
import topology
from psycopg import sql

PROJECT = Path(__file__).resolve().parent.parent
REGISTRIES = ["brp", "bag", "hr", "bgt", "wkpb"]  # persons, addresses, businesses, topography, public restrictions


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def database_names(apps: int) -> list[str]:
    return [f"scale_reg_{r}" for r in REGISTRIES] + [f"scale_app{i:03d}" for i in range(apps - len(REGISTRIES))]


def create_sources(info: Any, names: list[str], rows: int) -> None:
    """One template with a table of ``rows`` rows; every source database a copy of it."""
    dsn = sandbox_tools.pg_endpoint(info.onprem)
    conninfo = f"host={dsn.host} port={dsn.port} user={dsn.user} password={dsn.password} dbname=postgres sslmode=disable"
    with psycopg.connect(conninfo, autocommit=True) as admin:
        drop_sources(admin, names)
        admin.execute("drop database if exists scale_template with (force)")
        admin.execute("create database scale_template")
        with psycopg.connect(conninfo.replace("dbname=postgres", "dbname=scale_template"), autocommit=True) as t:
            t.execute("create table records (id int primary key, payload text not null, at timestamptz not null default now())")
            t.execute("insert into records (id, payload) select i, md5(i::text) from generate_series(1, %s) i", (rows,))
        for name in names:
            admin.execute(sql.SQL("create database {} template scale_template").format(sql.Identifier(name)))


def drop_sources(admin: psycopg.Connection, names: list[str]) -> None:
    for name in names:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def estate_runbook(apps: int, placement: bool, seed: int = 16) -> str:
    """The demo's sites, DNS and gate (approving itself); ``apps`` applications, the first
    few being the registries; each other application depends on one to three of them."""
    demo = (PROJECT / "runbooks" / "demo.yaml").read_text()
    head = demo[: demo.index("\napplications:\n") + 1].replace("cutover: gemeente-werkendam", f"cutover: scale-{apps}")
    head = head.replace("    applications: all\n", "    applications: all\n    auto_approve: true\n", 1)
    rng = random.Random(seed)
    out = [head, "applications:\n"]
    for i, db in enumerate(database_names(apps)):
        name = db.removeprefix("scale_").replace("_", "-")
        out.append(f"  - name: {name}\n")
        if i >= len(REGISTRIES):
            weights = [8, 6, 3, 2, 1]  # most depend on the persons and addresses registries
            deps = sorted({rng.choices(REGISTRIES, weights)[0] for _ in range(rng.randint(1, 3))})
            out.append(f"    depends_on: [{', '.join('reg-' + d for d in deps)}]\n")
        out.append(f"    databases:\n      - {{name: {db}, from: onprem, to: cloud, method: stream}}\n")
        out.append(
            f'    smoke:\n      - sql: {{site: cloud, database: {db}, query: "select count(*) > 0 from records", expect: true}}\n'
        )
    if placement:
        out.append("\nplacement: {}\n")
    return "".join(out)


class ApiProbe:
    """Every 5 s: the latency of /health and of a count of the run's task runs."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.health_ms: list[float] = []
        self.count_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import httpx

        with httpx.Client(base_url=self.api_url, timeout=60) as client:
            while not self._stop.wait(5):
                t = time.perf_counter()
                client.get("/health")
                self.health_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                client.post("/task_runs/count", json={})
                self.count_ms.append((time.perf_counter() - t) * 1000)

    def __enter__(self) -> ApiProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, Any]:
        def pair(values: list[float]) -> dict[str, float]:
            if not values:
                return {}
            return {"median": round(statistics.median(values), 1), "max": round(max(values), 1), "samples": len(values)}

        return {"health_ms": pair(self.health_ms), "task_run_count_ms": pair(self.count_ms)}


def wait_final(api_url: str, run_id: str, timeout_s: float) -> Any:
    """The flow run's final state, polled every 5 s (``cutover run`` reads every task run each
    second to print them: on 2,000 steps that would be a load of its own)."""
    from uuid import UUID

    from cutover.orchestration.api import prefect_client

    deadline = time.monotonic() + timeout_s
    with prefect_client(api_url) as client:
        while True:
            state = client.read_flow_run(UUID(run_id)).state
            if state is not None and state.is_final():
                return state
            if time.monotonic() > deadline:
                raise SystemExit(f"the run {run_id} did not end within {timeout_s:.0f}s")
            time.sleep(5)


def step_figures(api_url: str, run_id: str, plan: Any) -> dict[str, Any]:
    runs = {r.name: r for r in topology.task_runs(api_url, run_id)}
    missing = [sid for sid in plan.steps if sid not in runs or not runs[sid].start_time or not runs[sid].end_time]
    handovers, durations = [], []
    for sid, step in plan.steps.items():
        if sid in missing:
            continue
        run = runs[sid]
        durations.append((run.end_time - run.start_time).total_seconds())
        deps = [runs[d] for d in step.depends_on if d in runs and runs[d].end_time]
        if deps:
            handovers.append((run.start_time - max(d.end_time for d in deps)).total_seconds())
    first = min(r.start_time for r in runs.values() if r.start_time)
    last = max(r.end_time for r in runs.values() if r.end_time)

    def ms(values: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(values) * 1000, 1), "p95": round(percentile(values, 0.95) * 1000, 1)}

    by_phase: dict[str, list[float]] = {}
    for sid, step in plan.steps.items():
        if sid not in missing:
            by_phase.setdefault(step.phase, []).append((runs[sid].end_time - runs[sid].start_time).total_seconds())
    return {
        "steps_planned": len(plan.steps),
        "steps_without_times": len(missing),
        "task_runs": len(runs),
        "handover_ms": ms(handovers),
        "duration_ms": ms(durations),
        "duration_ms_by_phase": {phase: ms(v) for phase, v in sorted(by_phase.items())},
        "first_step_to_last_s": round((last - first).total_seconds(), 1),
        "step_seconds_total": round(sum(durations), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".sandbox-topology")
    parser.add_argument("--apps", type=int, default=300)
    parser.add_argument("--rows", type=int, default=200, help="rows in each application's database")
    parser.add_argument("--embedded", action="store_true", help="the embedded default instead of the production topology")
    parser.add_argument("--timeout", type=float, default=5400)
    parser.add_argument("--step-limit", type=int, default=None, help="steps each step worker runs at once (default: its own)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from cutover.orchestration.follow import start_run
    from cutover.plan import build_plan
    from cutover.runbook import parse_runbook
    from cutover.sandbox.reset import reset

    info = sandbox_tools.load(args.dir)
    root = Path(info.dir).absolute() / ("scale-embedded" if args.embedded else "topology")
    root.mkdir(exist_ok=True)
    reset(info)
    names = database_names(args.apps)
    figures: dict[str, Any] = {
        "apps": args.apps,
        "rows_per_db": args.rows,
        "topology": "embedded" if args.embedded else "production",
    }
    t0 = time.monotonic()
    create_sources(info, names, args.rows)
    figures["sources_created_s"] = round(time.monotonic() - t0, 1)
    runbook = root / f"scale-{args.apps}.yaml"
    text = estate_runbook(args.apps, placement=not args.embedded)
    runbook.write_text(text)
    t = time.perf_counter()
    plan = build_plan(parse_runbook(text, str(runbook), info.environment()))
    figures["plan_s"] = round(time.perf_counter() - t, 3)

    def run(api_url: str, roots: dict[str, int]) -> None:
        with cpu.CpuWatch(roots) as watch, ApiProbe(api_url) as probe:
            started = time.monotonic()
            run_id = start_run(api_url, topology.DEPLOYMENT, {"runbook": str(runbook), "outside_window": True})
            state = wait_final(api_url, run_id, args.timeout)
            figures["run_s"] = round(time.monotonic() - started, 1)
        figures["flow_run_id"] = run_id
        figures["state"] = state.name
        figures["message"] = (state.message or "")[:300]
        figures["cpu_s"] = watch.used()
        figures["api"] = probe.figures()
        time.sleep(3)
        figures.update(step_figures(api_url, run_id, plan))

    try:
        if args.embedded:
            from cutover.orchestration.deployments import apply_deployments
            from cutover.orchestration.server import start_server, stop_server
            from cutover.orchestration.worker import start_worker, stop_worker

            home = root / "prefect"
            try:
                server = start_server(home)
                apply_deployments(server.api_url, project_dir=PROJECT, home=server.home)
                worker = start_worker(server.home, server.api_url, env=info.environment(), project_dir=PROJECT)
                run(
                    server.api_url,
                    {
                        "server": server.pid,
                        "worker+flow run": worker.pid,
                        "postgres onprem": info.onprem.pid or 0,
                        "postgres cloud": info.cloud.pid or 0,
                        "sshd (cloud host: pg_restore)": info.ssh.pid or 0,
                    },
                )
            finally:
                stop_worker(home)
                stop_server(home)
        else:
            with topology.production_topology(info, root, runbook, figures, step_limit=args.step_limit) as top:
                from cutover.orchestration.server import running_server
                from cutover.orchestration.worker import running_worker

                server = running_server(top.home)
                worker = running_worker(top.home)
                assert server is not None and worker is not None
                prefect_pg = topology.prefect_cluster_pid(root)
                run(
                    top.api_url,
                    {
                        "server": server.pid,
                        "control worker+flow run": worker.pid,
                        **{f"step worker {site}": pid for site, pid in top.workers.items()},
                        "postgres prefect": prefect_pg,
                        "postgres onprem": info.onprem.pid or 0,
                        "postgres cloud": info.cloud.pid or 0,
                        "sshd (cloud host: pg_restore)": info.ssh.pid or 0,
                    },
                )
    finally:
        dsn = sandbox_tools.pg_endpoint(info.onprem)
        with psycopg.connect(
            f"host={dsn.host} port={dsn.port} user={dsn.user} password={dsn.password} dbname=postgres sslmode=disable",
            autocommit=True,
        ) as admin:
            drop_sources(admin, [*names, "scale_template"])
        reset(info)
    line = json.dumps(figures, sort_keys=True)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return 0 if figures.get("state") == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
