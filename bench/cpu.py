"""CPU seconds per process tree while a benchmark runs: which process a run's time goes
to (the Prefect server, the worker and its flow run, step workers, PostgreSQL).
Read from /proc, sampled every 2 s; children that exit are counted in their parent's
cumulative figures."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its reaped children (clock ticks to seconds)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def process_tree(pid: int) -> set[int]:
    found = {pid}
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                ppid = int((child / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found |= process_tree(int(child.name))
    return found


class CpuWatch:
    """CPU seconds per named process tree, sampled while the run goes (children that exit
    are counted in their parent's cumulative figures)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = dict(roots)
        self.peak: dict[str, dict[int, float]] = {name: {} for name in roots}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def follow(self, name: str, pid: int) -> None:
        """Account one more process tree from now on: one started inside the ``with`` block."""
        with self._lock:
            self.roots[name] = pid
            self.peak[name] = {}
            self.start[name] = {}
        self._sample()

    def _sample(self) -> None:
        with self._lock:
            for name, root in self.roots.items():
                for pid in process_tree(root):
                    self.peak[name][pid] = max(self.peak[name].get(pid, 0.0), cpu_seconds(pid))

    def _loop(self) -> None:
        while not self._stop.wait(2):
            self._sample()

    def __enter__(self) -> CpuWatch:
        self._sample()
        self.start = {name: dict(p) for name, p in self.peak.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def used(self) -> dict[str, float]:
        return {
            name: round(sum(v - self.start[name].get(pid, 0.0) for pid, v in pids.items()), 1) for name, pids in self.peak.items()
        }
