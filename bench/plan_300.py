"""Benchmark: `cutover plan --format json` on a generated estate of 300 applications
(2 databases each, chained dependencies).

Measures, interleaved over several runs, the planning itself (``build_plan``, in process),
load + validate + plan (in process), and the whole command as a user runs it (process start
included), and beside it a bare ``python -c pass``, so the figures can be read as ratios on a
noisy machine. Target (issue 10): a 300-application runbook plans in under 0.5 s.

    .venv/bin/python bench/plan_300.py [--runs 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import measure

from cutover.plan import build_plan
from cutover.runbook import parse_runbook
from cutover.runbook.synthetic import estate_yaml

TARGET_S = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    text = estate_yaml(300, 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "estate300.yaml"
        path.write_text(text)
        parsed = parse_runbook(text, str(path), {})
        steps = len(build_plan(parsed).steps)

        def plan_only() -> None:
            build_plan(parsed)

        def load_and_plan() -> None:
            build_plan(parse_runbook(text, str(path), {}))

        def command() -> None:
            subprocess.run(
                [sys.executable, "-m", "cutover", "plan", "--format", "json", str(path)], check=True, stdout=subprocess.DEVNULL
            )

        def bare() -> None:
            subprocess.run([sys.executable, "-c", "pass"], check=True)

        series = measure.interleave(
            {
                "build_plan": plan_only,
                "load + validate + plan": load_and_plan,
                "cutover plan (process)": command,
                "python -c pass": bare,
            },
            runs=args.runs,
            warmup=1,
        )
    record = measure.report(
        "plan_300",
        series,
        [("cutover plan (process)", "python -c pass")],
        notes={"applications": 300, "databases": 600, "steps": steps, "target_s": TARGET_S},
    )
    planning = record["results"]["load + validate + plan"]["median_s"]
    print(
        f"target: load + plan of 300 applications < {TARGET_S} s: {'met' if planning < TARGET_S else 'NOT MET'} ({planning:.3f} s)"
    )


if __name__ == "__main__":
    main()
