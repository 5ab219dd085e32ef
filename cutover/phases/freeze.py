"""Freezing an application at the old site, and undoing only what this run froze.

A source that was already read-only when the run first looked (an earlier run cut the
estate over, an administrator froze it) is not this run's to unfreeze: making it writable
again while DNS points at the new site would leave two live copies. So the freeze writes
down, once and before it changes anything, which databases it found frozen
(:class:`cutover.journal.FreezeRecord`), and the rollback unfreezes only the others; an
application any of whose databases was found frozen stays in maintenance too (its
``unfreeze`` actions are not run), since the old site was not live when the run began.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

import structlog

from cutover.journal import FreezeRecord
from cutover.phases import actions, database
from cutover.postgres import freeze
from cutover.postgres.endpoint import connect
from cutover.results import CompensationResult, FreezeResult
from cutover.runbook.model import Application, Runbook

log = structlog.get_logger()


def found_frozen(runbook: Runbook, app: Application, attempt_key: str, record: FreezeRecord) -> list[str]:
    """The application's databases that were read-only before this run froze anything:
    what ``record`` holds, or, the first time, what the sources say now (then recorded)."""
    known = record.found_frozen()
    if known is not None:
        return known
    found = []
    for db in app.databases:
        move = database.Move(runbook, app, db, attempt_key)
        with connect(move.source(), "postgres", autocommit=True) as admin:
            if freeze.is_read_only(admin, db.name):
                found.append(db.name)
    record.record(found)
    if found:
        log.warning("source_found_frozen", application=app.name, databases=found)
    return found


def freeze_application(runbook: Runbook, app: Application, attempt_key: str, record: FreezeRecord) -> FreezeResult:
    """The old site into maintenance (the ``freeze`` actions), then every source database
    read-only with its fingerprint. Safe to repeat."""
    already = found_frozen(runbook, app, attempt_key, record)
    done = actions.run_actions(runbook, app.freeze, what=f"{app.name}.freeze")
    moves = [database.Move(runbook, app, db, attempt_key) for db in app.databases]
    # Side by side: the application after this one in the freeze order waits for all of them.
    with ThreadPoolExecutor(max(1, len(moves)), thread_name_prefix="cutover-freeze") as pool:
        # each in a copy of this context: the lines it logs belong to this step and run
        futures = [pool.submit(contextvars.copy_context().run, database.freeze_database, move) for move in moves]
        frozen = {move.db.name: future.result() for move, future in zip(moves, futures, strict=True)}
    return FreezeResult(actions=done, databases=frozen, found_frozen=already)


def unfreeze_application(runbook: Runbook, app: Application, attempt_key: str, record: FreezeRecord) -> CompensationResult:
    """Undo :func:`freeze_application`, but only what this run froze: databases writable
    first (the application needs them), then out of maintenance, unless the run found the
    application frozen already."""
    already = set(record.found_frozen() or [])
    writable, left = [], []
    for db in app.databases:
        move = database.Move(runbook, app, db, attempt_key)
        if db.name in already:
            left.append(move.key)
            continue
        database.unfreeze_database(move)
        writable.append(move.key)
    if left:
        log.warning("source_left_frozen", application=app.name, databases=left, reason="frozen before this run")
        return CompensationResult(
            "left frozen and in maintenance: found frozen before this run", {"writable": writable, "left_frozen": left}
        )
    done = actions.run_actions(runbook, app.unfreeze, what=f"{app.name}.unfreeze")
    return CompensationResult(
        "sources writable, old site out of maintenance", {"writable": writable, "actions": [a.action for a in done]}
    )
