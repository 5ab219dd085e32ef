"""What ran, when: every task run of the cutover run and of its rollback runs (steps,
compensations, the preflight, the point-of-no-return question) with its tries; and per
rolled-back attempt, its compensations in the order the rollback plan runs them."""

from __future__ import annotations

from cutover.plan.rollback import PREFIX, plan_rollback
from cutover.report.lookup import Recorded, iso, text
from cutover.report.model import CompensationEntry, RollbackReport, TimelineEntry
from cutover.report.record import TaskRunRecord
from cutover.results import CompensationResult

_NOT_APPLICATIONS = ("gate", "preflight", "point-of-no-return")
_ENDED_BADLY = ("FAILED", "CRASHED", "CANCELLED")


def kind_of(name: str) -> str:
    if name.startswith(PREFIX):
        return "compensation"
    if name.startswith("preflight"):
        return "preflight"
    if name == "point-of-no-return":
        return "decision"
    return "step"


def application_of(name: str) -> str | None:
    first = name.removeprefix(PREFIX).split("/", 1)[0]
    return None if first in _NOT_APPLICATIONS else first


def _seconds(run: TaskRunRecord) -> float | None:
    if run.started is None or run.ended is None:
        return None
    return round((run.ended - run.started).total_seconds(), 2)


def timeline(rec: Recorded) -> list[TimelineEntry]:
    entries = []
    for run in rec.task_runs():
        errors = [text(e.payload.get("error")) for e in rec.events_of(run) if e.event.endswith(".failed")]
        final = rec.failure(run)
        if final is not None and errors and errors[-1] == final:
            errors = errors[:-1]
        entries.append(
            TimelineEntry(
                name=run.name,
                kind=kind_of(run.name),
                application=application_of(run.name),
                attempt=run.attempt,
                run=rec.run_label(run),
                state=run.state,
                started=iso(run.started),
                ended=iso(run.ended),
                duration_s=_seconds(run),
                tries=run.run_count,
                failed_tries=errors,
                error=final,
            )
        )
    return entries


def _why(rec: Recorded, attempt: str) -> list[str]:
    reasons = []
    for run in rec.steps(attempt):
        if run.state_type in _ENDED_BADLY and run.name != "point-of-no-return":
            reasons.append(f"{run.name} {run.state.lower()}: {rec.failure(run) or 'no message recorded'}")
    return reasons


def rollbacks(rec: Recorded) -> list[RollbackReport]:
    """One entry per attempt that compensations ran for."""
    reports = []
    last_rollback = rec.record.journal.get("rollback") or {}
    for attempt in rec.attempts():
        runs = rec.compensations(attempt)
        if not runs:
            continue
        latest: dict[str, TaskRunRecord] = {}
        for run in runs:  # time order: a second rollback run of a rollback that failed halfway wins
            latest[run.name] = run
        plan = rec.plan(attempt)
        started = {r.name for r in rec.steps(attempt) if r.started is not None or r.state_type == "COMPLETED"}
        planned = plan_rollback(plan, started) if plan is not None else []
        order = {c.id: i + 1 for i, c in enumerate(planned)} or {name: i + 1 for i, name in enumerate(latest)}
        entries = []
        for name, run in sorted(latest.items(), key=lambda item: (order.get(item[0], 10_000), item[1].started or item[1].ended)):
            done = run.result if isinstance(run.result, CompensationResult) else None
            entries.append(
                CompensationEntry(
                    order=order.get(name, len(order) + 1),
                    step=name.removeprefix(PREFIX),
                    phase=plan.steps[name.removeprefix(PREFIX)].phase
                    if plan is not None and name.removeprefix(PREFIX) in plan.steps
                    else "",
                    run=rec.run_label(run),
                    state=run.state,
                    done=text(done.done) if done is not None else None,
                    started=iso(run.started),
                    ended=iso(run.ended),
                    error=rec.failure(run),
                )
            )
        left = [f"{c.step}: {c.text}" for c in planned if latest.get(c.id) is None or latest[c.id].state_type != "COMPLETED"]
        undoing = last_rollback.get("of")
        if attempt in (undoing.values() if isinstance(undoing, dict) else [undoing]) or last_rollback.get("run") == attempt:
            finished = bool(last_rollback.get("finished")) and not left
        else:
            finished = not left and all(r.state_type == "COMPLETED" for r in latest.values())
        in_this_run = any(r.flow_run_id == rec.record.run.id for r in latest.values())
        ponr = [r for r in rec.steps(attempt) if r.name == "point-of-no-return" and isinstance(r.result, dict)]
        decided = ponr[-1].result if ponr else None
        if in_this_run:
            by = (
                "this run: decided at the point of no return"
                if decided and decided.get("roll_back")
                else "this run, by itself (a failure before the point of no return)"
            )
        else:
            names = sorted({rec.run_label(r) for r in latest.values()})
            by = ", ".join(names)
        why = _why(rec, attempt)
        writes: dict[str, object] = {}
        if decided and decided.get("roll_back") and decided.get("acknowledged"):
            writes = dict(decided.get("writes") or {})
            why.append(
                f"past the point of no return, {text(decided.get('decided_by'))} chose to roll back: {text(decided.get('reason')) or '-'}"
            )
        for other in rec.record.rollback_runs:
            if other.parameters.get("acknowledge_writes_lost") and any(r.flow_run_id == other.id for r in latest.values()):
                why.append(f"rollback run {other.name} was started acknowledging that writes since the switch are lost")
        reports.append(
            RollbackReport(
                attempt=attempt, by=by, why=why, finished=finished, compensations=entries, left_by_hand=left, writes_lost=writes
            )
        )
    return reports
