"""Hostile and mutated runbooks: ``validate`` and ``plan`` never show a traceback, always
end valid (exit 0) or with positioned problems (exit 2), within a time and memory bound.

Three layers: a few hundred hypothesis cases in a worker process with a memory limit and a
per-case time limit (``tests/runbook_fuzz.py``); every value of the demo replaced by each of
a few hostile values, in process; and a handful of cases through the real CLI. The long job
is ``bench/fuzz_runbooks.py``.
"""

from __future__ import annotations

import copy
import re
import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.runbook_fuzz import DEMO, DEMO_PATHS, DEMO_TEXT, FuzzWorker, apply, check, dump, runbooks


@pytest.fixture(scope="module")
def worker() -> Iterator[FuzzWorker]:
    started = FuzzWorker()
    yield started
    started.close()


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(text=runbooks())
def test_any_runbook_is_valid_or_refused_with_positioned_problems_within_bounds(worker, text):
    outcome = worker.run(text)  # raises on a traceback, a broken property, the memory or time limit
    assert outcome.verdict in ("valid", "refused")


def test_the_worker_enforces_its_limits(worker):
    """The bound is real: a case that would need more memory than the worker may have, or
    more time than a case may take, fails instead of passing slowly."""
    from tests.runbook_fuzz import ALLOCATE, CaseFailed

    # a string of 2 GiB cannot be built under the 1 GiB limit (a MemoryError in the worker)
    with pytest.raises(CaseFailed, match="MemoryError"):
        worker.run(ALLOCATE)
    with pytest.raises(CaseFailed, match="longer than"):
        worker.run(DEMO_TEXT * 40, seconds=0.001)
    assert worker.run(DEMO_TEXT).verdict == "valid"  # and it is restarted after a failure


# a string that is neither a name, nor an address, nor one line; a NUL; a number past every
# bound; a structure where a scalar belongs (the hypothesis cases mix many more)
HOSTILE = ["a/b\n'; drop table persons; $(id)", "\0", 1e41, {"nested": [None]}]


def _leaves() -> list[tuple]:
    def get(path):
        value = DEMO
        for part in path:
            value = value[part]
        return value

    return [p for p in DEMO_PATHS if not isinstance(get(p), (dict, list))]


@pytest.mark.parametrize("hostile", HOSTILE, ids=["slash-newline-quote-command", "nul", "1e41", "mapping"])
def test_every_value_of_the_demo_replaced_by_a_hostile_one_is_handled(hostile):
    refused = 0
    for path in _leaves():
        data = copy.deepcopy(DEMO)
        apply(data, ("replace", path, hostile))
        outcome = check(dump(data))
        refused += outcome.verdict == "refused"
        # the hostile value never survives into a valid runbook where a name or address belongs
        if outcome.verdict == "valid" and path[-1] in ("name", "host", "to", "zone", "user", "database", "api", "url"):
            pytest.fail(f"{path} accepted {hostile!r}")
    assert refused > len(_leaves()) // 2, "most fields refuse such a value"


def _limited(memory: int):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return limit


CLI_CASES = {
    "demo": DEMO_TEXT,
    "nul-byte": DEMO_TEXT.replace("cutover: gemeente-werkendam", "cutover: gemeente\0werkendam"),
    "database-with-slash": DEMO_TEXT.replace("- name: bzk", "- name: bz/k"),
    "host-with-command": DEMO_TEXT.replace("${CUTOVER_ONPREM_PG_HOST:-db1.werkendam.intern}", "'db1; $(id)'"),
    "timeout-1e41": DEMO_TEXT.replace("timeout_s: 1800", "timeout_s: 1e41"),
    "writing-smoke-query": DEMO_TEXT.replace("select count(*) > 0 from public.persons", "drop table public.persons"),
    "deep-nesting": DEMO_TEXT + "x: " + "[" * 5000 + "]" * 5000 + "\n",
    "alias-bomb": DEMO_TEXT
    + "".join(f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}" if i else '"lol"'] * 10) + "]\n" for i in range(12)),
    "not-utf8": "cutover: caf\udce9\n",
}


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case", CLI_CASES)
def test_the_cli_exits_0_or_2_with_positioned_lines_and_never_a_traceback(tmp_path, command, case):
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(CLI_CASES[case].encode("utf-8", "surrogateescape"))
    done = subprocess.run(
        [sys.executable, "-m", "cutover", command, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited(1 << 30),
    )
    assert "Traceback" not in done.stdout + done.stderr
    if case == "demo":
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(re.match(rf"^{re.escape(str(path))}:\d+:\d+: \S", line) for line in lines), done.stderr
