"""The CLI as a user runs it: a process, its exit code, its output; never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.unit.runbook_texts import MINIMAL


def cutover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cutover", *args], capture_output=True, text=True, timeout=60)


def test_validate_demo_runbook_exits_zero():
    done = cutover("validate", "runbooks/demo.yaml")
    assert done.returncode == 0, done.stderr
    assert "ok (5 applications, 7 databases)" in done.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  end: 2027-07-19T06:00:00+02:00", "  end 2027-07-19T06:00:00+02:00"),
        ("    depends_on: [gis]", "    depend_on: [gis]"),
        ("  - name: gis\n", "  - name: gis\n    depends_on: [portal]\n"),
        ("    depends_on: [gis]", "    depends_on: [gis2]"),
        ("password: env:OLD_PG_PASSWORD", "password: hunter2"),
    ],
    ids=["yaml-syntax", "misspelled-key", "cycle", "unknown-dependency", "inline-password"],
)
def test_broken_runbook_exits_2_with_located_lines_and_no_traceback(tmp_path, old, new):
    path = tmp_path / "broken.yaml"
    path.write_text(MINIMAL.replace(old, new, 1))
    done = cutover("validate", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines, "a problem must be printed"
    assert all(re.match(rf"^{re.escape(str(path))}:\d+:\d+: ", line) for line in lines), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "hunter2" not in done.stderr + done.stdout


def test_plan_json_lists_steps_and_critical_path():
    done = cutover("plan", "runbooks/demo.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    ids = [s["id"] for s in plan["steps"]]
    assert len(ids) == len(set(ids))
    assert {"id", "application", "phase", "depends_on", "estimate_s"} <= set(plan["steps"][0])
    assert plan["critical_path"][0] in ids and plan["critical_path"][-1] in ids


def test_plan_text_and_mermaid_render():
    text = cutover("plan", "runbooks/demo.yaml")
    assert text.returncode == 0 and "critical path:" in text.stdout and "* " in text.stdout
    mermaid = cutover("plan", "runbooks/demo.yaml", "--format", "mermaid")
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("flowchart LR")


def test_validate_and_plan_do_not_import_prefect():
    code = (
        "import sys; from cutover.cli import runbook_commands; from cutover.plan import build_plan;"
        "from cutover.runbook import load_runbook; build_plan(load_runbook('runbooks/demo.yaml'));"
        "import cutover.cli.main; print('prefect' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
