"""Fault injection on the sandbox: one real fault per phase, and what the cutover does
about it (completes after a retry, or rolls back; past the point of no return, asks).

The runbook is the demo's ``gis`` application alone (one database, no dependencies, no
gate), with one retry a second apart, run in this process against the session's Prefect
server. Faults are real: a program that is held and then killed, a cluster stopped, a
PowerDNS server stopped or refusing, an application answering 500, a row written where
nobody may write (see tests/faults.py). Where a fault must land between two steps, the
programs of the run are wrappers around the real ``pg_dump`` and ``pg_restore`` (the
runbook's ``bin_dir`` and ``pg_bin_dir``) that can be held before or after the real
program runs, by a file (:class:`ProgramGate`).

After every scenario: the sources' fingerprints as before the run (unless the scenario
wrote to the source itself), and, if rolled back, sources writable, DNS at the old
values, the old site live and the new one in maintenance; and no process left behind.
The table of scenarios is in docs/when-things-go-wrong.md.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run

from cutover.dns.query import query
from cutover.postgres import fingerprint, freeze
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.sandbox.info import NEW_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.postgres_cluster import find_bin_dir
from cutover.sandbox.reset import reset
from tests import faults

pytestmark = pytest.mark.integration

DEMO = Path("runbooks/demo.yaml")
APP, DB = "gis", "gis"


# --- the runbook, its programs, and running it ----------------------------------------


class ProgramGate:
    """A wrapper directory for PostgreSQL's client programs: ``programs`` (``pg_dump`` and
    ``pg_restore`` unless told otherwise) run the real program, but wait first (``hold("before")``) or after it ended
    (``hold("after")``) while a hold file exists, writing their pid into a ``waiting-*``
    file; the other programs are links to the real ones. ``--version`` is never held."""

    def __init__(self, directory: Path, programs: tuple[str, ...] = ("pg_dump", "pg_restore")) -> None:
        self.dir = directory
        real = find_bin_dir()
        directory.mkdir(parents=True, exist_ok=True)
        for entry in Path(real).iterdir():
            if entry.name not in programs:
                (directory / entry.name).symlink_to(entry)
        for program in programs:
            script = directory / program
            script.write_text(
                "#!/bin/sh\n"
                f"d={directory}; p={program}; real={real}/{program}\n"
                'case " $* " in *" --version "*) exec "$real" "$@";; esac\n'
                'if [ -e "$d/hold-before-$p" ]; then echo $$ > "$d/waiting-before-$p"\n'
                '  while [ -e "$d/hold-before-$p" ]; do sleep 0.05; done; fi\n'
                '"$real" "$@"; rc=$?\n'
                'if [ -e "$d/hold-after-$p" ]; then echo $$ > "$d/waiting-after-$p"\n'
                '  while [ -e "$d/hold-after-$p" ]; do sleep 0.05; done; fi\n'
                "exit $rc\n"
            )
            script.chmod(0o755)

    def hold(self, program: str, when: str) -> None:
        (self.dir / f"waiting-{when}-{program}").unlink(missing_ok=True)
        (self.dir / f"hold-{when}-{program}").touch()

    def reached(self, program: str, when: str, timeout_s: float = 60) -> int:
        """Wait until the program is held; its pid (the wrapper's, which runs it)."""
        marker = self.dir / f"waiting-{when}-{program}"
        deadline = time.monotonic() + timeout_s
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline, f"{program} never reached the {when} hold"
            time.sleep(0.05)
        return int(marker.read_text())

    def release(self, program: str, when: str) -> None:
        (self.dir / f"hold-{when}-{program}").unlink(missing_ok=True)


def runbook_variant(tmp_path: Path, gate: ProgramGate, *, method: str = "stream", edit=None) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["applications"] = [a for a in data["applications"] if a["name"] == APP]
    data["applications"][0]["depends_on"] = []
    data["gates"] = []
    data["defaults"].update(retries=1, retry_delay_s=1)
    data["sites"]["onprem"]["postgres"]["bin_dir"] = str(gate.dir)
    data["sites"]["cloud"]["ssh"]["pg_bin_dir"] = str(gate.dir)
    for db in data["applications"][0]["databases"]:
        db["method"] = method
    if edit:
        edit(data)
    path = tmp_path / "runbook.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cutover(runbook: Path, decision_timeout_s: int = 120) -> Any:
    from flows.cutover_flow import cutover

    return cutover(str(runbook), decision_timeout_s=decision_timeout_s, outside_window=True, return_state=True)


class InBackground:
    """A cutover run in a thread of this process, so that the test can act while it runs."""

    def __init__(self, runbook: Path) -> None:
        self._state: Any = None
        self._thread = threading.Thread(target=self._run, args=(runbook,), daemon=True)
        self._thread.start()

    def _run(self, runbook: Path) -> None:
        self._state = run_cutover(runbook)

    def state(self, timeout_s: float = 300) -> Any:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the run did not end within {timeout_s} s"
        return self._state


def run_rollback(flow_run_id: str, runbook: Path, acknowledge: bool = False) -> Any:
    from flows.rollback_flow import rollback

    return rollback(flow_run_id, str(runbook), acknowledge, return_state=True)


def answer_when_paused(run_input: dict[str, Any], before_answer=None) -> threading.Thread:
    """Answer the first pause of the run this test starts next (from another thread, as an
    operator would from the UI), after ``before_answer()`` if given."""
    started_after = time.time()

    def answer() -> None:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                for run in client.read_flow_runs(limit=10, sort="START_TIME_DESC"):
                    if run.state and run.state.is_paused() and run.created and run.created.timestamp() >= started_after - 1:
                        if before_answer:
                            before_answer()
                        resume_flow_run(run.id, run_input=run_input)
                        return
                time.sleep(0.3)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def summary_of(state: Any) -> dict[str, Any]:
    return state.result(raise_on_failure=False)


def flow_run_id(state: Any) -> str:
    return str(state.state_details.flow_run_id)


# --- what the estate looks like -----------------------------------------------------


def endpoint(pg) -> PgEndpoint:
    return PgEndpoint(host=pg.host, port=pg.port, user=pg.user, password=pg.password, sslmode="disable")


def source_fingerprint(sandbox: SandboxInfo) -> fingerprint.Fingerprint:
    with connect(endpoint(sandbox.onprem), DB, autocommit=True) as conn:
        return fingerprint.fingerprint(conn)


def assert_moved(sandbox: SandboxInfo, before: fingerprint.Fingerprint) -> None:
    with connect(endpoint(sandbox.cloud), DB, autocommit=True) as conn:
        assert fingerprint.compare(before, fingerprint.fingerprint(conn)) == [], "the target must equal the source"
    assert fingerprint.compare(before, source_fingerprint(sandbox)) == [], "the source must not change"
    with connect(endpoint(sandbox.onprem), "postgres", autocommit=True) as admin:
        assert freeze.is_read_only(admin, DB), "a moved source stays read-only (it is the fallback)"
    app = sandbox.apps[APP]
    assert query(app.hostname, "A", server_host=sandbox.powerdns.dns_host, server_port=sandbox.powerdns.dns_port).values == (
        NEW_SITE_ADDRESS,
    )


def assert_completed_and_moved(state: Any, sandbox: SandboxInfo, before: fingerprint.Fingerprint) -> None:
    assert state.is_completed(), state.message
    assert_moved(sandbox, before)
    faults.assert_no_processes_left(sandbox)


def run_with_a_program_starting_on_a_stopped_cluster(
    sandbox: SandboxInfo, gate: ProgramGate, runbook: Path, program: str, site: str
) -> Any:
    """Run the cutover; ``program`` (pg_dump, pg_restore) starts while the ``site`` cluster
    is down, and fails; the cluster is back before the step's retry. The run's end state."""
    gate.hold(program, "before")
    run = InBackground(runbook)
    gate.reached(program, "before")  # the step is about to start its program
    with faults.cluster_stopped(sandbox, site):
        gate.hold(program, "after")
        gate.release(program, "before")  # connection refused
        gate.reached(program, "after")
    gate.release(program, "after")
    return run.state()


def rows_written_on(pg, db: str, rows: int) -> None:
    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=db, autocommit=True, sslmode="disable"
    ) as conn:
        conn.execute("set default_transaction_read_only = off")
        conn.execute("create table if not exists fault_writes (n int)")
        conn.execute("insert into fault_writes select generate_series(1, %s)", (rows,))
    # statistics reach other sessions when the writer's backend has flushed them (at exit)
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=db, autocommit=True, sslmode="disable"
        ) as conn:
            seen = conn.execute("select n_tup_ins from pg_stat_user_tables where relname = 'fault_writes'").fetchone()
        if (seen and seen[0] >= rows) or time.monotonic() > deadline:
            return
        time.sleep(0.1)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def estate(sandbox: SandboxInfo, prefect_api, tmp_path: Path, monkeypatch) -> Iterator[SandboxInfo]:
    """The sandbox as before any cutover, this test's own work dir, and after the test the
    sandbox put back (for the next test) once it was checked."""
    reset(sandbox)
    monkeypatch.setenv("CUTOVER_WORK_DIR", str(tmp_path / "work"))
    yield sandbox
    faults.undo_row_writes(sandbox)
    reset(sandbox)


