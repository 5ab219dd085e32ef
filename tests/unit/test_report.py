"""The cutover report from hand-made run records: verdicts, the chain of custody table by
table, rollbacks in plan order, DNS before and after, decisions, the digest, secrets and
the public variant. No Prefect, no estate (see tests/unit/report_records.py)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from cutover.redaction import forget_secrets, register_secret
from cutover.report import build_report, digest, render
from cutover.report.public import leaks
from cutover.report.record import EventRecord
from cutover.results import ExportResult
from tests.unit.report_records import FINGERPRINT, HOSTS, NEW, OLD, RECORD_NAME, completed_record, rolled_back_record


def test_a_completed_run_is_completed_and_verified_and_shows_every_tables_figures(tmp_path):
    report = build_report(completed_record(tmp_path))
    assert (report.verdict.outcome, report.verdict.headline) == ("completed", "Completed and verified")
    (db,) = report.databases
    assert db.verified and db.verdict.startswith("equal") and db.method == "stream"
    assert [(t.table, t.source_rows, t.source_hash, t.target_rows, t.target_hash, t.equal) for t in db.tables] == [
        ("public.owners", 2, "4567", 2, "4567", True),
        ("public.parcels", 3, "-98765432101234", 3, "-98765432101234", True),
    ]
    assert db.source_fingerprint is not None and db.target_fingerprint is not None
    assert db.source_fingerprint.digest == db.target_fingerprint.digest and db.source_fingerprint.rows == 5
    assert (db.dump_sha256_sent, db.dump_sha256_received) == ("a" * 64, "a" * 64)
    assert db.dump_locations == [], "a stream writes no dump file"
    assert (db.roles_needed, db.roles_created) == (["gis_app"], ["gis_app"])
    assert db.source == "db-old.example.test:5432" and db.target == "db-new.example.test:5433"
    assert db.source_check.startswith("no write since the freeze")
    (record,) = report.dns
    assert (record.name, record.old_values, record.old_ttl, record.new_value, record.ttl) == (RECORD_NAME, [OLD], 300, NEW, 60)
    assert record.state == "switched and confirmed by the authoritative server" and record.restored_values is None
    (gate,) = report.decisions
    assert (gate.kind, gate.decision, gate.decided_by) == ("gate", "go", "auto_approve")
    assert any("gis/gis: verified, 5 rows in 2 tables" in line for line in gate.evidence)
    assert any("digest d1g3st" in line for line in gate.evidence)
    assert [(c.phase, c.passed) for c in report.checks] == [("smoke", True), ("post-switch", True)]
    assert report.rollbacks == [] and report.run.window_start == "2027-07-16T18:00:00+02:00"
    assert report.run.started_by.startswith("not recorded")


def test_a_target_fingerprint_that_differs_in_one_table_is_not_verified_and_names_it(tmp_path):
    target = copy.deepcopy(FINGERPRINT)
    target["tables"]["public.parcels"]["hash"] = "1"
    report = build_report(completed_record(tmp_path, target_fingerprint=target))
    (db,) = report.databases
    assert not db.verified and db.verdict.startswith("DIFFERENT") and "public.parcels" in db.verdict
    assert [t.table for t in db.tables if not t.equal] == ["public.parcels"]
    assert db.source_fingerprint.digest != db.target_fingerprint.digest
    assert report.verdict.outcome == "needs_attention" and any("public.parcels" in d for d in report.verdict.details)


def test_a_rolled_back_run_lists_its_compensations_in_the_rollback_plans_order_and_the_dns_put_back(tmp_path):
    report = build_report(rolled_back_record(tmp_path))
    assert (report.verdict.outcome, report.verdict.headline) == ("rolled_back", "Rolled back, sources intact")
    assert any("acknowledged lost: gis/gis: 3" in d for d in report.verdict.details)
    (rolled,) = report.rollbacks
    assert rolled.finished and rolled.by == "this run: decided at the point of no return"
    assert [(c.order, c.step) for c in rolled.compensations] == [
        (1, "gis/dns"),
        (2, "gis/start"),
        (3, "gis/stream/gis"),
        (4, "gis/freeze"),
    ]
    assert rolled.left_by_hand == [] and rolled.writes_lost == {"gis/gis": 3}
    assert any(w.startswith("gis/post-switch failed: try 2") for w in rolled.why)
    (record,) = report.dns
    assert record.restored_values == [OLD] and record.state == "switched, then put back to its old value"
    assert report.databases[0].after_rollback == "renamed to gis_rolled_back_20270716160200"
    (ponr,) = [d for d in report.decisions if d.kind == "point of no return"]
    assert (ponr.decision, ponr.decided_by) == ("roll back, writes lost acknowledged", "Anna de Vries")
    assert "failed after the switch: gis/post-switch" in ponr.evidence[0]
    (step,) = [t for t in report.timeline if t.name == "gis/post-switch"]
    assert (step.tries, step.failed_tries, step.error) == (
        2,
        ["try 1: expected text not found"],
        "try 2: expected text not found",
    )


def test_a_rollback_that_stopped_halfway_needs_attention_and_says_what_is_left_by_hand(tmp_path):
    record = rolled_back_record(tmp_path)
    tasks = [
        replace(t, state="Failed", state_type="FAILED", result=None) if t.name == "rollback/gis/start" else t
        for t in record.task_runs
        if t.name not in ("rollback/gis/stream/gis", "rollback/gis/freeze")
    ]
    report = build_report(
        replace(record, task_runs=tasks, journal={**record.journal, "rollback": {"of": record.run.id, "finished": False}})
    )
    assert report.verdict.headline == "Needs attention: the rollback did not finish"
    (rolled,) = report.rollbacks
    assert [item.split(":")[0] for item in rolled.left_by_hand] == ["gis/start", "gis/stream/gis", "gis/freeze"]


def test_every_format_renders_and_carries_the_digest_of_the_json_which_a_changed_figure_breaks(tmp_path):
    report = build_report(rolled_back_record(tmp_path))
    data = json.loads(render(report, "json"))
    assert digest.check(data)
    data["databases"][0]["tables"][0]["source_rows"] += 1
    assert not digest.check(data), "a copy with one figure changed no longer matches"
    for fmt in ("md", "html"):
        assert report.digest is not None and report.digest.value in render(report, fmt)
    html = render(report, "html")
    assert "<h2>Rolled back, sources intact</h2>" in html and "size: A4" in html
    assert "Cutover report: report-estate" in render(report, "md")


def test_a_secret_in_a_recorded_error_is_redacted_in_every_format(tmp_path):
    secret = "s3cret-pa55word-of-the-source"
    record = rolled_back_record(tmp_path)
    failed = next(t for t in record.task_runs if t.name == "gis/post-switch")
    leak = EventRecord(
        "cutover.step.failed", failed.ended, failed.name, {"error": f"postgresql://migrate:{secret}@db-old"}, failed.id
    )
    register_secret(secret)
    try:
        report = build_report(replace(record, events=[*record.events, leak]))
        for fmt in ("html", "md", "json"):
            text = render(report, fmt)
            assert secret not in text, fmt
        assert digest.check(json.loads(render(report, "json"))), "redacted before it was signed"
    finally:
        forget_secrets()


@pytest.mark.parametrize("make", [completed_record, rolled_back_record])
def test_the_public_variant_names_no_host_address_url_or_dns_name(tmp_path, make):
    record = make(tmp_path)
    team = build_report(record)
    public = build_report(record, public=True)
    assert public.variant == "public" and public.digest != team.digest
    assert leaks(render(team, "md"), HOSTS), "the team report does name them (the check below is not empty)"
    for fmt in ("html", "md", "json"):
        text = render(public, fmt)
        assert leaks(text, HOSTS) == [], fmt
    assert [t.equal for t in public.databases[0].tables] == [True, True], "the figures stay"
    assert public.run.runbook_path is None and public.run.links == []


def test_dump_files_show_where_they_lived_and_when_they_were_removed_or_kept_or_say_not_recorded(tmp_path):
    record = completed_record(tmp_path, method="file")
    export = ExportResult(
        path="/work/gis.gis.dump",
        bytes=4096,
        location={"where": "orchestrator", "host": "worker1", "path": "/work/gis.gis.dump", "mode": "0700"},
    )

    def with_results(verify_dumps: list[dict]) -> Any:
        tasks = []
        for t in record.task_runs:
            if t.name == "gis/export/gis":
                t = replace(t, result=export)
            elif t.name == "gis/verify/gis":
                t = replace(t, result=replace(t.result, dumps=verify_dumps))
            tasks.append(t)
        return build_report(replace(record, task_runs=tasks))

    report = with_results([{"where": "orchestrator", "removed_at": "2027-07-16T16:03:00+00:00", "kept": False}])
    (db,) = report.databases
    assert (db.dump_sha256_sent, db.dump_sha256_received, db.dump_sha256_before_restore, db.dump_files) == (
        "b" * 64,
        "b" * 64,
        "b" * 64,
        3,
    )
    assert db.roles_created == [] and db.verified
    here, there = db.dump_locations
    assert (here.host, here.path, here.mode, here.removed_at, here.kept) == (
        "worker1",
        "/work/gis.gis.dump",
        "0700",
        "2027-07-16T16:03:00+00:00",
        False,
    )
    assert there.host == "cloud1.example.test" and there.path.endswith(f"/report-estate/{record.run.id}/gis.gis.dump")
    assert there.removed_at is None and there.mode is None
    markdown = render(report, "md")
    assert "removed 2027-07-16 16:03:00 UTC" in markdown and "mode not recorded; removed not recorded" in markdown

    kept = with_results([{"where": w, "removed_at": None, "kept": True} for w in ("orchestrator", "target host")])
    assert [p.kept for p in kept.databases[0].dump_locations] == [True, True]
    for fmt in ("md", "html"):
        assert render(kept, fmt).count("kept (keep_dump): still there") == 2, fmt


def test_an_uncached_steps_result_is_taken_from_the_figures_of_its_completed_event():
    from cutover.report.gather import _recovered
    from cutover.results import ActionOutcome, ActionsResult, CompensationResult, SourceCheckResult, SourceProof
    from tests.unit.report_records import T0, _task

    smoke = ActionsResult(results=[ActionOutcome("gis.smoke[0] http", "http", url="http://192.0.2.3:8080/health", status=200)])
    undo = CompensationResult("renamed to gis_rolled_back_1", {"database": "gis/gis"})
    checked = SourceCheckResult(databases=[SourceProof("gis/gis", "fingerprint")])
    for name, result, event in (
        ("gis/smoke", smoke, "cutover.step.completed"),
        ("gis/source-check", checked, "cutover.step.completed"),
        ("rollback/gis/stream/gis", undo, "cutover.step.compensated"),
    ):
        run = _task(name, 0, None)
        payload = json.loads(json.dumps({"duration_s": 1.0, **result.figures()}))  # as the event API gives it back
        assert _recovered(run, [EventRecord(event, T0, name, payload, run.id)]) == result, name
        assert _recovered(run, [EventRecord(event, T0, name, payload, "another task run")]) is None


def test_the_answer_past_the_point_of_no_return_is_taken_from_its_decided_event():
    from cutover.report.gather import _recovered
    from tests.unit.report_records import T0, _task

    run = _task("point-of-no-return", 0, None)
    answer = {"roll_back": False, "acknowledged": False, "decided_by": "Anna", "reason": "look first", "writes": {"gis/gis": 2}}
    decided = EventRecord("cutover.decision.decided", T0, "point-of-no-return", {"flow_run_id": "x", **answer}, run.id)
    assert _recovered(run, [decided]) == answer
