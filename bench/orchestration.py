"""Benchmark: what the orchestration costs per step, on a runbook of many small applications.

A runbook of N applications (``--apps``, default 40) of the sandbox's sites, each with one
freeze action and one smoke test, both an HTTP GET of an old-site health page (a few
milliseconds of work), no database and no DNS record: about 5 steps per application, so
what a step costs here is the orchestration around it. Runs from the deployment, gate
approved at once, as ``cutover run`` does. Per step, from the task runs:

- *hand-over*: from the end of the last step it waits for to its own start (scheduling,
  slot and state round trips);
- *duration*: its own start to end (the task wrapper, events, logs and the few ms of work);
- *CPU per step*: the CPU the Prefect server and the worker (with its flow run) used in a
  run, over its steps: where the time goes when hand-overs are slow.

Interleaved with it, the same figures of Prefect alone (``prefect_floor.py``): a plain
flow with one task run per step of the same plan, the same dependencies, each an HTTP GET
of the same page, results persisted, through the same server. What a bare task run costs
there is the floor under any step that is one.

The figure quoted is the median and p95 of each, over all steps of all runs.

    .venv/bin/cutover sandbox up --dir .sandbox-bench
    .venv/bin/python bench/orchestration.py --dir .sandbox-bench [--runs 3] [--apps 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cpu
import flow_runs
import measure
import sandbox_tools

from cutover.orchestration.worker import worker_environment
from cutover.plan import build_plan
from cutover.runbook import load_runbook
from cutover.sandbox.reset import reset

HEALTH_PORT, HEALTH_PORT_DEFAULT = "CUTOVER_APP_BURGERZAKEN_PORT", "18081"


def synthetic_runbook(apps: int) -> str:
    """The demo runbook's sites, DNS and gate, with ``apps`` small applications."""
    demo = (flow_runs.PROJECT / "runbooks" / "demo.yaml").read_text()
    head = demo[: demo.index("\napplications:\n") + 1].replace("cutover: gemeente-werkendam", "cutover: orchestration-bench")
    url = f"http://127.0.0.2:${{{HEALTH_PORT}:-{HEALTH_PORT_DEFAULT}}}/health"
    body = "".join(
        f"  - name: app{i:03d}\n"
        f'    freeze:\n      - http: {{url: "{url}", expect_status: 200}}\n'
        f'    smoke:\n      - http: {{url: "{url}", expect_status: 200}}\n'
        for i in range(apps)
    )
    return head + "applications:\n" + body


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".sandbox-bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--apps", type=int, default=40)
    parser.add_argument("--max-load", type=float, default=None)
    args = parser.parse_args()
    measure.quiet_logs()
    info = sandbox_tools.load(args.dir)
    cutover_cmd, floor_cmd = f"cutover run, {args.apps} apps", "Prefect alone, same steps"
    handovers: dict[str, list[float]] = {cutover_cmd: [], floor_cmd: []}
    durations: dict[str, list[float]] = {cutover_cmd: [], floor_cmd: []}
    by_kind: dict[str, list[float]] = {}  # hand-overs by the kind of step that waited (Cutover's)
    cpu_s: dict[str, dict[str, list[float]]] = {cutover_cmd: {}, floor_cmd: {}}  # CPU s per run, by process
    with tempfile.TemporaryDirectory(dir=info.dir) as tmp:
        path = Path(tmp) / "orchestration-bench.yaml"
        path.write_text(synthetic_runbook(args.apps))
        import os

        os.environ.update(info.environment())
        plan = build_plan(load_runbook(path))
        with flow_runs.prefect_stack(info) as stack:
            api_url = stack.api_url

            graph = {step_id: list(planned.depends_on) for step_id, planned in plan.steps.items()}
            graph_file = Path(tmp) / "graph.json"
            graph_file.write_text(json.dumps(graph))
            url = f"http://127.0.0.2:{info.environment().get(HEALTH_PORT, HEALTH_PORT_DEFAULT)}/health"
            floor_env = worker_environment(api_url, Path(info.dir).absolute() / "prefect-bench", {}, flow_runs.PROJECT)

            def timings(command: str, run_id: str) -> dict[str, Any]:
                # Task states reach the API as events, a little after the flow run ended.
                deadline = time.monotonic() + 60
                while True:
                    steps = {s.name: s for s in flow_runs.step_runs(api_url, run_id)}
                    missing = set(plan.steps) - set(steps)
                    if not missing or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                if missing:
                    raise RuntimeError(f"steps without a finished task run: {sorted(missing)[:5]}")
                mine_h, mine_d = [], []
                for step_id, planned in plan.steps.items():
                    ran = steps[step_id]
                    mine_d.append(ran.end - ran.start)
                    if planned.depends_on:
                        mine_h.append(ran.start - max(steps[d].end for d in planned.depends_on))
                        if command == cutover_cmd:
                            by_kind.setdefault(ran.kind, []).append(mine_h[-1])
                handovers[command].extend(mine_h)
                durations[command].extend(mine_d)
                return {
                    "steps": len(plan.steps),
                    "handover_median_ms": round(statistics.median(mine_h) * 1000, 1),
                    "duration_median_ms": round(statistics.median(mine_d) * 1000, 1),
                }

            def account(command: str, watch: cpu.CpuWatch) -> None:
                for name, seconds in watch.used().items():
                    cpu_s[command].setdefault(name, []).append(seconds)

            def run_cutover() -> dict[str, Any]:
                with cpu.CpuWatch(stack.pids) as watch:
                    run_id = flow_runs.run_cutover(api_url, str(path))
                account(cutover_cmd, watch)
                return timings(cutover_cmd, run_id)

            def run_floor() -> dict[str, Any]:
                console = Path(tmp) / "prefect-floor.log"  # its flow run's log lines, for a failure
                with cpu.CpuWatch({"prefect server": stack.pids["prefect server"]}) as watch, console.open("w") as err:
                    flow = subprocess.Popen(
                        [sys.executable, str(Path(__file__).with_name("prefect_floor.py")), str(graph_file), url],
                        env=floor_env,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                    watch.follow("the flow run", flow.pid)
                    out, _ = flow.communicate()
                if flow.returncode != 0:
                    raise RuntimeError(f"the plain Prefect flow exited {flow.returncode}: {console.read_text()[-2000:]}")
                account(floor_cmd, watch)
                return timings(floor_cmd, out.strip().splitlines()[-1])

            series = measure.interleave(
                {cutover_cmd: run_cutover, floor_cmd: run_floor},
                runs=args.runs,
                prepare=lambda _name: reset(info),
                max_load=args.max_load,
            )
    steps = len(plan.steps)
    figures: dict[str, Any] = {"steps_per_run": steps}
    print(f"\nper step, over every step of {args.runs} runs each:")
    for command in (cutover_cmd, floor_cmd):
        h, d = handovers[command], durations[command]
        mine = figures[command] = {
            "handover_ms": {"median": round(statistics.median(h) * 1000, 1), "p95": round(percentile(h, 0.95) * 1000, 1)},
            "duration_ms": {"median": round(statistics.median(d) * 1000, 1), "p95": round(percentile(d, 0.95) * 1000, 1)},
            "run_ms_per_step": round(series[command].median / steps * 1000, 1),
            "cpu_ms_per_step": {
                name: round(statistics.median(seconds) / steps * 1000, 1) for name, seconds in cpu_s[command].items()
            },
        }
        print(f"  {command}:")
        print(f"    hand-over  median {mine['handover_ms']['median']:8.1f} ms   p95 {mine['handover_ms']['p95']:8.1f} ms")
        print(f"    duration   median {mine['duration_ms']['median']:8.1f} ms   p95 {mine['duration_ms']['p95']:8.1f} ms")
        print(f"    whole run / steps: {mine['run_ms_per_step']:.1f} ms per step (median run)")
        for name, ms in mine["cpu_ms_per_step"].items():
            print(f"    CPU of {name}: {ms:.1f} ms per step (median run)")
    figures["handover_ms_by_kind"] = {
        kind: {"n": len(v), "median": round(statistics.median(v) * 1000, 1), "p95": round(percentile(v, 0.95) * 1000, 1)}
        for kind, v in sorted(by_kind.items())
    }
    for kind, f in figures["handover_ms_by_kind"].items():
        print(f"  {cutover_cmd}, hand-over to {kind:<14} n={f['n']:<4} median {f['median']:8.1f} ms   p95 {f['p95']:8.1f} ms")
    measure.report("orchestration", series, [(cutover_cmd, floor_cmd)], notes={**figures, "apps": args.apps})


if __name__ == "__main__":
    main()
