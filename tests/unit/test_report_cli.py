"""``cutover report`` as a user runs it, without a Prefect server: bad input is one line
and a non-zero exit, never a traceback; ``--check`` tells a saved copy that matches its
digest from one that was changed. And the audit log the report reads: a 0600 file, kept
in the run's journal with its sha256."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys

from cutover import audit
from cutover.journal import MemoryJournal
from cutover.log import audit_file, configure_logging, reset_logging
from cutover.report import build_report, render
from tests.unit.report_records import completed_record


def cutover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cutover", *args], capture_output=True, text=True, timeout=60)


def one_line_failure(done: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("cutover report: ") and words in done.stderr, done.stderr


def test_a_missing_run_or_an_unknown_format_is_one_line_and_exit_2():
    one_line_failure(cutover("report"), 2, "say which run")
    one_line_failure(
        cutover("report", "6f1c1d2e-0000-4000-8000-000000000001", "--format", "pdf"), 2, "--format must be one of html, md, json"
    )


def test_an_unreachable_prefect_api_is_one_line_and_exit_1():
    done = cutover("report", "6f1c1d2e-0000-4000-8000-000000000001", "--api", "http://127.0.0.1:9/api")
    one_line_failure(done, 1, "is not reachable")


def test_check_tells_a_saved_copy_that_matches_its_digest_from_a_changed_one(tmp_path):
    saved = tmp_path / "report.json"
    saved.write_text(render(build_report(completed_record(tmp_path)), "json"))
    done = cutover("report", "--check", str(saved))
    assert done.returncode == 0 and "matches its digest" in done.stdout, done.stderr
    data = json.loads(saved.read_text())
    data["dns"][0]["new_value"] = "198.51.100.7"
    saved.write_text(json.dumps(data))
    one_line_failure(cutover("report", "--check", str(saved)), 1, "does NOT match its digest")
    saved.write_text("<html>")
    one_line_failure(cutover("report", "--check", str(saved)), 2, "not a JSON report")


def test_an_audit_file_is_only_for_its_user_and_is_kept_in_the_journal_with_its_sha256(tmp_path):
    path = tmp_path / "attempt-1" / "audit.jsonl"
    path.parent.mkdir()
    path.write_text("")
    path.chmod(0o644)  # an older run's file: made 0600 when it is opened again
    try:
        configure_logging(audit_file=path, console=False)
        assert audit_file() == path
        import structlog

        structlog.get_logger().info("step_completed", step_id="gis/freeze")
    finally:
        reset_logging()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    journal = MemoryJournal()
    kept = audit.keep(journal, "attempt-1", path)
    assert kept is not None and kept.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and kept.lines == 1
    assert audit.keep(journal, "attempt-1", path) is not None and audit.keep(journal, "missing", tmp_path / "none") is None
    assert [a.name for a in audit.kept(journal)] == ["attempt-1"], "kept again, listed once"
    assert "step_completed" in audit.kept(journal)[0].text
