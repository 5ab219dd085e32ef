"""The compensations: what undoes each step that changed something.

==============  ===========================================================================
step            compensation
==============  ===========================================================================
freeze          source databases writable again, then the application's ``unfreeze``
                actions (the old site out of maintenance); only what this run froze
                (``cutover.phases.freeze``)
import, stream  the target database as the runbook says (``on_rollback``): ``keep`` it,
                ``rename`` it aside, or ``drop`` it; only a database this run created (its
                comment carries the run's marker) is touched
start           the application's ``stop`` actions (the new site back in maintenance)
dns             every record back to the old values the switch recorded before changing it
==============  ===========================================================================

Each is idempotent and looks at the world first, so a compensation that is retried, or
that runs for a step which failed halfway (or never got to its side effect), does no harm.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from cutover.phases import actions, database, dns
from cutover.postgres import dump
from cutover.postgres.endpoint import connect
from cutover.runbook.model import Application, Runbook

log = structlog.get_logger()


def stop_application(runbook: Runbook, app: Application) -> dict[str, Any]:
    return {"actions": actions.run_actions(runbook, app.stop, what=f"{app.name}.stop")}


def undo_target_database(move: database.Move) -> dict[str, Any]:
    """Keep, rename or drop the target database, if this run created it."""
    target = move.db.target
    with connect(move.target(), "postgres", autocommit=True) as admin:
        if not dump.database_exists(admin, target):
            return {"database": move.key, "action": "none", "note": "no target database"}
        comment = dump.database_comment(admin, target) or ""
        if comment not in (move.marker(), move.marker(finished=True)):
            log.info("target_database_left", database=move.key, reason="not created by this run", comment=comment)
            return {"database": move.key, "action": "none", "note": "not created by this run; left alone"}
        policy = move.db.on_rollback
        if policy == "drop":
            dump.drop_database(admin, target)
            return {"database": move.key, "action": "dropped"}
        if policy == "rename":
            aside = f"{target[:40]}_rolled_back_{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
            dump.rename_database(admin, target, aside)
            return {"database": move.key, "action": "renamed", "to": aside}
        return {"database": move.key, "action": "kept"}


def revert_dns(runbook: Runbook, app: Application, recorded: dict[str, Any] | None) -> dict[str, Any]:
    return dns.revert_records(runbook, app, recorded)


def target_writes_since(runbook: Runbook, app: Application, run_key: str, baseline: dict[str, int]) -> dict[str, int]:
    """Rows written in each of ``app``'s target databases since ``baseline`` (the counters
    the DNS switch recorded): what a rollback past the point of no return would lose."""
    writes = {}
    for db in app.databases:
        move = database.Move(runbook, app, db, run_key)
        now = database.target_write_count(move)
        writes[move.key] = max(0, now - int(baseline.get(move.key, now)))
    return writes

