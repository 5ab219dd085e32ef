"""Runbook fuzzing, shared by the test suite and ``bench/fuzz_runbooks.py``.

- Strategies (hypothesis): the demo runbook mutated (a value anywhere replaced by a hostile
  one, keys dropped, misspelled or added, list items repeated), its text mutated (hostile
  characters and YAML inserted anywhere: NUL, control characters, quotes, ``$(...)``,
  anchors and aliases, deep brackets), and YAML bombs (nested aliases, deep nesting).
- The property (``check``): ``parse_runbook`` either returns a runbook, which then plans
  and renders in every format, or raises ``RunbookError`` whose problems are each one line
  ``fuzz.yaml:LINE:COL: ...`` with a line inside the text. Anything else is a bug.
- A worker process (``FuzzWorker``) runs ``check`` on cases sent to it, under an address
  space limit, while its parent holds every case to a wall-clock limit: a case that costs
  too much memory or time fails as surely as a traceback.
"""

from __future__ import annotations

import copy
import json
import os
import re
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
DEMO_TEXT = (ROOT / "runbooks" / "demo.yaml").read_text()
DEMO = yaml.load(DEMO_TEXT, Loader=yaml.CSafeLoader)
FILENAME = "fuzz.yaml"
PROBLEM_LINE = re.compile(rf"^{re.escape(FILENAME)}:(\d+):(\d+): [^\n]*$")

# Per case, generous: a real runbook takes milliseconds, the worst bomb a fraction of a second.
CASE_SECONDS = 10.0
WORKER_MEMORY = 1 << 30  # address space of the worker, interpreter and libraries included
ALLOCATE = "__fuzz_allocate__"  # a case that asks the worker for more memory than it may have

HOSTILE_STRINGS = [
    "",
    " ",
    "'",
    '"',
    "';--",
    "; drop table persons; --",
    "$(id)",
    "`id`",
    "${HOME}",
    "${UNSET_VARIABLE}",
    "$$",
    "a/b",
    "../../etc/passwd",
    "/",
    "\\",
    "\n",
    "line\nbreak",
    "\r\n",
    "\t",
    "\0",
    "nul\0byte",
    "\x1b[31mred",
    "\x7f",
    "\u202eevil",
    "\u2028",
    "\ufeff",
    "é",
    "Ωmega",
    "日本語",
    "😀",
    "\U0010ffff",
    "%s%n%x",
    "{{7*7}}",
    "<script>",
    "&anchor",
    "*alias",
    "- item",
    "key: value",
    "{a: b}",
    "[1, 2]",
    "!!python/object:os.system",
    "null",
    "~",
    "yes",
    "no",
    "0x1F",
    "1e41",
    ".inf",
    "-.nan",
    "0777",
    "x" * 300,
    "db1; $(id)",
    "127.0.0.1:99999",
    "http://user:pw@host/",
    "env:",
    "secret:Bad Name",
    "ssh-ed25519",
    "ssh-ed25519 AAAA\nssh-rsa BBBB",
    "select 1; drop table x",
    "gate",
    "rollback",
]
HOSTILE_NUMBERS = [
    0,
    -1,
    1,
    2**31,
    2**63,
    10**30,
    10**400,
    1e41,
    -1e41,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.5,
    True,
    False,
]
HOSTILE_TEXT_SNIPPETS = [
    "\0",
    "\x01",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufeff",
    "\ud7ff",
    "\t",
    "\r",
    "\n",
    "\n---\n",
    "\n...\n",
    "'",
    '"',
    "&a ",
    "*a",
    " *nope",
    "&x [*x]",
    "<<: ",
    "? ",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "#",
    "%YAML 1.1\n",
    "!!binary ",
    "!local ",
    "!!set ",
    "[" * 40,
    "]" * 40,
    "{a: " * 40,
    "$(id)",
    "${X}",
    "\\",
    "é",
    "😀",
]


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


