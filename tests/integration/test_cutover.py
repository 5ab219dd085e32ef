"""End to end: the cutover of the sandbox estate, run from its Prefect deployment by a
worker, against the real clusters, SSH host, PowerDNS server and applications."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cutover.dns.query import query
from cutover.postgres import fingerprint, freeze
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.sandbox.info import NEW_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset

pytestmark = pytest.mark.integration

DEMO = Path("runbooks/demo.yaml")


def runbook_variant(tmp_path: Path, method: str) -> Path:
    """The demo runbook with every database moved by ``method`` and the gate approving
    itself (the gate's pause is tested on its own)."""
    text = DEMO.read_text().replace("method: auto", f"method: {method}")
    text = text.replace("    applications: all\n", "    applications: all\n    auto_approve: true\n", 1)
    path = tmp_path / f"demo-{method}.yaml"
    path.write_text(text)
    return path


def endpoint(pg) -> PgEndpoint:
    return PgEndpoint(host=pg.host, port=pg.port, user=pg.user, password=pg.password, sslmode="disable")


def run_cutover(runbook: Path, timeout_s: float = 600):
    from prefect.deployments import run_deployment

    return run_deployment(
        "cutover/cutover", parameters={"runbook": str(runbook.resolve()), "outside_window": True}, timeout=timeout_s
    )


def assert_estate_moved(sandbox: SandboxInfo) -> None:
    source, target = endpoint(sandbox.onprem), endpoint(sandbox.cloud)
    for app in sandbox.apps.values():
        for db in app.databases:
            with connect(source, db, autocommit=True) as conn:
                before = fingerprint.fingerprint(conn)
            with connect(target, db, autocommit=True) as conn:
                after = fingerprint.fingerprint(conn)
            assert fingerprint.compare(before, after) == [], db
            with connect(source, "postgres", autocommit=True) as admin:
                assert freeze.is_read_only(admin, db), f"source {db} must stay read-only (it is the fallback)"
        answer = query(app.hostname, "A", server_host=sandbox.powerdns.dns_host, server_port=sandbox.powerdns.dns_port)
        assert answer.values == (NEW_SITE_ADDRESS,), app.hostname
        health = httpx.get(f"{app.new_url}/health", timeout=10).json()
        assert health["status"] == "ok" and health["site"] == "cloud" and health["cluster"] == "cloud", health


@pytest.fixture
def fresh_estate(sandbox: SandboxInfo) -> SandboxInfo:
    reset(sandbox)
    return sandbox


def test_copy_cutover_moves_the_whole_estate_table_by_table_and_every_copy_is_verified(fresh_estate, cutover_worker, tmp_path):
    """The whole estate by the copy method (what ``auto`` takes above 64 MiB): the tables of
    every database through the SSH tunnel, each database proven by its fingerprint."""
    flow_run = run_cutover(runbook_variant(tmp_path, "copy"))
    assert flow_run.state.is_completed(), flow_run.state.message
    assert_estate_moved(fresh_estate)
    summary = flow_run.state.result()
    assert summary["ok"] and {db["method"] for db in summary["databases"].values()} == {"copy"}
    assert all(db["verified"] and db["rows"] and db["bytes"] for db in summary["databases"].values()), summary["databases"]
    with connect(endpoint(fresh_estate.cloud), "postgres", autocommit=True) as admin:
        comments = dict(admin.execute("select datname, shobj_description(oid, 'pg_database') from pg_database").fetchall())
    moved = [db for app in fresh_estate.apps.values() for db in app.databases]
    assert all(comments[db].endswith(":imported") for db in moved), comments


def test_file_cutover_moves_the_whole_estate_and_a_retry_skips_every_finished_move_step(fresh_estate, cutover_worker, tmp_path):
    """The whole estate by the file method (the demo, tested in test_orchestration.py,
    streams it), then ``prefect flow-run retry`` of the finished run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run = run_cutover(runbook_variant(tmp_path, "file"))
    assert flow_run.state.is_completed(), flow_run.state.message
    assert_estate_moved(fresh_estate)
    summary = flow_run.state.result()
    assert summary["ok"] and {db["method"] for db in summary["databases"].values()} == {"file"}
    assert all(db["verified"] and db["rows"] and len(db["sha256"]) == 64 for db in summary["databases"].values())
    with connect(endpoint(fresh_estate.cloud), "postgres", autocommit=True) as admin:
        oids_before = dict(admin.execute("select datname, oid from pg_database").fetchall())

    retry = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "retry", str(flow_run.id)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert retry.returncode == 0, retry.stdout + retry.stderr
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 600
        while True:
            again = client.read_flow_run(flow_run.id)
            if again.run_count >= 2 and again.state.is_final():
                break
            assert time.monotonic() < deadline, "the retried run did not finish"
            time.sleep(1)
        assert again.state.is_completed(), again.state.message
        # task run states reach the API through events, a little after the flow run ends:
        # wait until every task run of the flow run has recorded its final state
        while True:
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            if all(t.state is not None and t.state.is_final() for t in task_runs):
                break
            assert time.monotonic() < deadline, "task run states did not arrive"
            time.sleep(1)
    states_by_step: dict[str, list[str]] = {}
    for run in task_runs:
        if any(f"/{phase}/" in run.name for phase in ("export", "transfer", "import")):
            states_by_step.setdefault(run.name, []).append(run.state.name)
    assert len(states_by_step) == 3 * sum(len(a.databases) for a in fresh_estate.apps.values())
    for step, states in states_by_step.items():
        # the first attempt ran it; the retry found its cached result and did not run it again
        assert sorted(states) == ["Cached", "Completed"], (step, states)
    with connect(endpoint(fresh_estate.cloud), "postgres", autocommit=True) as admin:
        oids_after = dict(admin.execute("select datname, oid from pg_database").fetchall())
    assert oids_after == oids_before, "a retry must not drop and restore a finished database"
    assert_estate_moved(fresh_estate)
