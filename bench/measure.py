"""What every benchmark here shares: interleaved runs, min/median/max, ratios of medians,
the machine and its load, and a JSON record under ``bench/results/``.

The compared commands run in turn (A B C, A B C, ...), never all runs of one then all of
the other: on a shared, noisy machine a slow minute then hits every command alike, and
the ratio of medians stays meaningful. The 1-minute load average is read before each run
and kept beside its time, so a figure taken on a busy machine can be told from one taken
on an idle one.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def load() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def wait_for_quiet(max_load: float, timeout_s: float) -> float:
    """Wait (up to ``timeout_s``) until the 1-minute load is at most ``max_load``; return the
    load when done. A machine shared with others may never get quiet: the figure is then
    taken anyway and the load says so."""
    until = time.monotonic() + timeout_s
    while load() > max_load and time.monotonic() < until:
        time.sleep(5)
    return load()


def machine() -> dict[str, Any]:
    """The machine the figures were taken on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


@dataclass
class Series:
    """The timed runs of one command: seconds, and the load before each run."""

    name: str
    seconds: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def summary(self) -> dict[str, Any]:
        return {
            "runs": len(self.seconds),
            "min_s": round(min(self.seconds), 3),
            "median_s": round(self.median, 3),
            "max_s": round(max(self.seconds), 3),
            "seconds": [round(s, 3) for s in self.seconds],
            "load_before": self.loads,
            **({"per_run": self.extra} if self.extra else {}),
        }


