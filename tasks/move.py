"""export / transfer / import / stream / verify: moving one database."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.concurrency.sync import concurrency

from cutover.phases import database
from cutover.step_run import run_step
from tasks.common import parts, runbook_at
from tasks.limits import limit_name


def _move(runbook_path: str, step_id: str, run_key: str) -> database.Move:
    app, _phase, db = parts(step_id)
    return database.find_move(runbook_at(runbook_path), app, db, run_key)


def _host_limit(move: database.Move, kind: str) -> str:
    site = move.runbook.sites[move.db.from_ if kind == "dump" else move.db.to].postgres
    assert site is not None
    return limit_name(kind, site.host)


@task(name="export")
def export(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step_id, run_key)
    with concurrency(_host_limit(move, "dump"), occupy=1):
        return run_step(move.runbook.cutover, step_id, "export", lambda: database.export_database(move))


@task(name="transfer")
def transfer(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step_id, run_key)
    return run_step(move.runbook.cutover, step_id, "transfer", lambda: database.transfer_dump(move))


@task(name="import")
def import_(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step_id, run_key)
    with concurrency(_host_limit(move, "restore"), occupy=1):
        return run_step(move.runbook.cutover, step_id, "import", lambda: database.import_dump(move))


@task(name="stream")
def stream(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step_id, run_key)
    # a stream is a dump and a restore at once: it takes a slot of each
    with concurrency([_host_limit(move, "dump"), _host_limit(move, "restore")], occupy=1):
        return run_step(move.runbook.cutover, step_id, "stream", lambda: database.stream_database(move))


@task(name="verify")
def verify(runbook_path: str, step_id: str, run_key: str, frozen: dict[str, Any]) -> dict[str, Any]:
    move = _move(runbook_path, step_id, run_key)
    source = frozen["databases"][move.db.name]
    return run_step(move.runbook.cutover, step_id, "verify", lambda: database.verify_database(move, source))
