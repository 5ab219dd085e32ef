"""The cutover report of a real run, through the ``cutover/cutover`` and rollback
deployments and the worker, on the sandbox: one cutover of gis by the file method (the
dump's whole chain of custody), reused by every test here.

Completed: its report is an artifact of the run (the JSON it was made from kept beside the
run, matching the digest the artifact shows) and a file from ``cutover report``; its
per-table figures equal what this test's own SQL reads from the source and target
catalogs. Every format is rendered with the sandbox stopped (the session's sandbox goes
down for that and comes back up; nothing else runs meanwhile): no format holds a secret,
the public ones no host name. Then the same run rolled back on request (past the switch,
the writes acknowledged lost): the rollback run's report says rolled back, lists the
compensations in their order, the DNS record back at its old value and the target
database renamed aside.

Rendered pages go to ``$CUTOVER_SCREENSHOTS`` when it is set (docs/report.md's pictures).
The run is the one-application (gis) runbook of test_crash_and_cancel.py, without that
module's ballast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from psycopg import sql

from cutover.orchestration.api import prefect_client
from cutover.orchestration.follow import start_run
from cutover.postgres.endpoint import connect
from cutover.report import ARTIFACT_KEY, build_report, digest, render
from cutover.report.custody import SOURCE_PROOFS
from cutover.report.gather import gather
from cutover.sandbox import lifecycle
from cutover.sandbox.info import NEW_SITE_ADDRESS, OLD_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset
from tasks.journal import run_journal
from tests import secret_scan
from tests.conftest import run_cli
from tests.integration.test_crash_and_cancel import (
    APP,
    DB,
    ROLLBACK_DEPLOYMENT,
    endpoint,
    finish,
    local_work_root,
    remove_work_dirs,
    runbook_variant,
    start,
)

pytestmark = pytest.mark.integration

CUTOVER = "werkendam-report-tests"
ARTIFACT_WAIT_S = 60
# The rendering settings under which the content hash is defined (the report's notes say so)
_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "search_path": "pg_catalog",
}


# The 64-bit value of a row rendered as text, per algorithm the report names (UTF-8 databases)
_ROW_VALUE = {
    "hash64": 'hashtextextended(({}::text) collate "C", 0)',
    "md5-64": "('x' || left(md5(convert_to({}::text, 'UTF8')), 16))::bit(64)::bigint",
}


def catalog_figures(pg: Any, database: str, algorithm: str) -> dict[str, tuple[int, str]]:
    """Per table (schema.table): the row count and the content hash as the report defines
    it (the sum of a 64-bit hash of each row as text, columns in name order, by the
    algorithm the report names), computed here with this test's own SQL."""
    figures = {}
    with connect(endpoint(pg), database, autocommit=True) as conn, conn.transaction():
        for name, value in _SETTINGS.items():
            conn.execute("select pg_catalog.set_config(%s, %s, true)", (name, value))
        tables = conn.execute(
            """select n.nspname, c.relname, c.relkind, array_agg(a.attname::text order by a.attname::text)
               from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
               join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
               where c.relkind in ('r', 'p') and not c.relispartition and c.relpersistence <> 't'
                 and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_'
               group by 1, 2, 3 order by 1, 2"""
        ).fetchall()
        for schema, table, kind, columns in tables:
            row = sql.SQL("row({})").format(sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns))
            query = sql.SQL("select count(*), coalesce(sum(" + _ROW_VALUE[algorithm] + "), 0)::text from {}{} t").format(
                row, sql.SQL("only " if kind == "r" else ""), sql.Identifier(schema, table)
            )
            count, content = conn.execute(query).fetchone()
            figures[f"{schema}.{table}"] = (int(count), str(content))
    return figures