DEMO_PATHS = [p for p in _paths(DEMO) if p]


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


DEMO_MAPPINGS = [p for p in _paths(DEMO) if isinstance(_get(DEMO, p), dict)]
DEMO_LISTS = [p for p in _paths(DEMO) if isinstance(_get(DEMO, p), list) and _get(DEMO, p)]
KEYS = sorted({str(p[-1]) for p in DEMO_PATHS if isinstance(p[-1], str)})


# --- strategies ------------------------------------------------------------------------


def hostile_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.sampled_from(HOSTILE_NUMBERS),
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
        st.integers(),
        st.floats(),
        st.none(),
        st.datetimes(timezones=st.just(UTC)) | st.just(datetime(2027, 7, 16, 18, 0)),
        st.builds(lambda a, b: a + b, st.sampled_from(HOSTILE_STRINGS), st.sampled_from(HOSTILE_STRINGS)),
    )


def hostile_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        hostile_scalars(),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


@st.composite
def data_mutation(draw) -> tuple[str, tuple, Any]:
    kind = draw(st.sampled_from(["replace", "replace", "replace", "drop", "rename", "add", "repeat"]))
    if kind in ("replace", "drop"):
        return kind, draw(st.sampled_from(DEMO_PATHS)), draw(hostile_values()) if kind == "replace" else None
    if kind in ("rename", "add"):
        path = draw(st.sampled_from(DEMO_MAPPINGS))
        return kind, path, (draw(st.sampled_from(KEYS) | st.sampled_from(HOSTILE_STRINGS)), draw(hostile_values()))
    return kind, draw(st.sampled_from(DEMO_LISTS)), draw(st.integers(1, 3))


def apply(data: Any, mutation: tuple[str, tuple, Any]) -> None:
    kind, path, arg = mutation
    try:
        parent = _get(data, path[:-1]) if kind in ("replace", "drop") else _get(data, path)
    except (KeyError, IndexError, TypeError):
        return  # an earlier mutation removed or replaced what this one aimed at
    if kind == "replace":
        try:
            parent[path[-1]] = arg
        except (IndexError, TypeError):
            pass
    elif kind == "drop":
        try:
            del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            pass
    elif kind == "rename" and isinstance(parent, dict) and parent:
        old = next(iter(parent))
        key, _ = arg
        parent[key] = parent.pop(old)
    elif kind == "add" and isinstance(parent, dict):
        key, value = arg
        parent[key] = value
    elif kind == "repeat" and isinstance(parent, list) and parent:
        parent.extend(copy.deepcopy(parent[:1]) * arg)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True, width=120)


@st.composite
def mutated_demo_data(draw) -> str:
    """The demo with one to four changes to its data, dumped as YAML."""
    data = copy.deepcopy(DEMO)
    for mutation in draw(st.lists(data_mutation(), min_size=1, max_size=4)):
        apply(data, mutation)
    return dump(data)


@st.composite
def mutated_demo_text(draw) -> str:
    """The demo's text with hostile characters or YAML inserted, or a slice cut out."""
    text = DEMO_TEXT
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(HOSTILE_TEXT_SNIPPETS) | st.text(max_size=6)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 200)) :]
    return text


@st.composite
def yaml_bombs(draw) -> str:
    """Nested aliases (wide and deep), deep brackets, or many values, inside the demo."""
    kind = draw(st.sampled_from(["laughs", "deep", "alias-deep", "wide"]))
    if kind == "laughs":
        width, levels = draw(st.integers(2, 12)), draw(st.integers(3, 12))
        lines = ["x0: &x0 [" + ", ".join(['"lol"'] * width) + "]"]
        lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * width) + "]" for i in range(1, levels)]
        bomb = "\n".join(lines)
    elif kind == "deep":
        depth = draw(st.integers(20, 2000))
        bomb = "x: " + "[" * depth + "]" * depth
    elif kind == "alias-deep":
        depth = draw(st.integers(10, 30))
        bomb = "x: &a " + "[" * depth + "1" + "]" * depth + "\ny: " + "[" * depth + "*a" + "]" * depth
    else:
        bomb = "x: [" + ", ".join(["1"] * draw(st.integers(1000, 120_000))) + "]"
    return DEMO_TEXT + "\n" + bomb + "\n"


