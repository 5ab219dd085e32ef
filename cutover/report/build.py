"""Run record -> report: the verdict first, then the run, the chain of custody of every
database, DNS, decisions, checks, the timeline and the rollbacks; signed with its digest.

Pure: everything comes from the :class:`~cutover.report.record.RunRecord`, nothing is
asked of the estate. ``public=True`` leaves out every host name (see cutover.report.public).
"""

from __future__ import annotations

from datetime import datetime

from cutover.redaction import redact_text
from cutover.report import digest
from cutover.report.custody import custody
from cutover.report.decisions import decisions
from cutover.report.dns_records import dns_records
from cutover.report.lookup import Recorded, iso, text
from cutover.report.model import (
    AuditCopy,
    CheckReport,
    Custody,
    Link,
    OtherRun,
    Report,
    RollbackReport,
    RunInfo,
    RunStart,
    Sources,
    Verdict,
)
from cutover.report.public import WITHHELD, hostnames, map_strings, scrub_text
from cutover.report.record import FlowRunRecord, RunRecord
from cutover.report.timeline import rollbacks, timeline
from cutover.results import ActionOutcome, ActionsResult, PostSwitchResult

CONTENT_PROOF = (
    "The proof that a database arrived complete and unaltered is its fingerprint, not a dump's sha256. "
    "The fingerprint holds, per table, the row count and an order-independent content hash (the sum, as a "
    "decimal number, of a 64-bit hash of every row rendered as text with its columns in name order, under "
    "fixed settings: UTC, ISO dates, exact floats, hex bytea; the hash is named per database: hash64 is "
    "PostgreSQL's hashtextextended of the row's UTF-8 text, md5-64 the first 64 bits of its md5), plus the "
    "sequences, large objects "
    "and schema objects; the digest shown is the sha256 of those parts. pg_dump writes identical data "
    "differently from one run to the next, so a dump's sha256 only proves that its bytes arrived as sent."
)
FROM_THE_RECORD = (
    "Built from what the run recorded in Prefect (flow and task runs with their persisted results, events, "
    "the run's journal and the audit logs kept there); nothing was asked of the estate."
)
PUBLIC_NOTE = "Public variant: host names, addresses, URLs, DNS names and values, paths and links are left out."
_FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
_NOT_RECORDED_WHO = "not recorded: this Prefect server does not authenticate who creates or retries a run"


def _link(ui_url: str | None, run_id: str) -> str | None:
    return f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}" if ui_url else None


def _who(run: FlowRunRecord) -> str:
    if run.created_by:
        return run.created_by
    return _NOT_RECORDED_WHO


def _starts(run: FlowRunRecord) -> list[RunStart]:
    starts: list[RunStart] = []
    scheduled_message = ""
    for change in run.history:
        if change.type == "SCHEDULED":
            scheduled_message = change.message
        elif change.type == "RUNNING" and change.name == "Running":
            how = f"started from deployment {run.deployment}" if run.deployment else "started"
            if starts:
                how = "retried" + (f": {text(scheduled_message)}" if scheduled_message else "")
            starts.append(RunStart(number=len(starts) + 1, at=iso(change.at), how=how, ended=None, state="Running"))
        elif change.type in _FINAL and starts and starts[-1].ended is None:
            last = starts[-1]
            starts[-1] = RunStart(number=last.number, at=last.at, how=last.how, ended=iso(change.at), state=change.name)
    return starts


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 1)


def run_info(rec: Recorded, *, public: bool) -> RunInfo:
    record = rec.record
    run = record.run
    facts = record.runbook.data if record.runbook is not None else {}
    attempt = rec.last_attempt()
    plan = rec.plan(attempt) if attempt else None
    window = facts.get("window") or {}
    links = [] if public else [Link("this run in the Prefect UI", url) for url in [_link(record.ui_url, run.id)] if url]
    others = []
    for other in record.rollback_runs:
        link = None if public else _link(record.ui_url, other.id)
        others.append(OtherRun(other.id, other.name, other.state, iso(other.started), iso(other.ended), _who(other), link))
        if link:
            links.append(Link(f"{other.name} in the Prefect UI", link))
    return RunInfo(
        cutover=str(facts.get("cutover") or (plan.cutover if plan else run.name)),
        description=str(facts.get("description") or ""),
        window_start=window.get("start"),
        window_end=window.get("end"),
        runbook_path=None if public or record.runbook is None else record.runbook.path,
        runbook_sha256=record.runbook.sha256 if record.runbook is not None else None,
        runbook_read=record.runbook.read if record.runbook is not None else "not recorded",
        flow_run_id=run.id,
        flow_run_name=run.name,
        state=run.state,
        message=text(run.message),
        started=iso(run.started),
        ended=iso(run.ended),
        duration_s=_duration(run.started, run.ended),
        started_by=_who(run),
        deployment=run.deployment,
        starts=_starts(run),
        attempts=rec.attempts(),
        rollback_runs=others,
        links=links,
    )


def _outcome_target(outcome: ActionOutcome) -> str | None:
    if outcome.url:
        return outcome.url + (f" (reached at {outcome.address})" if outcome.address else "")
    if outcome.site:
        return f"{outcome.site}/{outcome.database}" if outcome.database else outcome.site
    return None