@pytest.fixture
def gate(tmp_path: Path) -> ProgramGate:
    return ProgramGate(tmp_path / "bin")


# --- freeze -------------------------------------------------------------------------------


def test_freeze_action_answering_500_rolls_back(estate, gate, tmp_path):
    snapshot = faults.estate_snapshot(estate, [APP])
    # both attempts of the freeze fail; the rollback's unfreeze action then succeeds
    with faults.app_fault(estate, APP, "onprem", "/maintenance", "POST", status=500, count=2):
        state = run_cutover(runbook_variant(tmp_path, gate))
    assert state.is_failed()
    summary = summary_of(state)
    assert summary["failed_steps"] == [f"{APP}/freeze"]
    assert summary["rollback"]["rolled_back"] and summary["rollback"]["undone"] == [f"{APP}/freeze"]
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)


# --- export ---------------------------------------------------------------------------------


def test_pg_dump_losing_the_source_is_retried_and_the_cutover_completes(estate, gate, tmp_path):
    before = source_fingerprint(estate)
    runbook = runbook_variant(tmp_path, gate, method="file")
    state = run_with_a_program_starting_on_a_stopped_cluster(estate, gate, runbook, "pg_dump", "onprem")
    assert_completed_and_moved(state, estate, before)


# --- import -----------------------------------------------------------------------------------


