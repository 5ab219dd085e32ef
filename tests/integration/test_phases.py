"""The phases without Prefect: the library's step functions driven directly, against the
sandbox's real PostgreSQL, OpenSSH and PowerDNS, with the journal in memory (our own
port). Each test walks one branch a rerun takes: a database already imported by this
attempt is kept, somebody else's is refused; ``on_rollback`` keeps, renames or drops only
what this attempt made; a DNS switch that crashed after switching is resumed from its
journal and reverted to the true old value; a freeze's first look is what the rollback
trusts; an application's databases are frozen side by side, their fingerprints read over
each database's ``jobs`` connections and the same as one connection's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from cutover.dns.query import query
from cutover.errors import UnsafeChange
from cutover.journal import DnsSwitchRecord, FreezeRecord, MemoryJournal
from cutover.log import bind_step
from cutover.phases import database, dns
from cutover.phases.freeze import freeze_application, unfreeze_application
from cutover.postgres import dump, fingerprint, freeze
from cutover.postgres.endpoint import connect
from cutover.runbook.loader import load_runbook
from cutover.sandbox.info import NEW_SITE_ADDRESS, OLD_SITE_ADDRESS, SandboxInfo
from cutover.sandbox.reset import reset

pytestmark = pytest.mark.integration

APP = DB = "gis"
ATTEMPT = "phase-tests"


@pytest.fixture
def estate(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    reset(sandbox)
    yield sandbox
    reset(sandbox)


def move(policy: str | None = None) -> database.Move:
    runbook = load_runbook("runbooks/demo.yaml")
    app = runbook.application(APP)
    db = app.database(DB)
    if policy is not None:
        db = db.model_copy(update={"on_rollback": policy})
    return database.Move(runbook, app, db, ATTEMPT)


def target_comment(m: database.Move) -> str | None:
    with connect(m.target(), "postgres", autocommit=True) as admin:
        return dump.database_comment(admin, DB) if dump.database_exists(admin, DB) else None


def databases_on_target(m: database.Move) -> set[str]:
    with connect(m.target(), "postgres", autocommit=True) as admin:
        return {row[0] for row in admin.execute("select datname from pg_database")}


def test_a_database_this_attempt_imported_is_kept_and_somebody_elses_is_refused(estate):
    m = move()
    first = database.stream_database(m)
    assert not first.skipped and first.bytes and target_comment(m) == m.marker(finished=True)
    again = database.stream_database(m)
    assert again.skipped, "imported by this attempt: kept, not restored again"
    other = database.Move(m.runbook, m.app, m.db, "another-run")
    with pytest.raises(UnsafeChange, match="not created by this run"):
        database.stream_database(other)
    assert target_comment(m) == m.marker(finished=True), "refused before touching it"


@pytest.mark.parametrize("policy", ["keep", "rename", "drop"])
def test_on_rollback_keeps_renames_or_drops_only_what_this_attempt_made(estate, policy):
    m = move(policy)
    database.stream_database(m)
    not_ours = database.Move(m.runbook, m.app, m.db, "another-run")
    assert database.undo_target_database(not_ours).done == "left alone: not created by this run"
    before = databases_on_target(m)
    done = database.undo_target_database(m)
    after = databases_on_target(m)
    if policy == "keep":
        assert done.done == "kept" and after == before
    elif policy == "rename":
        assert DB not in after and done.details["to"] in after and done.done == f"renamed to {done.details['to']}"
        with connect(m.target(), "postgres", autocommit=True) as admin:
            dump.drop_database(admin, done.details["to"])
    else:
        assert done.done == "dropped" and after == before - {DB}
    assert database.undo_target_database(m).done in ("kept", "nothing to undo: no target database"), "safe to repeat"


def test_a_switch_that_crashed_after_switching_resumes_from_its_journal_and_reverts_to_the_true_old_value(estate):
    m = move()
    runbook, app = m.runbook, m.app
    journal = MemoryJournal()
    record = DnsSwitchRecord(journal, ATTEMPT, app.name)
    host, port = estate.powerdns.dns_host, estate.powerdns.dns_port
    first = dns.switch_records(runbook, app, record)
    assert first.records[0].old == [OLD_SITE_ADDRESS]
    # the process died before the step's result was kept: the rerun finds the record switched
    again = dns.switch_records(runbook, app, DnsSwitchRecord(journal, ATTEMPT, app.name))
    assert again.records[0].old == [OLD_SITE_ADDRESS], "the old value comes from the journal, not from the record"
    assert query(app.dns[0].name, "A", server_host=host, server_port=port).values == (NEW_SITE_ADDRESS,)
    reverted = dns.revert_records(runbook, app, record.get())
    assert reverted.details["records"][0]["values"] == [OLD_SITE_ADDRESS]
    assert query(app.dns[0].name, "A", server_host=host, server_port=port).values == (OLD_SITE_ADDRESS,)


def test_the_freeze_looks_once_and_the_rollback_trusts_that_first_look(estate):
    m = move()
    journal = MemoryJournal()
    with connect(m.source(), "postgres", autocommit=True) as admin:
        freeze.set_read_only(admin, DB)  # frozen before the run
    first = freeze_application(m.runbook, m.app, ATTEMPT, FreezeRecord(journal, APP))
    assert first.found_frozen == [DB] and first.databases[DB].rows > 0
    with connect(m.source(), "postgres", autocommit=True) as admin:
        freeze.set_writable(admin, DB)
    # a retry (which would find its own freeze) keeps what the first look found
    retried = freeze_application(m.runbook, m.app, ATTEMPT, FreezeRecord(journal, APP))
    assert retried.found_frozen == [DB]
    undone = unfreeze_application(m.runbook, m.app, ATTEMPT, FreezeRecord(journal, APP))
    assert undone.details["left_frozen"] == [f"{APP}/{DB}"]
    with connect(m.source(), "postgres", autocommit=True) as admin:
        assert freeze.is_read_only(admin, DB), "not this run's to unfreeze"


def test_an_applications_databases_are_frozen_side_by_side_with_the_same_fingerprints(estate):
    runbook = load_runbook("runbooks/demo.yaml")
    app = runbook.application("zaaksysteem")
    assert len(app.databases) >= 2, "an application with more than one database"
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines,
        bind_step("phase-tests", "zaaksysteem/freeze"),
    ):
        frozen = freeze_application(runbook, app, ATTEMPT, FreezeRecord(MemoryJournal(), app.name))
    for db in app.databases:
        m = database.Move(runbook, app, db, ATTEMPT)
        with connect(m.source(), "postgres", autocommit=True) as admin:
            assert freeze.is_read_only(admin, db.name)
        with connect(m.source(), db.name, autocommit=True) as conn:
            alone = fingerprint.fingerprint(conn)  # one connection, one snapshot: the reference
        assert fingerprint.compare(alone, fingerprint.Fingerprint.from_dict(frozen.databases[db.name].fingerprint)) == []
    taken = {line["database"]: line for line in lines if line["event"] == "fingerprint_taken"}
    assert set(taken) == {db.name for db in app.databases}
    for db in app.databases:
        assert taken[db.name]["workers"] == db.jobs
        # logged from the freeze's threads, still with the step's bindings (the status page sorts lines by them)
        assert taken[db.name]["step_id"] == "zaaksysteem/freeze" and taken[db.name]["cutover"] == "phase-tests"
