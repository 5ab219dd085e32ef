"""Run records made by hand, as cutover.report.gather would read them from Prefect: one
application (gis) streamed, its gate approved by itself; completed, or rolled back past
the switch. The report's unit tests bend them."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cutover.plan import build_plan
from cutover.plan.build import Plan
from cutover.report.facts import AT_RUN_END, runbook_facts
from cutover.report.record import EventRecord, FlowRunRecord, RunRecord, StateChange, TaskRunRecord
from cutover.results import (
    ActionOutcome,
    ActionsResult,
    CompensationResult,
    DnsChange,
    DnsSwitchResult,
    ExportResult,
    FreezeResult,
    FrozenDatabase,
    GateResult,
    ImportResult,
    PostSwitchResult,
    RecordSwitched,
    SourceCheckResult,
    SourceProof,
    StreamResult,
    TransferResult,
    VerifyResult,
)
from cutover.runbook import load_runbook

RUN_ID = "6f1c1d2e-0000-4000-8000-000000000001"
ATTEMPT = RUN_ID
T0 = datetime(2027, 7, 16, 18, 0, tzinfo=UTC)
OLD, NEW = "192.0.2.2", "192.0.2.3"
RECORD_NAME = "gis.example.test."
HOSTS = [
    "db-old.example.test",
    "db-new.example.test",
    "cloud1.example.test",
    "pdns.example.test",
    "ns1.example.test",
    RECORD_NAME,
    "gis.example.test",
    OLD,
    NEW,
]

RUNBOOK = f"""\
cutover: report-estate
description: One application, for the report's tests.
window:
  start: 2027-07-16T18:00:00+02:00
  end: 2027-07-19T06:00:00+02:00