def test_pg_restore_killed_is_retried_on_a_fresh_database_and_completes(estate, gate, tmp_path):
    before = source_fingerprint(estate)
    gate.hold("pg_restore", "after")  # the restore has written everything, then dies
    run = InBackground(runbook_variant(tmp_path, gate, method="file"))
    pid = gate.reached("pg_restore", "after")
    gate.release("pg_restore", "after")
    os.kill(pid, 9)
    assert_completed_and_moved(run.state(), estate, before)


def test_a_corrupted_uploaded_file_is_sent_again_before_the_restore(estate, gate, tmp_path):
    before = source_fingerprint(estate)
    gate.hold("pg_restore", "before")
    run = InBackground(runbook_variant(tmp_path, gate, method="file"))
    pid = gate.reached("pg_restore", "before")
    dumps = [p for p in Path(estate.ssh.work_dir).rglob("*.dat.gz")] or [
        p for p in Path(estate.ssh.work_dir).rglob("*") if p.is_file() and p.name.endswith(".dat")
    ]
    assert dumps, "the dump must be on the target host"
    biggest = max(dumps, key=lambda p: p.stat().st_size)
    faults.corrupt_file(biggest)
    gate.release("pg_restore", "before")
    os.kill(pid, 9)  # the restore dies; its retry must not restore from the damaged file
    assert_completed_and_moved(run.state(), estate, before)


def test_target_cluster_stopped_during_the_import_is_retried_and_completes(estate, gate, tmp_path):
    before = source_fingerprint(estate)
    runbook = runbook_variant(tmp_path, gate, method="file")
    state = run_with_a_program_starting_on_a_stopped_cluster(estate, gate, runbook, "pg_restore", "cloud")
    assert_completed_and_moved(state, estate, before)


