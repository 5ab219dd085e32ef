"""export / transfer / import / stream / verify: moving one database."""

from __future__ import annotations

from typing import Any

import time

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.concurrency.sync import concurrency

from cutover.phases import database
from cutover.plan.build import Step
from cutover.step_run import run_step
from tasks.common import runbook_at
from tasks.limits import limit_name


def _move(runbook_path: str, step: Step, attempt_key: str) -> database.Move:
    return database.find_move(runbook_at(runbook_path), step.application or "", step.database or "", attempt_key)


class TransferProgress:
    """A Prefect progress artifact for one upload, updated at most once a second."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.artifact_id = None
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.artifact_id is not None and now - self.last < 1.0 and done < total:
            return
        self.last = now
        percent = 100.0 * done / total if total else 100.0
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(percent, description=self.description)
        else:
            update_progress_artifact(self.artifact_id, percent)


# Prefect renews a slot's lease while its holder lives; a short lease frees the slot of a
# killed flow run within a minute (the default lease would hold it for 5).
SLOT_LEASE_S = 60.0  # the shortest lease the Prefect API accepts


def _host_limit(move: database.Move, kind: str) -> str:
    site = move.runbook.sites[move.db.from_ if kind == "dump" else move.db.to].postgres
    assert site is not None
    return limit_name(kind, site.host)


@task(name="export")
def export(runbook_path: str, step: Step, attempt_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step, attempt_key)
    with concurrency(_host_limit(move, "dump"), occupy=1, lease_duration=SLOT_LEASE_S):
        return run_step(move.runbook.cutover, step.id, "export", lambda: database.export_database(move))


@task(name="transfer")
def transfer(runbook_path: str, step: Step, attempt_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step, attempt_key)
    progress = TransferProgress(f"Upload of {move.key} to {move.db.to}")
    return run_step(move.runbook.cutover, step.id, "transfer", lambda: database.transfer_dump(move, progress))


@task(name="import")
def import_(runbook_path: str, step: Step, attempt_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step, attempt_key)
    with concurrency(_host_limit(move, "restore"), occupy=1, lease_duration=SLOT_LEASE_S):
        return run_step(move.runbook.cutover, step.id, "import", lambda: database.import_dump(move))


@task(name="stream")
def stream(runbook_path: str, step: Step, attempt_key: str) -> dict[str, Any]:
    move = _move(runbook_path, step, attempt_key)
    # a stream is a dump and a restore at once: it takes a slot of each
    with concurrency([_host_limit(move, "dump"), _host_limit(move, "restore")], occupy=1, lease_duration=SLOT_LEASE_S):
        return run_step(move.runbook.cutover, step.id, "stream", lambda: database.stream_database(move))


@task(name="verify")
def verify(runbook_path: str, step: Step, attempt_key: str, frozen: dict[str, Any]) -> dict[str, Any]:
    move = _move(runbook_path, step, attempt_key)
    source = frozen["databases"][move.db.name]
    return run_step(move.runbook.cutover, step.id, "verify", lambda: database.verify_database(move, source))
