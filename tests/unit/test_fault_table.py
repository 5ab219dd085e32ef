"""The fault table of docs/when-things-go-wrong.md names tests that exist, and every
fault scenario test is in the table."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path("docs/when-things-go-wrong.md")
SCENARIO_FILES = (
    "tests/integration/test_faults.py",
    "tests/integration/test_crash_and_cancel.py",
    "tests/integration/test_retry_after_failure.py",
    "tests/integration/test_decisions.py",
    "tests/integration/test_partial_rollback.py",
)


def table_tests() -> list[tuple[str, str]]:
    return re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC.read_text())


def test_every_test_in_the_fault_table_exists():
    refs = table_tests()
    assert len(refs) >= 15
    for path, name in refs:
        assert Path(path).exists(), f"{path} (named in {DOC}) does not exist"
        assert re.search(rf"^def {name}\(", Path(path).read_text(), re.M), f"{path} has no test {name} (named in {DOC})"


def test_every_fault_scenario_test_is_in_the_table():
    named = {(path, name) for path, name in table_tests()}
    for path in SCENARIO_FILES:
        for name in re.findall(r"^def (test_\w+)\(", Path(path).read_text(), re.M):
            assert (path, name) in named, f"{path}::{name} is missing from the fault table in {DOC}"
