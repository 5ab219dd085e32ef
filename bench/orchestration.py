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

The figure quoted is the median and p95 of each, over all steps of all runs.

    .venv/bin/cutover sandbox up --dir .sandbox-bench
    .venv/bin/python bench/orchestration.py --dir .sandbox-bench [--runs 3] [--apps 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cpu
import flow_runs
import measure
import sandbox_tools

from cutover.plan import build_plan
from cutover.runbook import load_runbook
from cutover.sandbox.reset import reset


def synthetic_runbook(apps: int) -> str:
    """The demo runbook's sites, DNS and gate, with ``apps`` small applications."""
    demo = (flow_runs.PROJECT / "runbooks" / "demo.yaml").read_text()
    head = demo[: demo.index("\napplications:\n") + 1].replace("cutover: gemeente-werkendam", "cutover: orchestration-bench")
    url = "http://127.0.0.2:${CUTOVER_APP_BURGERZAKEN_PORT:-18081}/health"
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
    handovers: list[float] = []
    durations: list[float] = []
    by_kind: dict[str, list[float]] = {}  # hand-overs by the kind of step that waited
    cpu_s: dict[str, list[float]] = {}  # CPU seconds per run, by process
    with tempfile.TemporaryDirectory(dir=info.dir) as tmp:
        path = Path(tmp) / "orchestration-bench.yaml"
        path.write_text(synthetic_runbook(args.apps))
        import os

        os.environ.update(info.environment())
        plan = build_plan(load_runbook(path))
        with flow_runs.prefect_stack(info) as stack:
            api_url = stack.api_url

            def run() -> dict[str, Any]:
                with cpu.CpuWatch(stack.pids) as watch:
                    run_id = flow_runs.run_cutover(api_url, str(path))
                for name, seconds in watch.used().items():
                    cpu_s.setdefault(name, []).append(seconds)
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
                        by_kind.setdefault(ran.kind, []).append(mine_h[-1])
                handovers.extend(mine_h)
                durations.extend(mine_d)
                return {
                    "steps": len(plan.steps),
                    "handover_median_ms": round(statistics.median(mine_h) * 1000, 1),
                    "duration_median_ms": round(statistics.median(mine_d) * 1000, 1),
                }

            series = measure.interleave(
                {f"cutover run, {args.apps} apps": run}, runs=args.runs, prepare=lambda _name: reset(info), max_load=args.max_load
            )
    figures = {
        "steps_per_run": len(plan.steps),
        "handover_ms": {
            "median": round(statistics.median(handovers) * 1000, 1),
            "p95": round(percentile(handovers, 0.95) * 1000, 1),
        },
        "duration_ms": {
            "median": round(statistics.median(durations) * 1000, 1),
            "p95": round(percentile(durations, 0.95) * 1000, 1),
        },
    }
    figures["handover_ms_by_kind"] = {
        kind: {"n": len(v), "median": round(statistics.median(v) * 1000, 1), "p95": round(percentile(v, 0.95) * 1000, 1)}
        for kind, v in sorted(by_kind.items())
    }
    figures["cpu_ms_per_step"] = {
        name: round(statistics.median(seconds) / len(plan.steps) * 1000, 1) for name, seconds in cpu_s.items()
    }
    per_step = series[next(iter(series))].median / len(plan.steps) * 1000
    print(f"\nper step over {len(handovers)} hand-overs and {len(durations)} steps of {args.runs} runs:")
    print(f"  hand-over  median {figures['handover_ms']['median']:8.1f} ms   p95 {figures['handover_ms']['p95']:8.1f} ms")
    print(f"  duration   median {figures['duration_ms']['median']:8.1f} ms   p95 {figures['duration_ms']['p95']:8.1f} ms")
    print(f"  whole run / steps: {per_step:.1f} ms per step (median run)")
    for kind, f in figures["handover_ms_by_kind"].items():
        print(f"  hand-over to {kind:<14} n={f['n']:<4} median {f['median']:8.1f} ms   p95 {f['p95']:8.1f} ms")
    for name, ms in figures["cpu_ms_per_step"].items():
        print(f"  CPU of the {name}: {ms:.1f} ms per step (median run)")
    measure.report("orchestration", series, [], notes={**figures, "apps": args.apps, "run_ms_per_step": round(per_step, 1)})


if __name__ == "__main__":
    main()