sites:
  old:
    postgres: {{host: db-old.example.test, port: 5432, user: migrate, password: env:OLD_PG_PASSWORD, sslmode: disable}}
    http: {{address: {OLD}}}
  new:
    postgres: {{host: db-new.example.test, port: 5433, user: migrate, password: env:NEW_PG_PASSWORD, sslmode: disable}}
    ssh: {{host: cloud1.example.test, port: 22, user: cutover, key: env:SSH_KEY, host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"}}
    http: {{address: {NEW}}}
dns:
  api: http://pdns.example.test:8081
  api_key: env:PDNS_API_KEY
  zone: example.test.
  nameserver: ns1.example.test:53
gates:
  - {{name: go-no-go, applications: all, auto_approve: true}}
applications:
  - name: gis
    freeze: [{{http: {{method: POST, url: "http://{OLD}:8080/maintenance", json: {{enabled: true}}}}}}]
    unfreeze: [{{http: {{method: POST, url: "http://{OLD}:8080/maintenance", json: {{enabled: false}}}}}}]
    databases:
      - {{name: gis, from: old, to: new, method: stream, on_rollback: rename}}
    start: [{{http: {{method: POST, url: "http://{NEW}:8080/maintenance", json: {{enabled: false}}}}}}]
    stop: [{{http: {{method: POST, url: "http://{NEW}:8080/maintenance", json: {{enabled: true}}}}}}]
    smoke: [{{http: {{url: "http://{NEW}:8080/health", expect_status: 200}}}}]
    dns:
      - {{name: {RECORD_NAME}, to: {NEW}, ttl: 60, check: {{url: "http://gis.example.test.:8080/health", expect_status: 200}}}}
"""

FINGERPRINT: dict[str, Any] = {
    "database": "gis",
    "tables": {"public.owners": {"rows": 2, "hash": "4567"}, "public.parcels": {"rows": 3, "hash": "-98765432101234"}},
    "materialized_views": {},
    "sequences": {"public.parcels_id_seq": {"last_value": 3, "is_called": True}},
    "large_objects": {"count": 0, "hash": "0"},
    "schema_objects": [["table", "public.owners", "owner gis_app"], ["table", "public.parcels", "owner gis_app"]],
    "schema_hash": "5c1e",
    "duration_s": 0.1,
}


def plan_and_facts(tmp: Path, method: str = "stream") -> tuple[Plan, Any]:
    path = tmp / "report-estate.yaml"
    path.write_text(RUNBOOK)
    runbook = load_runbook(path)
    return build_plan(runbook, methods={"gis/gis": method}), runbook_facts(runbook, path, AT_RUN_END)


def _task(
    name: str, start: int, result: Any, *, state: str = "Completed", attempt: str = ATTEMPT, run: str = RUN_ID, tries: int = 1
) -> TaskRunRecord:
    state_type = {"Completed": "COMPLETED", "Cached": "COMPLETED", "Failed": "FAILED"}[state]
    return TaskRunRecord(
        id=f"task-{name}-{start}",
        name=name,
        flow_run_id=run,
        attempt=attempt,
        state=state,
        state_type=state_type,
        message="" if state_type == "COMPLETED" else f"Task run encountered an exception: {name} failed",
        started=T0 + timedelta(seconds=start),
        ended=T0 + timedelta(seconds=start + 2),
        run_count=tries,
        result=result if state_type == "COMPLETED" else None,
    )


def _results(target_fingerprint: dict[str, Any]) -> dict[str, Any]:
    at = lambda s: (T0 + timedelta(seconds=s)).isoformat(timespec="seconds")  # noqa: E731
    change = DnsChange("gis", RECORD_NAME, "A", [OLD], 300, NEW, 60, "update")
    return {
        "gis/freeze": FreezeResult(databases={"gis": FrozenDatabase(fingerprint=FINGERPRINT, marker={}, size=8192, rows=5)}),
        "gis/stream/gis": StreamResult(
            database="gis/gis",
            bytes=4096,
            sha256="a" * 64,
            sha256_received="a" * 64,
            roles_needed=["gis_app"],
            roles_created=["gis_app"],
        ),
        "gis/export/gis": ExportResult(path="/work/report-estate/gis.gis.dump", bytes=4096),
        "gis/transfer/gis": TransferResult(bytes=4096, bytes_sent=4096, files=3, sha256="b" * 64, sha256_received="b" * 64),
        "gis/import/gis": ImportResult(database="gis/gis", dump_sha256="b" * 64, roles_needed=["gis_app"], roles_created=[]),
        "gis/verify/gis": VerifyResult(database="gis/gis", tables=2, rows=5, fingerprint=target_fingerprint),
        "gis/start": ActionsResult(
            results=[ActionOutcome("gis.start[0] http", "http", url=f"http://{NEW}:8080/maintenance", status=200)]
        ),
        "gis/smoke": ActionsResult(
            results=[ActionOutcome("gis.smoke[0] http", "http", url=f"http://{NEW}:8080/health", status=200, latency_ms=12)]
        ),
        "gate/go-no-go": GateResult(
            "go-no-go", ["gis"], True, "auto_approve", "every check before it passed", at(30), [change], "d1g3st"
        ),
        "gis/source-check": SourceCheckResult(databases=[SourceProof("gis/gis", "marker")]),
        "gis/dns": DnsSwitchResult(
            records=[
                RecordSwitched(RECORD_NAME, "A", [OLD], NEW, [NEW], old_ttl=300, ttl=60, switched_at=at(40), confirmed_at=at(41))
            ]
        ),
        "gis/post-switch": PostSwitchResult(
            checks=[
                ActionOutcome(
                    "gis.dns[0].check http", "http", url="http://gis.example.test.:8080/health", status=200, address=NEW
                )
            ]
        ),
    }


def completed_record(tmp: Path, target_fingerprint: dict[str, Any] | None = None, method: str = "stream") -> RunRecord:
    plan, facts = plan_and_facts(tmp, method)
    results = _results(copy.deepcopy(FINGERPRINT if target_fingerprint is None else target_fingerprint))
    tasks = [_task("preflight", 0, {"ok": True})]
    for i, step in enumerate(plan.steps.values()):
        tasks.append(_task(step.id, 5 + 5 * i, results.get(step.id, ActionsResult())))
    history = [
        StateChange("Scheduled", "SCHEDULED", T0),
        StateChange("Running", "RUNNING", T0),
        StateChange("Completed", "COMPLETED", T0 + timedelta(minutes=2)),
    ]
    run = FlowRunRecord(
        id=RUN_ID,
        name="report-estate 2027-07-16 18:00",
        flow="cutover",
        state="Completed",
        state_type="COMPLETED",
        message="",
        created=T0,
        started=T0,
        ended=T0 + timedelta(minutes=2),
        run_count=1,
        parameters={"runbook": facts.path},
        created_by=None,
        deployment="cutover/cutover",
        history=history,
    )
    journal = {
        f"plan-{ATTEMPT}": plan.to_dict(),
        f"dns-{ATTEMPT}-gis": {
            "old": {RECORD_NAME: {"values": [OLD], "ttl": 300}},
            "switched": [RECORD_NAME],
            "writes_baseline": {"gis/gis": 10},
        },
    }
    return RunRecord(
        run=run,
        task_runs=tasks,
        events=[],
        journal=journal,
        runbook=facts,
        ui_url="http://127.0.0.1:4200",
        gathered_at=T0 + timedelta(hours=1),
    )


def rolled_back_record(tmp: Path) -> RunRecord:
    """The completed run, except that the check after the switch failed twice; the operator
    answered roll back, acknowledging the writes; the run undid everything itself."""
    record = completed_record(tmp)
    failed = replace(
        next(t for t in record.task_runs if t.name == "gis/post-switch"),
        state="Failed",
        state_type="FAILED",
        result=None,
        run_count=2,
    )
    tasks = [failed if t.name == "gis/post-switch" else t for t in record.task_runs]
    ponr = _task(
        "point-of-no-return",
        100,
        {"roll_back": True, "acknowledged": True, "decided_by": "Anna de Vries", "reason": "broken", "writes": {"gis/gis": 3}},
    )
    tasks.append(ponr)
    # started out of plan order on purpose: the report orders them as the rollback plan does
    undo = [
        (
            "rollback/gis/freeze",
            140,
            CompensationResult("sources writable, old site out of maintenance", {"writable": ["gis/gis"]}),
        ),
        (
            "rollback/gis/dns",
            110,
            CompensationResult(
                "1 record(s) back at their old values",
                {
                    "records": [
                        {
                            "name": RECORD_NAME,
                            "type": "A",
                            "values": [OLD],
                            "ttl": 300,
                            "changed": True,
                            "reverted_at": "2027-07-16T16:01:50+00:00",
                            "confirmed_at": "2027-07-16T16:01:51+00:00",
                        }
                    ]
                },
            ),
        ),
        (
            "rollback/gis/stream/gis",
            130,
            CompensationResult("renamed to gis_rolled_back_20270716160200", {"database": "gis/gis"}),
        ),
        ("rollback/gis/start", 120, CompensationResult("new site back in maintenance", {})),
    ]
    tasks += [_task(name, start, result) for name, start, result in undo]
    events = [
        EventRecord(
            "cutover.step.failed",
            T0 + timedelta(seconds=s),
            "gis/post-switch",
            {"duration_s": 1.0, "error": f"try {n}: expected text not found"},
            failed.id,
        )
        for n, s in ((1, 91), (2, 95))
    ]
    events.append(
        EventRecord(
            "cutover.decision.waiting",
            T0 + timedelta(seconds=100),
            "point-of-no-return",
            {"failed": ["gis/post-switch"], "writes": {"gis/gis": 2}, "timeout_s": 3600},
            ponr.id,
        )
    )
    events.append(
        EventRecord("cutover.decision.decided", T0 + timedelta(seconds=105), "point-of-no-return", {"roll_back": True}, ponr.id)
    )
    run = replace(record.run, state="Failed", state_type="FAILED", message="cutover report-estate did not complete; rolled back")
    journal = {**record.journal, "rollback": {"of": ATTEMPT, "finished": True}, "generation": 1}
    return replace(record, run=run, task_runs=tasks, events=events, journal=journal)