Timed = Callable[[], "dict[str, Any] | None"]


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (every process, the
    kernel's share included; idle and I/O wait not), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuTimeline:
    """The machine's busy CPU seconds (:func:`machine_busy_s`) sampled every ``every_s``
    from a thread, between :meth:`start` and :meth:`stop`, so that the CPU spent in a part
    of a run known only afterwards (the window, from the task runs' times) can be read
    back with :meth:`between`."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []  # (time.time(), busy seconds)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="cpu-timeline", daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append((time.time(), machine_busy_s()))
            if self._done.wait(self.every_s):
                self.samples.append((time.time(), machine_busy_s()))
                return

    def start(self) -> CpuTimeline:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _at(self, when: float) -> float:
        """Busy seconds at ``when``, interpolated between the two samples around it."""
        for (t0, b0), (t1, b1) in itertools.pairwise(self.samples):
            if t0 <= when <= t1:
                return b0 if t1 == t0 else b0 + (b1 - b0) * (when - t0) / (t1 - t0)
        raise ValueError(f"{when} is outside the sampled span")

    def between(self, start: float, end: float) -> float:
        """CPU seconds the whole machine spent busy from ``start`` to ``end`` (time.time())."""
        return self._at(end) - self._at(start)


def interleave(
    commands: Mapping[str, Timed],
    *,
    runs: int,
    prepare: Callable[[str], None] | None = None,
    after: Callable[[str], dict[str, Any]] | None = None,
    warmup: int = 0,
    max_load: float | None = None,
    quiet_timeout_s: float = 120,
    machine_cpu: bool = False,
) -> dict[str, Series]:
    """Run each of ``commands`` ``runs`` times, in turn, after ``warmup`` untimed rounds.

    ``prepare(name)`` runs untimed before each run (removing a previous run's output),
    ``after(name)`` untimed after it; a command, and ``after``, may return a dict of figures
    of their own (bytes, rows, CPU seconds), kept per run.
    With ``max_load``, each run waits (at most ``quiet_timeout_s``) for the load to drop.
    With ``machine_cpu``, each run also records the CPU seconds the whole machine spent
    (``machine_cpu_s``) and how busy its cores were (``machine_busy``, 1.0 = all of them).
    """
    series = {name: Series(name) for name in commands}
    for round_number in range(warmup + runs):
        for name, command in commands.items():
            if prepare is not None:
                prepare(name)
            before = wait_for_quiet(max_load, quiet_timeout_s) if max_load is not None else load()
            busy_before = machine_busy_s() if machine_cpu else 0.0
            start = time.perf_counter()
            extra = command() or {}
            elapsed = time.perf_counter() - start
            if machine_cpu:
                spent = machine_busy_s() - busy_before
                extra = {
                    **extra,
                    "machine_cpu_s": round(spent, 1),
                    "machine_busy": round(spent / (elapsed * (os.cpu_count() or 1)), 2),
                }
            if after is not None:
                extra = {**extra, **after(name)}
            if round_number < warmup:
                continue
            series[name].seconds.append(elapsed)
            series[name].loads.append(before)
            if extra:
                series[name].extra.append(extra)
            shown = "".join(f"  {k}={v}" for k, v in extra.items() if isinstance(v, (int, float)))
            print(f"  run {round_number - warmup + 1}/{runs} {name:<28} {elapsed:8.2f} s   load {before}{shown}", flush=True)
    return series


def run_command(argv: list[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None) -> None:
    """Run a whole command, its output thrown away; raise if it fails."""
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
        done = subprocess.run(argv, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")


def report(
    figure: str,
    series: Mapping[str, Series],
    ratios: list[tuple[str, str]],
    *,
    notes: Mapping[str, Any] | None = None,
    rate_bytes: int | None = None,
) -> dict[str, Any]:
    """Print min/median/max per command and ``a/b`` ratios of medians, and write
    ``bench/results/<figure>.json``. ``rate_bytes`` adds MB/s (10^6 bytes) per command."""
    print(f"\n{figure}: {next(iter(series.values())).seconds.__len__()} runs each, interleaved; seconds")
    print(f"  {'command':<30} {'min':>8} {'median':>8} {'max':>8}" + ("   MB/s (median)" if rate_bytes else ""))
    for s in series.values():
        line = f"  {s.name:<30} {min(s.seconds):8.2f} {s.median:8.2f} {max(s.seconds):8.2f}"
        if rate_bytes:
            line += f"   {rate_bytes / s.median / 1e6:8.1f}"
        print(line)
    for s in series.values():
        numeric = sorted({k for e in s.extra for k, v in e.items() if isinstance(v, (int, float))})
        if numeric:
            medians = {k: statistics.median(e[k] for e in s.extra if k in e) for k in numeric}
            print(f"  {s.name:<30} medians: " + ", ".join(f"{k} {v:g}" for k, v in medians.items()))
    ratio_rows = {}
    paired_rows = {}
    for a, b in ratios:
        value = series[a].median / series[b].median
        ratio_rows[f"{a} / {b}"] = round(value, 3)
        # Run i of a and run i of b ran one right after the other: their ratio is the least
        # disturbed by the machine's drift (other users' load coming and going).
        pairs = [x / y for x, y in zip(series[a].seconds, series[b].seconds, strict=False)]
        paired_rows[f"{a} / {b}"] = round(statistics.median(pairs), 3)
        print(f"  ratio of medians {a} / {b} = {value:.2f}   (median of the run-by-run ratios {paired_rows[f'{a} / {b}']:.2f})")
    record = {
        "figure": figure,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "results": {name: s.summary() for name, s in series.items()},
        "ratios_of_medians": ratio_rows,
        "median_of_paired_ratios": paired_rows,
        **({"mb_per_s_median": {n: round(rate_bytes / s.median / 1e6, 1) for n, s in series.items()}} if rate_bytes else {}),
        **({"notes": dict(notes)} if notes else {}),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{figure}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"  written: {path}")
    return record


def quiet_logs() -> None:
    """Only warnings and errors from the project's logging: the figures are the output."""
    from cutover.log import configure_logging

    configure_logging(level="WARNING")


class CpuMeter:
    """CPU seconds (user + system) spent by this process and its reaped children, and
    by the reaped children of another process (``remote_parent``: the sandbox's sshd, whose
    per-connection processes, and all they ran, are counted once each connection ends).

    On a machine shared with others, wall time is noisy; CPU seconds of what the compared
    commands themselves ran are not, and on 2 cores they are what the wall time follows."""

    def __init__(self, remote_parent: int | None = None) -> None:
        self.remote_parent = remote_parent
        self._start: tuple[float, float] = (0.0, 0.0)

    def _remote(self) -> float:
        if self.remote_parent is None:
            return 0.0
        fields = Path(f"/proc/{self.remote_parent}/stat").read_text().rsplit(")", 1)[1].split()
        # after ")": state is field 3; cutime and cstime are fields 16 and 17
        return (int(fields[16 - 3]) + int(fields[17 - 3])) / os.sysconf("SC_CLK_TCK")

    def _local(self) -> float:
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def start(self) -> None:
        self._start = (self._local(), self._remote())

    def stop(self, settle_s: float = 0.5) -> dict[str, float]:
        """CPU seconds since ``start``: ``local_cpu_s`` and ``remote_cpu_s``. Waits
        ``settle_s`` for the remote side's processes to be reaped."""
        time.sleep(settle_s)
        local, remote = self._local() - self._start[0], self._remote() - self._start[1]
        return {"local_cpu_s": round(local, 2), "remote_cpu_s": round(remote, 2)}
