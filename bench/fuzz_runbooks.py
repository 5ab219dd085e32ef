"""Long runbook fuzzing job: 10,000+ hostile and mutated runbooks through the loader and
planner, each in a worker process with a 1 GiB address space limit and a 10 s wall-clock
limit (see ``tests/runbook_fuzz.py`` for the strategies and the property).

Every case must end as "valid" (it plans and renders) or "refused" (one positioned line per
problem); a traceback, a broken property, the memory limit or the time limit is a failure,
printed with its case and saved under bench/results/. Prints the figures to record in
docs/security.md.

    .venv/bin/python bench/fuzz_runbooks.py [--cases 10000] [--jobs 1] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.runbook_fuzz import CASE_SECONDS, WORKER_MEMORY, CaseFailed, FuzzWorker, runbooks  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (the machine is shared: keep it small)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run")
    args = parser.parse_args()
    run_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)

    local = threading.local()
    workers: list[FuzzWorker] = []
    lock = threading.Lock()
    verdicts: dict[str, int] = {}
    seconds: list[float] = []
    failures: list[tuple[str, str]] = []
    peak_rss = 0

    def worker() -> FuzzWorker:
        if not hasattr(local, "worker"):
            local.worker = FuzzWorker()
            with lock:
                workers.append(local.worker)
        return local.worker

    per_job = -(-args.cases // args.jobs)

    def job(number: int) -> None:
        """One worker's share of the cases, from its own seed (run seed + job number)."""

        # generation only: no shrinking (a failure is kept whole), no example database, and
        # a failing case does not stop the run
        @seed(run_seed + number)
        @settings(
            max_examples=per_job, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
        )
        @given(runbooks())
        def one_case(text: str) -> None:
            nonlocal peak_rss
            try:
                outcome = worker().run(text)
            except CaseFailed as exc:
                with lock:
                    failures.append((text, str(exc)))
                return
            with lock:
                verdicts[outcome.verdict] = verdicts.get(outcome.verdict, 0) + 1
                seconds.append(outcome.seconds)
                peak_rss = max(peak_rss, outcome.max_rss_mib)

        one_case()

    started = time.perf_counter()
    threads = [threading.Thread(target=job, args=(i,)) for i in range(args.jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for w in workers:
        w.close()

    total = sum(verdicts.values()) + len(failures)
    print(f"seed {run_seed}; {args.jobs} worker(s), each limited to {WORKER_MEMORY >> 20} MiB and {CASE_SECONDS:g} s per case")
    print(
        f"{total} cases in {elapsed:.0f} s: {verdicts.get('valid', 0)} valid, {verdicts.get('refused', 0)} refused, {len(failures)} failed"
    )
    if seconds:
        ordered = sorted(seconds)
        print(
            f"per case: median {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {ordered[int(len(ordered) * 0.99)] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms; "
            f"worker peak RSS {peak_rss} MiB"
        )
    if failures:
        RESULTS.mkdir(parents=True, exist_ok=True)
        for i, (text, error) in enumerate(failures[:20]):
            path = RESULTS / f"fuzz-failure-{run_seed}-{i}.yaml"
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            print(f"\nFAILED ({path}):\n{error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
