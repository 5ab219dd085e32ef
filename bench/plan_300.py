"""Benchmark: `cutover plan --format json` on a generated estate of 300 applications
(2 databases each, chained dependencies).

Measures, over several runs, the planning itself (load + plan, in process) and the whole
command as a user runs it (process start included), and beside it the cost of a bare
`python -c pass` and of `python -c "import prefect"` measured in the same run, so the
figures can be read as ratios on a noisy machine.

    .venv/bin/python bench/plan_300.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cutover.plan import build_plan
from cutover.runbook import parse_runbook
from cutover.runbook.synthetic import estate_yaml


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    text = estate_yaml(300, 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "estate300.yaml"
        path.write_text(text)
        inproc, steps = [], 0
        for _ in range(args.runs):
            start = time.perf_counter()
            plan = build_plan(parse_runbook(text, str(path), {}))
            inproc.append(time.perf_counter() - start)
            steps = len(plan.steps)
        planning = []
        for _ in range(args.runs):
            runbook = parse_runbook(text, str(path), {})
            start = time.perf_counter()
            build_plan(runbook)
            planning.append(time.perf_counter() - start)
        command = [timed([sys.executable, "-m", "cutover", "plan", "--format", "json", str(path)]) for _ in range(args.runs)]
        bare = [timed([sys.executable, "-c", "pass"]) for _ in range(args.runs)]
        prefect = [timed([sys.executable, "-c", "import prefect"]) for _ in range(3)]
    med = statistics.median
    print(f"estate: 300 applications, 600 databases, {steps} steps, {args.runs} runs, medians")
    print(f"  build_plan only            {med(planning) * 1000:8.1f} ms")
    print(f"  load + validate + plan     {med(inproc) * 1000:8.1f} ms")
    print(f"  whole command (process)    {med(command) * 1000:8.1f} ms")
    print(f"  python -c pass             {med(bare) * 1000:8.1f} ms   (command / bare = {med(command) / med(bare):.1f}x)")
    print(
        f"  python -c 'import prefect' {med(prefect) * 1000:8.1f} ms   (command / prefect import = {med(command) / med(prefect):.2f}x)"
    )
    ok = med(planning) < 1.0 and med(command) < 2.0
    print("targets: planning < 1 s, whole command < 2 s:", "met" if ok else "NOT MET")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