# --- verify -----------------------------------------------------------------------------------


def test_a_row_changed_on_the_target_fails_verification_and_rolls_back(estate, gate, tmp_path):
    snapshot = faults.estate_snapshot(estate, [APP])
    gate.hold("pg_restore", "after")
    run = InBackground(runbook_variant(tmp_path, gate))
    gate.reached("pg_restore", "after")
    table = faults.change_target_row(estate, DB)
    gate.release("pg_restore", "after")
    state = run.state()
    assert state.is_failed()
    summary = summary_of(state)
    assert summary["failed_steps"] == [f"{APP}/verify/{DB}"]
    assert table in state.message and table in summary["errors"][f"{APP}/verify/{DB}"], "the message names the table"
    assert summary["rollback"]["rolled_back"]
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)


# --- smoke ------------------------------------------------------------------------------------


def test_smoke_test_answering_500_rolls_back(estate, gate, tmp_path):
    snapshot = faults.estate_snapshot(estate, [APP])
    with faults.app_fault(estate, APP, "cloud", "/health", "GET", status=500):
        state = run_cutover(runbook_variant(tmp_path, gate))
    assert state.is_failed()
    summary = summary_of(state)
    assert summary["failed_steps"] == [f"{APP}/smoke"]
    assert summary["rollback"]["undone"] == [f"{APP}/start", f"{APP}/stream/{DB}", f"{APP}/freeze"]
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)


# --- source check -------------------------------------------------------------------------------


def test_a_write_on_the_source_after_the_freeze_stops_the_cutover_before_the_switch(estate, gate, tmp_path):
    gate.hold("pg_restore", "after")  # the dump is taken; the target is being filled
    run = InBackground(runbook_variant(tmp_path, gate))
    gate.reached("pg_restore", "after")
    table = faults.write_on_source(estate, DB)
    after_write = faults.estate_snapshot(estate, [APP])
    gate.release("pg_restore", "after")
    state = run.state()
    assert state.is_failed()
    summary = summary_of(state)
    assert summary["failed_steps"] == [f"{APP}/source-check"]
    assert DB in state.message and table.split(".")[-1] in state.message, state.message
    assert summary["applications"][APP]["dns"] == "not run"
    faults.assert_rolled_back(estate, after_write)  # the write stays on the source: it is the source's
    faults.assert_no_processes_left(estate)


# --- DNS switch ---------------------------------------------------------------------------------


def test_powerdns_down_fails_the_switch_that_changed_nothing_and_rolls_back(estate, gate, tmp_path):
    snapshot = faults.estate_snapshot(estate, [APP])
    gate.hold("pg_restore", "after")  # past the preflight (which would find PowerDNS down)
    run = InBackground(runbook_variant(tmp_path, gate))
    gate.reached("pg_restore", "after")
    with faults.powerdns_stopped(estate):
        gate.release("pg_restore", "after")
        state = run.state()
    assert state.is_failed()
    summary = summary_of(state)
    assert summary["failed_steps"] == [f"{APP}/dns"]
    assert summary["decision"] is None, "nothing was switched: the point of no return was not crossed"
    assert summary["rollback"]["rolled_back"] and f"{APP}/dns" in summary["rollback"]["undone"]
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)


def test_powerdns_refusing_the_change_with_422_rolls_back(estate, gate, tmp_path):
    snapshot = faults.estate_snapshot(estate, [APP])
    with faults.powerdns_refuses(estate, estate.apps[APP].hostname):
        state = run_cutover(runbook_variant(tmp_path, gate))
        assert state.is_failed()
        summary = summary_of(state)
        assert summary["failed_steps"] == [f"{APP}/dns"]
        assert "422" in state.message or "refused" in state.message, state.message
        assert summary["rollback"]["rolled_back"]
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)


# --- rollback that fails ----------------------------------------------------------------------