def report_artifact(api_url: str, flow_run_id: str) -> str:
    """The markdown of the run's report artifact, once its end-of-run hook made it."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    deadline = time.monotonic() + ARTIFACT_WAIT_S
    while True:
        with prefect_client(api_url) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
                )
            )
        if found:
            return str(found[-1].data)
        assert time.monotonic() < deadline, f"no {ARTIFACT_KEY} artifact on flow run {flow_run_id} after {ARTIFACT_WAIT_S}s"
        time.sleep(1)


def cli_report(run_id: str, tmp_path: Path, fmt: str, *, public: bool = False) -> str:
    out = tmp_path / f"report-{run_id[:8]}{'-public' if public else ''}.{fmt}"
    done = run_cli("report", run_id, "--format", fmt, "--out", str(out), *(["--public"] if public else []), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == (0o644 if public else 0o600)
    return out.read_text()


def keep_samples(pages: dict[str, str]) -> None:
    """Rendered reports to ``$CUTOVER_SCREENSHOTS``, when set (the docs' pictures are made from them)."""
    shots = os.environ.get("CUTOVER_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            (Path(shots) / name).write_text(text)


secrets_of = secret_scan.secrets_of


def host_names(sandbox: SandboxInfo) -> list[str]:
    names = {
        sandbox.onprem.host,
        sandbox.cloud.host,
        sandbox.ssh.host,
        sandbox.powerdns.dns_host,
        NEW_SITE_ADDRESS,
        OLD_SITE_ADDRESS,
    }
    names |= {app.hostname for app in sandbox.apps.values()} | {app.hostname.rstrip(".") for app in sandbox.apps.values()}
    names.add("werkendam.test")
    return sorted(names)


@contextmanager
def sandbox_stopped(sandbox: SandboxInfo) -> Iterator[None]:
    """The session's sandbox down (both clusters, sshd, PowerDNS, the applications) inside
    the block; up again after it, with its new pids in the session's object."""
    lifecycle.down(sandbox.dir)
    try:
        assert not any(service.up for service in lifecycle.status(sandbox.dir)), "the sandbox is down"
        yield
    finally:
        again = lifecycle.up(sandbox.dir)
        sandbox.__dict__.update(again.__dict__)


@pytest.fixture(scope="module")
def sampler(sandbox: SandboxInfo, cutover_worker: Any) -> Iterator[secret_scan.ProcessSampler]:
    """Command lines and environments of every process the module's runs start (under the
    worker, or under the target host's sshd), sampled from before the first run to the end."""
    needles = secret_scan.Needles(secret_scan.secrets_of(sandbox))
    with secret_scan.ProcessSampler(needles, lambda: {cutover_worker.pid, sandbox.ssh.pid or -1}) as running:
        yield running


@pytest.fixture(scope="module")
def completed_run(
    sandbox: SandboxInfo,
    cutover_worker: Any,
    prefect_api: Any,
    tmp_path_factory: pytest.TempPathFactory,
    sampler: secret_scan.ProcessSampler,
) -> Iterator[dict[str, Any]]:
    """A completed cutover of gis by the file method: its id, runbook, report artifact and
    the report's JSON kept at its end; both catalogs' figures after it; and its report
    rendered with the sandbox stopped: through ``cutover report`` as team JSON and HTML and
    as public JSON, the other formats from the same record in this process."""
    reset(sandbox)
    tmp = tmp_path_factory.mktemp("report")
    runbook = runbook_variant(tmp, "file", cutover=CUTOVER)
    run_id = start(prefect_api.api_url, runbook)
    outcome = finish(prefect_api.api_url, run_id)
    assert outcome.state_type == "COMPLETED", outcome
    try:
        found = {
            "id": run_id,
            "runbook": runbook,
            "tmp": tmp,
            "artifact": report_artifact(prefect_api.api_url, run_id),
            "kept": run_journal(run_id).read(f"report-{run_id}"),
        }
        with sandbox_stopped(sandbox):
            rendered = {
                (fmt, public): cli_report(run_id, tmp, fmt, public=public)
                for fmt, public in (("json", False), ("html", False), ("json", True))
            }
            record = gather(prefect_api.api_url, run_id, run_journal)
            for public in (False, True):
                report = build_report(record, public=public)
                for fmt in ("html", "md", "json"):
                    rendered.setdefault((fmt, public), render(report, fmt))
        found["rendered"] = rendered
        found["json"] = json.loads(rendered[("json", False)])
        (custody,) = found["json"]["databases"]
        algorithm = custody["source_fingerprint"]["algorithm"]
        assert algorithm == custody["target_fingerprint"]["algorithm"] and algorithm in _ROW_VALUE, algorithm
        found["source"] = catalog_figures(sandbox.onprem, DB, algorithm)
        found["target"] = catalog_figures(sandbox.cloud, DB, algorithm)
        keep_samples(
            {"report-completed.html": rendered[("html", False)], "report-completed-public.html": rendered[("html", True)]}
        )
        yield found
    finally:
        reset(sandbox)
        remove_work_dirs(sandbox, CUTOVER)


def test_the_report_of_a_completed_cutover_has_per_table_figures_equal_to_both_catalogs(completed_run, sandbox):
    report, run_id = completed_run["json"], completed_run["id"]
    assert report["verdict"]["outcome"] == "completed" and report["verdict"]["headline"] == "Completed and verified"
    assert digest.check(report), "the JSON's digest matches its content"
    # the artifact is the report as the run's end made it; its JSON was kept beside the run
    kept = completed_run["kept"]
    assert digest.check(json.loads(kept["json"])) and kept["digest"] in completed_run["artifact"]
    assert "## Verdict: Completed and verified" in completed_run["artifact"]

    (custody,) = report["databases"]
    assert (custody["application"], custody["database"], custody["method"]) == (APP, DB, "file")
    assert custody["verified"] and custody["verdict"].startswith("equal")
    source, target = completed_run["source"], completed_run["target"]
    assert source == target and len(source) >= 2, "the move itself, by this test's SQL"
    reported = {t["table"]: t for t in custody["tables"]}
    assert set(reported) == set(source), "every table of the catalog, and only those"
    for table, (rows, content) in source.items():
        figures = reported[table]
        assert (figures["source_rows"], figures["source_hash"]) == (rows, content), table
        assert (figures["target_rows"], figures["target_hash"]) == target[table], table
        assert figures["equal"]
    assert custody["source_fingerprint"]["digest"] == custody["target_fingerprint"]["digest"]
    assert custody["source_fingerprint"]["rows"] == sum(rows for rows, _ in source.values())

    # the dump as sent, as received and as checked before the restore; where it lived
    assert len(custody["dump_sha256_sent"]) == 64
    assert custody["dump_sha256_sent"] == custody["dump_sha256_received"] == custody["dump_sha256_before_restore"]
    assert custody["dump_bytes"] > 0 and custody["dump_files"] >= 2
    assert f"{APP}_app" in custody["roles_needed"]
    places = {p["where"].split(":")[0]: p for p in custody["dump_locations"]}
    assert set(places) == {"orchestrator", "target host"}
    assert places["orchestrator"]["path"].endswith(f"{CUTOVER}/{run_id}/{APP}.{DB}.dump")
    # private on both hosts, and removed from both once verified, at a recorded time
    for place in places.values():
        assert place["mode"] == "directories 0700, files 0600" and not place["kept"], place
        assert place["removed_at"] and place["removed_at"] >= report["run"]["started"][:19], place
    assert not Path(places["orchestrator"]["path"]).exists() and not Path(places["target host"]["path"]).exists()
    assert custody["source_check"] in SOURCE_PROOFS.values(), custody["source_check"]  # the cheap proof, or the full pass

    # DNS, the gate's decision, checks, and the timeline of every step
    (record,) = report["dns"]
    app = sandbox.apps[APP]
    assert record["name"] == app.hostname and record["old_values"] == [OLD_SITE_ADDRESS]
    assert record["new_value"] == NEW_SITE_ADDRESS and NEW_SITE_ADDRESS in record["answered"]
    assert record["switched_at"] <= record["confirmed_at"] and record["state"].startswith("switched and confirmed")
    (gate,) = report["decisions"]
    assert gate["kind"] == "gate" and gate["decision"] == "go" and gate["decided_by"] == "auto_approve"
    assert any("verified" in line for line in gate["evidence"])
    assert {c["phase"] for c in report["checks"]} == {"smoke", "post-switch"} and all(c["passed"] for c in report["checks"])
    names = [t["name"] for t in report["timeline"]]
    for step in (
        f"{APP}/freeze",
        f"{APP}/export/{DB}",
        f"{APP}/transfer/{DB}",
        f"{APP}/import/{DB}",
        f"{APP}/verify/{DB}",
        f"{APP}/dns",
    ):
        assert step in names
    assert report["rollbacks"] == []

    # the audit log: 0600 on the worker's disk, and kept in Prefect with its digest
    audit_file = local_work_root() / CUTOVER / run_id / "audit.jsonl"
    assert stat.S_IMODE(audit_file.stat().st_mode) == 0o600
    (kept,) = report["sources"]["audit_logs"]
    assert kept["name"] == run_id
    assert hashlib.sha256(audit_file.read_bytes()[: kept["bytes"]]).hexdigest() == kept["sha256"]


def test_every_format_rendered_with_the_sandbox_stopped_holds_no_secret_and_the_public_one_no_host(completed_run, sandbox):
    rendered = completed_run["rendered"]
    team = completed_run["json"]
    assert team["verdict"]["outcome"] == "completed" and digest.check(json.loads(rendered[("json", True)]))
    assert "<h2>Databases: chain of custody</h2>" in rendered[("html", False)]
    for (fmt, public), text in rendered.items():
        assert re.search(r"[Dd]igest.{0,60}[0-9a-f]{64}", text), (fmt, public, "every format shows its digest")
        leaked = [secret[:6] + "..." for secret in secrets_of(sandbox) if secret in text]
        assert leaked == [], (fmt, public, leaked)
    hosts = host_names(sandbox)
    assert any(host in rendered[("md", False)] for host in hosts), "the team report names hosts (the check below is not empty)"
    for fmt in ("html", "md", "json"):
        text = rendered[(fmt, True)]
        assert [host for host in hosts if host in text] == [], fmt
        assert "127.0.0." not in text and "://" not in text, fmt


def target_databases_like(sandbox: SandboxInfo, pattern: str) -> list[str]:
    with connect(endpoint(sandbox.cloud), "postgres", autocommit=True) as admin:
        return [r[0] for r in admin.execute("select datname from pg_database where datname like %s order by 1", (pattern,))]


def test_the_completed_run_rolled_back_on_request_reports_its_compensations_in_order_and_dns_restored(
    completed_run, sandbox, prefect_api
):
    """Runs after the two above: it rolls their run back (past the switch, writes acknowledged lost)."""
    api, run_id = prefect_api.api_url, completed_run["id"]
    rollback_id = start_run(
        api,
        ROLLBACK_DEPLOYMENT,
        {"cutover_run": run_id, "runbook": str(completed_run["runbook"]), "acknowledge_writes_lost": True},
    )
    assert finish(api, rollback_id).state_type == "COMPLETED"
    markdown = report_artifact(api, rollback_id)
    assert "## Verdict: Rolled back, sources intact" in markdown, markdown[:600]
    (aside,) = target_databases_like(sandbox, f"{DB}_rolled_back_%")
    assert target_databases_like(sandbox, DB) == [], "nothing left under the database's own name"

    record = gather(api, rollback_id, run_journal)  # a rollback run's report is its cutover run's
    report = build_report(record).to_dict()
    keep_samples({"report-rolled-back.html": render(build_report(record), "html")})
    assert report["run"]["flow_run_id"] == run_id and [r["id"] for r in report["run"]["rollback_runs"]] == [rollback_id]
    assert report["verdict"]["outcome"] == "rolled_back"
    assert any("acknowledging that writes since the switch are lost" in line for line in report["verdict"]["details"])
    (rolled,) = report["rollbacks"]
    assert rolled["finished"] and rolled["by"].startswith("rollback run ")
    order = [(c["order"], c["step"], c["state"]) for c in rolled["compensations"]]
    assert order == [
        (1, f"{APP}/dns", "Completed"),
        (2, f"{APP}/start", "Completed"),
        (3, f"{APP}/import/{DB}", "Completed"),
        (4, f"{APP}/freeze", "Completed"),
    ], order
    assert rolled["compensations"][2]["done"] == f"renamed to {aside}"
    assert report["databases"][0]["after_rollback"] == f"renamed to {aside}"
    (dns,) = report["dns"]
    assert dns["old_values"] == [OLD_SITE_ADDRESS] and dns["restored_values"] == [OLD_SITE_ADDRESS]
    assert dns["switched_at"] <= dns["restored_at"] and dns["state"] == "switched, then put back to its old value"
    assert {a["name"] for a in report["sources"]["audit_logs"]} == {run_id, f"rollback-{rollback_id}"}


def test_no_secret_reaches_any_sink_of_a_completed_a_rolled_back_and_a_failed_run(
    completed_run, sandbox, prefect_api, sampler, tmp_path
):
    """Runs last: the completed run and its rollback above, then a run whose smoke check
    fails and which rolls itself back. Then every sink is scanned for every secret of the
    estate: Prefect's home (its database: logs, task-run states, results, artifacts,
    events, variables; its result storage), the work directories on both hosts (audit
    files, dumps), the reports as rendered, and what the process sampler read while the
    runs ran (command lines of every process; environments of every process the runs
    started, locally and on the target host)."""
    reset(sandbox)

    def failing_smoke(data: dict[str, Any]) -> None:
        (app,) = data["applications"]
        app["smoke"] = [{"sql": {"site": "cloud", "database": DB, "query": "select current_user", "expect": "nobody"}}]

    runbook = runbook_variant(tmp_path, "file", cutover=CUTOVER, edit=failing_smoke)
    run_id = start(prefect_api.api_url, runbook)
    outcome = finish(prefect_api.api_url, run_id)
    assert outcome.state_type == "FAILED", outcome
    secret_scan.wait_for_samples(sampler)
    try:
        needles = secret_scan.Needles(secrets_of(sandbox))
        assert len(needles.secrets) >= 8, needles.secrets and "every password, the DNS key, the SSH key's lines"
        hits: dict[str, list[str]] = {}
        counts = {}
        for name, root in (
            ("prefect home", Path(prefect_api.home)),
            ("local work dir", local_work_root() / CUTOVER),
            ("target work dir", Path(sandbox.ssh.work_dir)),
        ):
            found, counts[name] = needles.scan_tree(root)
            hits.update(found)
        assert counts["prefect home"] >= 3 and counts["local work dir"] >= 3, counts  # a database, results, audit files
        assert any(p.name.endswith(".db") for p in Path(prefect_api.home).rglob("*")), "Prefect's database was scanned"
        for (fmt, public), text in completed_run["rendered"].items():
            if needles.found_in(text.encode()):
                hits[f"report {fmt} public={public}"] = ["..."]
        assert hits == {}, hits
        assert sampler.hits == [], sorted({hit.split(": ")[0].split(" ", 3)[-1] for hit in sampler.hits})
        # the sample saw what it is about: programs of both hosts, and a holder's secrets
        for program in ("pg_dump", "pg_dumpall", "pg_restore", "cutover-remote", secret_scan.GUARDIAN_MARKER):
            assert sampler.saw(program), (program, sorted(sampler.seen)[:40])
        assert sampler.holder_secrets > 0, "a flow-run process does hold the secrets: the sampler reads environments"
    finally:
        reset(sandbox)
