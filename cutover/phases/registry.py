"""Every phase bound to what runs it and what undoes it: the one place that says which
function a step of a phase calls. (What a phase *is* lives in cutover.plan.phases.)

==============  ===========================================================================
step            compensation
==============  ===========================================================================
freeze          source databases writable again, then the application's ``unfreeze``
                actions (the old site out of maintenance); only what this run froze
import, stream  the target database as the runbook says (``on_rollback``): ``keep`` it,
                ``rename`` it aside, or ``drop`` it; only a database this run created (its
                comment carries the attempt's marker) is touched
start           the application's ``stop`` actions (the new site back in maintenance)
dns             every record back to the old values the switch recorded before changing it
==============  ===========================================================================

Each compensation is idempotent and looks at the world first, so one that is retried, or
that runs for a step which failed halfway (or never got to its side effect), does no harm.
"""

from __future__ import annotations

from collections.abc import Callable

from cutover.journal import DnsSwitchRecord, FreezeRecord, TtlRecord
from cutover.phases import actions, database, dns, files, freeze, gate
from cutover.phases.context import StepContext
from cutover.results import ActionsResult, CompensationResult, FreezeResult, SourceCheckResult, StepResult

Run = Callable[[StepContext], StepResult]
Compensate = Callable[[StepContext], CompensationResult]


def _move(ctx: StepContext) -> database.Move:
    return database.Move(ctx.runbook, ctx.app, ctx.app.database(ctx.step.database or ""), ctx.attempt_key)


def _frozen(ctx: StepContext) -> FreezeResult:
    result: FreezeResult = ctx.read(ctx.step.reads[0])
    return result


def _section(section: str) -> Run:
    def run(ctx: StepContext) -> ActionsResult:
        return ActionsResult(
            results=actions.run_actions(
                ctx.runbook, getattr(ctx.app, section), what=f"{ctx.app.name}.{section}", checks=section == "smoke"
            )
        )

    return run


def _source_check(ctx: StepContext) -> SourceCheckResult:
    frozen = _frozen(ctx)
    return SourceCheckResult(
        databases=[
            database.check_source_unchanged(database.Move(ctx.runbook, ctx.app, db, ctx.attempt_key), frozen.databases[db.name])
            for db in ctx.app.databases
        ]
    )


def _stream(ctx: StepContext) -> StepResult:
    move = database.copy_tables if ctx.step.method == "copy" else database.stream_database
    result = move(_move(ctx), ctx.progress)
    if ctx.progress is not None:
        ctx.progress.finish()
    return result


def _switch(ctx: StepContext) -> StepResult:
    approved = ctx.read(ctx.step.reads[0]).dns_changes if ctx.step.reads else None
    return dns.switch_records(
        ctx.runbook,
        ctx.app,
        DnsSwitchRecord(ctx.journal, ctx.attempt_key, ctx.app.name),
        writes_baseline=lambda: database.target_write_counts(ctx.runbook, ctx.app, ctx.attempt_key),
        approved=approved,
        ttl_journal=TtlRecord(ctx.estate_journal),
    )


RUN: dict[str, Run] = {
    "freeze": lambda ctx: freeze.freeze_application(
        ctx.runbook, ctx.app, ctx.attempt_key, FreezeRecord(ctx.journal, ctx.app.name)
    ),
    "export": lambda ctx: database.export_database(_move(ctx)),
    "transfer": lambda ctx: database.transfer_dump(_move(ctx), ctx.progress),
    "import": lambda ctx: database.import_dump(_move(ctx)),
    "stream": lambda ctx: _stream(ctx),
    "verify": lambda ctx: database.verify_database(_move(ctx), _frozen(ctx).databases[ctx.step.database or ""]),
    "files": lambda ctx: files.move_files(ctx.runbook, ctx.app, ctx.step.item or ""),
    "start": _section("start"),
    "smoke": _section("smoke"),
    "gate": gate.decide,
    "source_check": _source_check,
    "dns_switch": _switch,
    "post_switch": lambda ctx: dns.check_after_switch(ctx.runbook, ctx.app),
    "finalize": _section("finalize"),
}

COMPENSATE: dict[str, Compensate] = {
    "freeze": lambda ctx: freeze.unfreeze_application(
        ctx.runbook, ctx.app, ctx.attempt_key, FreezeRecord(ctx.journal, ctx.app.name)
    ),
    "import": lambda ctx: database.undo_target_database(_move(ctx)),
    "stream": lambda ctx: database.undo_target_database(_move(ctx)),
    "start": lambda ctx: CompensationResult(
        "new site back in maintenance",
        {"actions": [a.action for a in actions.run_actions(ctx.runbook, ctx.app.stop, what=f"{ctx.app.name}.stop")]},
    ),
    "dns_switch": lambda ctx: dns.revert_records(
        ctx.runbook, ctx.app, DnsSwitchRecord(ctx.journal, ctx.attempt_key, ctx.app.name).get()
    ),
}