def test_a_failing_rollback_says_what_is_left_by_hand_and_the_rollback_flow_finishes_it(estate, gate, tmp_path):
    snapshot = faults.estate_snapshot(estate, [APP])
    gate.hold("pg_restore", "after")
    runbook = runbook_variant(tmp_path, gate)
    run = InBackground(runbook)
    gate.reached("pg_restore", "after")
    # from now on: the smoke test fails, and so does taking the old site out of maintenance
    with (
        faults.app_fault(estate, APP, "cloud", "/health", "GET", status=500),
        faults.app_fault(estate, APP, "onprem", "/maintenance", "POST", status=500),
    ):
        gate.release("pg_restore", "after")
        state = run.state()
    assert state.is_failed() and "ROLLBACK INCOMPLETE" in state.message, state.message
    rollback = summary_of(state)["rollback"]
    assert [item["step"] for item in rollback["by_hand"]] == [f"{APP}/freeze"]
    assert "unfreeze" in rollback["by_hand"][0]["to_do"]
    assert rollback["undone"] == [f"{APP}/start", f"{APP}/stream/{DB}"]
    # a retry of the cutover is refused until the rollback has finished
    from cutover.journal import unfinished_rollback
    from tasks.journal import run_journal

    assert unfinished_rollback(run_journal(flow_run_id(state)))
    finished = run_rollback(flow_run_id(state), runbook)
    assert finished.is_completed(), finished.message
    # every compensation runs again (they are idempotent); this time all of them succeed
    assert summary_of(finished)["undone"] == [f"{APP}/start", f"{APP}/stream/{DB}", f"{APP}/freeze"]
    assert unfinished_rollback(run_journal(flow_run_id(state))) is None
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)


# --- past the point of no return --------------------------------------------------------------


def _failing_post_switch_check(data: dict[str, Any]) -> None:
    data["applications"][0]["dns"][0]["check"]["expect_text"] = "a text the new site never shows"


def test_past_the_point_of_no_return_the_run_asks_and_counts_the_writes_and_a_rollback_needs_the_acknowledgement(
    estate, gate, tmp_path
):
    snapshot = faults.estate_snapshot(estate, [APP])
    runbook = runbook_variant(tmp_path, gate, edit=_failing_post_switch_check)
    answer_when_paused(
        {"decision": "roll back", "acknowledge_writes_lost": False, "decided_by": "test", "reason": "forgot to tick"},
        before_answer=lambda: rows_written_on(estate.cloud, DB, 7),
    )
    state = run_cutover(runbook)
    assert state.is_failed() and "rollback refused" in state.message, state.message
    summary = summary_of(state)
    assert summary["failed_steps"] == [f"{APP}/post-switch"] and summary["rollback"] is None
    assert summary["decision"]["writes"] == {f"{APP}/{DB}": 7}
    app = estate.apps[APP]
    answer = query(app.hostname, "A", server_host=estate.powerdns.dns_host, server_port=estate.powerdns.dns_port)
    assert answer.values == (NEW_SITE_ADDRESS,), "nothing is rolled back without the acknowledgement"
    # on request, the rollback flow also wants the acknowledgement, then rolls back everything
    refused = run_rollback(flow_run_id(state), runbook)
    assert refused.is_failed() and "acknowledge_writes_lost" in refused.message and "7" in refused.message
    rolled = run_rollback(flow_run_id(state), runbook, acknowledge=True)
    assert rolled.is_completed(), rolled.message
    assert summary_of(rolled)["undone"] == [f"{APP}/dns", f"{APP}/start", f"{APP}/stream/{DB}", f"{APP}/freeze"]
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)


def test_past_the_point_of_no_return_an_acknowledged_rollback_reverts_dns_and_everything_before(estate, gate, tmp_path):
    snapshot = faults.estate_snapshot(estate, [APP])
    answer_when_paused(
        {"decision": "roll back", "acknowledge_writes_lost": True, "decided_by": "test", "reason": "new site broken"}
    )
    state = run_cutover(runbook_variant(tmp_path, gate, edit=_failing_post_switch_check))
    assert state.is_failed()
    summary = summary_of(state)
    assert summary["decision"]["roll_back"] and summary["decision"]["decided_by"] == "test"
    assert summary["rollback"]["undone"] == [f"{APP}/dns", f"{APP}/start", f"{APP}/stream/{DB}", f"{APP}/freeze"]
    faults.assert_rolled_back(estate, snapshot)
    faults.assert_no_processes_left(estate)