def runbooks() -> st.SearchStrategy[str]:
    """Every kind of case, weighted towards runbooks close to a real one."""
    return st.one_of(mutated_demo_data(), mutated_demo_data(), mutated_demo_text(), yaml_bombs())


# --- the property ----------------------------------------------------------------------


@dataclass
class Outcome:
    verdict: str  # "valid" (planned and rendered) or "refused" (located problems)
    problems: list[str]
    seconds: float
    max_rss_mib: int


def check(text: str) -> Outcome:
    """Load, and if valid plan and render; raise AssertionError when the outcome breaks the
    property (any other exception escapes as it is: that is the bug)."""
    from cutover.errors import RunbookError
    from cutover.plan import build_plan, render
    from cutover.runbook import parse_runbook

    start = time.perf_counter()
    try:
        runbook = parse_runbook(text, FILENAME, {})
    except RunbookError as exc:
        problems = [str(p) for p in exc.problems]
        assert problems, "a refused runbook names at least one problem"
        lines = text.count("\n") + 2
        for problem in problems:
            match = PROBLEM_LINE.match(problem)
            assert match, f"not one positioned line: {problem!r}"
            assert 1 <= int(match.group(1)) <= lines, f"line outside the text: {problem!r}"
        verdict = "refused"
    else:
        plan = build_plan(runbook)
        render.as_text(plan), render.as_json(plan), render.as_mermaid(plan)
        problems, verdict = [], "valid"
    seconds = time.perf_counter() - start
    return Outcome(verdict, problems, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


# --- a worker with a memory limit, and its parent's time limit ------------------------


def _send(stream, payload: bytes) -> None:
    stream.write(struct.pack(">I", len(payload)) + payload)
    stream.flush()


def _receive(stream) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    return stream.read(size)


def worker_main() -> None:
    """Runs in the worker: a case in, a JSON outcome out, until stdin closes."""
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    import cutover.plan
    import cutover.runbook  # noqa: F401

    out = sys.stdout.buffer
    while (payload := _receive(sys.stdin.buffer)) is not None:
        text = payload.decode("utf-8", "surrogatepass")
        try:
            if text == ALLOCATE:
                bytearray(2 * WORKER_MEMORY)  # proves the limit: this must fail with MemoryError
            outcome = check(text)
            reply = {"ok": True, **outcome.__dict__}
        except BaseException as exc:
            import traceback

            reply = {"ok": False, "error": "".join(traceback.format_exception(exc))}
        _send(out, json.dumps(reply).encode())


class CaseFailed(AssertionError):
    pass


class FuzzWorker:
    """A long-lived worker process; ``run(text)`` returns its outcome or raises CaseFailed
    (traceback, broken property, killed by its memory limit, or over the time limit)."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.runbook_fuzz import worker_main; worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )

    def run(self, text: str, seconds: float = CASE_SECONDS) -> Outcome:
        import select

        assert self.process.stdin and self.process.stdout
        _send(self.process.stdin, text.encode("utf-8", "surrogatepass"))
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        if not ready:
            self.restart()
            raise CaseFailed(f"the case took longer than {seconds} s")
        payload = _receive(self.process.stdout)
        if payload is None:
            code = self.process.wait()
            self.restart()
            raise CaseFailed(f"the worker died (exit {code}) under its {WORKER_MEMORY >> 20} MiB limit")
        reply = json.loads(payload)
        if not reply.pop("ok"):
            raise CaseFailed(reply["error"])
        return Outcome(**reply)

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                stream.close()