def checks(rec: Recorded, *, public: bool) -> list[CheckReport]:
    found = []
    for run in rec.task_runs():
        phase = run.name.rsplit("/", 1)[-1] if "/" in run.name and not run.name.startswith("rollback/") else ""
        if phase not in ("smoke", "post-switch") or run.state == "Cached":
            continue
        app = run.name.split("/", 1)[0]
        result = run.result
        outcomes = (
            result.results
            if isinstance(result, ActionsResult)
            else (result.checks if isinstance(result, PostSwitchResult) else None)
        )
        if outcomes is not None:
            for outcome in outcomes:
                found.append(
                    CheckReport(
                        application=app,
                        attempt=run.attempt,
                        phase=phase,
                        check=outcome.action,
                        target=None if public else _outcome_target(outcome),
                        result=text(outcome.describe()),
                        passed=True,
                        at=iso(run.ended),
                    )
                )
            if not outcomes:
                found.append(
                    CheckReport(app, run.attempt, phase, "(none defined)", None, "nothing to check", True, iso(run.ended))
                )
        elif run.state_type in ("FAILED", "CRASHED"):
            found.append(
                CheckReport(app, run.attempt, phase, run.name, None, rec.failure(run) or run.state, False, iso(run.ended))
            )
    return found


def verdict(rec: Recorded, databases: list[Custody], rolled: list[RollbackReport]) -> Verdict:
    run = rec.record.run
    attempt = rec.last_attempt()
    ran_steps = [r for r in rec.steps(attempt) if not r.name.startswith("preflight")] if attempt else []
    if run.state_type not in _FINAL:
        return Verdict("in_progress", f"In progress ({run.state}): this report is provisional", [])
    if not ran_steps:
        return Verdict("not_started", "Not started: nothing was changed", [text(run.message)] if run.message else [])
    last_rollback = next((r for r in rolled if r.attempt == attempt), None)
    earlier = [
        f"attempt {r.attempt} was rolled back ({'finished' if r.finished else 'NOT finished'}) before a later one"
        for r in rolled
        if r.attempt != attempt
    ]
    if last_rollback is not None:
        if last_rollback.finished:
            details = [f"{c.step}: {c.done}" for c in last_rollback.compensations if c.done]
            if last_rollback.writes_lost:
                lost = ", ".join(f"{k}: {v}" for k, v in sorted(last_rollback.writes_lost.items()))
                details.append(f"rows the target took after the switch, acknowledged lost: {lost}")
            return Verdict("rolled_back", "Rolled back, sources intact", [*last_rollback.why, *details, *earlier])
        left = [f"left to do by hand: {item}" for item in last_rollback.left_by_hand]
        return Verdict("needs_attention", "Needs attention: the rollback did not finish", [*last_rollback.why, *left])
    not_verified = [f"{d.application}/{d.database}: {d.verdict}" for d in databases if not d.verified]
    unfinished = [f"{r.name}: {r.state}" for r in ran_steps if r.state_type != "COMPLETED" and r.name != "point-of-no-return"]
    if run.state_type == "COMPLETED" and not not_verified and not unfinished:
        return Verdict("completed", "Completed and verified", earlier)
    details = [f"{r.name} {r.state.lower()}: {rec.failure(r) or '-'}" for r in ran_steps if r.state_type in ("FAILED", "CRASHED")]
    details += [item for item in not_verified if not any(item.split(":")[0] in d for d in details)]
    if run.state_type in ("CRASHED", "CANCELLED"):
        details.append(
            f"the run was {run.state.lower()}: retry it (cutover rerun {run.id}) or roll it back (cutover rollback {run.id})"
        )
    ponr = [r.result for r in ran_steps if r.name == "point-of-no-return" and isinstance(r.result, dict)]
    if ponr and not ponr[-1].get("roll_back"):
        details.append(
            f"past the point of no return, {text(ponr[-1].get('decided_by'))} chose to roll forward: fix the cause and retry "
            f"(cutover rerun {run.id}), or roll back (cutover rollback {run.id} --acknowledge-writes-lost)"
        )
    elif ponr:
        details.append(
            "past the point of no return, a rollback was asked for without acknowledging the writes lost: nothing was undone"
        )
    return Verdict("needs_attention", "Needs attention", details or [text(run.message) or run.state])


def sources(rec: Recorded, missing_plan: str | None = None) -> Sources:
    record = rec.record
    notes = [text(n) for n in record.notes]
    if missing_plan:
        notes.append(f"the plan of attempt {missing_plan} is not in the run's journal: no chain of custody could be shown")
    return Sources(
        gathered_at=iso(record.gathered_at),
        task_runs=len(record.task_runs),
        events=len(record.events),
        journal_entries=sorted(record.journal),
        audit_logs=[AuditCopy(a.name, a.sha256, a.bytes, a.lines, a.kept_at) for a in record.audits],
        notes=notes,
    )


def build_report(record: RunRecord | Recorded, *, public: bool = False) -> Report:
    """The report of the run ``record`` (a RunRecord, or one already wrapped), signed."""
    rec = record if isinstance(record, Recorded) else Recorded(record)
    attempt = rec.last_attempt()
    plan = rec.plan(attempt) if attempt else None
    databases = custody(rec, attempt, plan, public=public) if attempt and plan else []
    dns = dns_records(rec, attempt, plan, public=public) if attempt and plan else []
    rolled = rollbacks(rec)
    report = Report(
        variant="public" if public else "team",
        verdict=verdict(rec, databases, rolled),
        run=run_info(rec, public=public),
        timeline=timeline(rec),
        databases=databases,
        dns=dns,
        decisions=decisions(rec),
        checks=checks(rec, public=public),
        rollbacks=rolled,
        sources=sources(rec, missing_plan=attempt if attempt and plan is None else None),
        notes=[CONTENT_PROOF, FROM_THE_RECORD, *([PUBLIC_NOTE] if public else [])],
    )
    # recorded texts were redacted when they were written; once more, before signing, for
    # any secret this process knows of (a value resolved here, a credential's name)
    report = map_strings(report, redact_text)
    if public:
        names = hostnames(rec.record)
        report = map_strings(report, lambda value: scrub_text(value, names) if value != WITHHELD else value)
    return digest.sign(report)
