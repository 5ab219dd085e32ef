"""Looking for the estate's secrets where they must never be: files (Prefect's database and
result storage, audit files, work directories), rendered pages, and the command lines and
environments of the processes a run starts, sampled while it runs.

A hit is a secret's value, or one long line of a multi-line one (a private key quoted in
part is still a leak), in any of the spellings it takes on its way (raw, JSON-escaped,
URL-encoded), also inside base64 (Prefect keeps pickled results as base64 in JSON).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cutover.process import GUARDIAN_MARKER
from cutover.redaction import is_sensitive_key
from cutover.sandbox.info import SandboxInfo

__all__ = ["GUARDIAN_MARKER", "HOLDERS", "Needles", "ProcessSampler", "secrets_of", "wait_for_samples"]

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")
# A flow-run process (and its worker, and the supervisor Prefect runs it under) hold the
# site's `env:` secrets by design: the site put them in the worker's environment. Everything
# they start must not.
HOLDERS = ("-m prefect.engine", "-m prefect worker start", "-m prefect.runner.")


def secrets_of(sandbox: SandboxInfo, extra: Iterable[str] = ()) -> list[str]:
    """Every secret the runbook's references resolve to, and each long line of a multi-line one."""
    values = [v for k, v in sandbox.environment().items() if is_sensitive_key(k) and v] + [v for v in extra if v]
    lines = [line.strip() for v in values for line in v.splitlines() if len(line.strip()) >= 16 and not line.startswith("-----")]
    return sorted({v for v in values if "\n" not in v} | set(lines))


def _spellings(secret: str) -> set[bytes]:
    texts = {secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret, safe="")}
    return {t.encode() for t in texts}


@dataclass
class Needles:
    secrets: list[str]
    _spelled: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._spelled = [(s, spelling) for s in self.secrets for spelling in _spellings(s)]

    def found_in(self, data: bytes, *, decode_base64: bool = True) -> set[str]:
        hits = {secret for secret, spelling in self._spelled if spelling in data}
        if decode_base64:
            for run in _BASE64_RUN.finditer(data):
                chunk = run.group(0)
                try:
                    decoded = base64.b64decode(chunk + b"=" * (-len(chunk) % 4))
                except (binascii.Error, ValueError):
                    continue
                hits |= {secret for secret, spelling in self._spelled if spelling in decoded}
        return hits

    def scan_tree(self, root: Path, skip: Callable[[Path], bool] = lambda p: False) -> tuple[dict[str, list[str]], int]:
        """{path: secrets found} over every file under ``root``, and how many files were read."""
        hits: dict[str, list[str]] = {}
        count = 0
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if not path.is_file() or path.is_symlink() or skip(path):
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            count += 1
            found = self.found_in(data)
            if found:
                hits[str(path)] = sorted(s[:6] + "..." for s in found)
        return hits, count


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _parent(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


class ProcessSampler:
    """A thread that looks at every process of this user about every ``interval_s``: any
    secret on a command line is a hit; any secret in the environment of a process started
    by a run (a descendant of ``roots()``: the worker, the target host's sshd) is a hit,
    unless it is one of the :data:`HOLDERS`. ``seen`` keeps the command lines looked at, so
    a test can prove the sample caught the programs it is about."""

    def __init__(self, needles: Needles, roots: Callable[[], set[int]], interval_s: float = 0.05) -> None:
        self.needles = needles
        self.roots = roots
        self.interval_s = interval_s
        self.hits: list[str] = []
        self.seen: set[str] = set()
        self.holder_secrets = 0  # holders whose environment did hold a secret: the sampler can see one
        self.samples = 0
        self._looked: set[tuple[int, bytes | None]] = set()
        self._parent_of: dict[int, int | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="secret-sampler", daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            try:
                self._sample(me)
            except Exception as exc:  # a sampler that dies must fail the test, not go blind
                self.hits.append(f"sampler failed: {exc!r}")
                return
            self.samples += 1
            self._stop.wait(self.interval_s)

    def _sample(self, me: int) -> None:
        # A process's parent is read once (a pid is not reused within a run); its command
        # line again at every sample while it is under a root (a shell may exec a program).
        pids = {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}
        for gone in set(self._parent_of) - pids:
            del self._parent_of[gone]
            self._looked.discard((gone, None))
        for pid in pids - set(self._parent_of):
            self._parent_of[pid] = _parent(pid)
        roots = self.roots()
        for pid in pids:
            if pid == me:
                continue
            under = self._under(pid, roots)
            if (pid, None) in self._looked and not under:
                continue
            self._looked.add((pid, None))
            cmdline = _read(f"/proc/{pid}/cmdline")
            if not cmdline or (pid, cmdline) in self._looked:
                continue
            self._looked.add((pid, cmdline))
            line = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            for secret in self.needles.found_in(cmdline, decode_base64=False):
                self.hits.append(f"command line of {pid} ({line[:80]}): {secret[:6]}...")
            if not under:
                continue
            self.seen.add(line)
            environ = _read(f"/proc/{pid}/environ")
            found = self.needles.found_in(environ, decode_base64=False)
            if any(holder in line for holder in HOLDERS):
                self.holder_secrets += bool(found)
                continue
            for secret in found:
                self.hits.append(f"environment of {pid} ({line[:80]}): {secret[:6]}...")

    def _under(self, pid: int, roots: set[int]) -> bool:
        ancestor = self._parent_of.get(pid)
        for _ in range(64):
            if ancestor is None or ancestor <= 1:
                return False
            if ancestor in roots:
                return True
            ancestor = self._parent_of.get(ancestor)
        return False

    def saw(self, needle: str) -> bool:
        return any(needle in line for line in self.seen)


def wait_for_samples(sampler: ProcessSampler, count: int = 2, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    start = sampler.samples
    while sampler.samples < start + count and time.monotonic() < deadline:
        time.sleep(0.01)
