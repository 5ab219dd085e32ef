"""The report as Markdown: the Prefect artifact of the run, and ``cutover report --format md``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cutover.report.model import Custody, Report
from cutover.report.words import NOT_RECORDED, attempt, count, listing, or_not_recorded, seconds, size, when


def _cell(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    marks = [("---:" if a == "r" else "---") for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _facts(rows: Iterable[tuple[str, object]]) -> list[str]:
    return _table(["", ""], [(f"**{k}**", v) for k, v in rows])


def _code(value: str | None) -> str:
    return f"`{value}`" if value else NOT_RECORDED


def _custody(db: Custody) -> list[str]:
    lines = [f"### {db.application}/{db.database} → {db.target_database}", ""]
    src, tgt = db.source_fingerprint, db.target_fingerprint
    rows: list[tuple[str, object]] = [
        ("verdict", ("✔ " if db.verified else "✘ ") + db.verdict),
        ("method", db.method or NOT_RECORDED),
    ]
    if db.source or db.target:
        rows.append(("from → to", f"{db.source or NOT_RECORDED} → {db.target or NOT_RECORDED}"))
    rows += [
        (
            "source at the freeze",
            f"{_code(src.digest)}: {count(src.rows)} rows in {src.tables} tables (rows hashed by {src.algorithm}), taken {when(src.taken_at)}"
            if src
            else NOT_RECORDED,
        ),
        (
            "target after the import",
            f"{_code(tgt.digest)}: {count(tgt.rows)} rows in {tgt.tables} tables (rows hashed by {tgt.algorithm}), taken {when(tgt.taken_at)}"
            if tgt
            else NOT_RECORDED,
        ),
        (
            "schema",
            f"{src.schema_objects} objects, {src.sequences} sequences, {src.large_objects} large objects; schema hash {_code(src.schema_hash)}"
            if src
            else NOT_RECORDED,
        ),
        ("dump", f"{size(db.dump_bytes)}" + (f" in {db.dump_files} files" if db.dump_files is not None else "")),
        ("dump sha256 as sent", _code(db.dump_sha256_sent)),
        ("dump sha256 as received", _code(db.dump_sha256_received)),
    ]
    if db.method == "file":
        rows.append(("dump sha256 before the restore", _code(db.dump_sha256_before_restore)))
        if db.repaired_bytes:
            rows.append(("sent again before the restore", size(db.repaired_bytes)))
    rows += [
        ("what the sha256 is of", db.dump_what),
        ("roles the database uses", or_not_recorded(db.roles_needed) if db.roles_needed != [] else "none"),
        ("roles created by this step", or_not_recorded(db.roles_created) if db.roles_created != [] else "none (present already)"),
    ]
    for place in db.dump_locations:
        where = " ".join(p for p in (place.host and f"{place.host}:", place.path) if p) or "[withheld]"
        removed = (
            "kept (keep_dump): still there"
            if place.kept
            else "removed " + (when(place.removed_at) if place.removed_at else NOT_RECORDED)
        )
        rows.append((f"dump files, {place.where}", f"{where}; mode {place.mode or NOT_RECORDED}; {removed}"))
    if not db.dump_locations:
        rows.append(("dump files", "none: streamed, nothing written to disk on either side"))
    rows.append(
        ("source check before the switch", db.source_check + (f" ({when(db.source_check_at)})" if db.source_check_at else ""))
    )
    if db.after_rollback:
        rows.append(("after the rollback", db.after_rollback))
    lines += _facts(rows)
    if db.tables:
        lines += _table(
            [
                "table",
                "rows at the source",
                "rows on the target",
                "content hash at the source",
                "content hash on the target",
                "equal",
            ],
            [
                (
                    t.table,
                    count(t.source_rows),
                    count(t.target_rows),
                    t.source_hash or "-",
                    t.target_hash or "-",
                    "yes" if t.equal else "NO",
                )
                for t in db.tables
            ],
            "lrrlll",
        )
    return lines


def render_markdown(report: Report) -> str:
    run, verdict = report.run, report.verdict
    lines = [f"# Cutover report: {run.cutover}", "", f"## Verdict: {verdict.headline}", ""]
    lines += [f"- {d}" for d in verdict.details] + ([""] if verdict.details else [])
    if report.digest:
        lines += [f"Report digest (sha256 of its JSON): `{report.digest.value}`", ""]
    lines += ["## The run", ""]
    window = f"{when(run.window_start)} to {when(run.window_end)}" if run.window_start else NOT_RECORDED
    rows: list[tuple[str, object]] = [
        ("cutover", run.cutover + (f": {run.description}" if run.description else "")),
        ("window", window),
        ("runbook", " ".join(p for p in (run.runbook_path, f"sha256 {_code(run.runbook_sha256)} ({run.runbook_read})") if p)),
        ("flow run", f"{run.flow_run_name} ({run.flow_run_id}): {run.state}" + (f": {run.message}" if run.message else "")),
        ("started / ended", f"{when(run.started)} / {when(run.ended)} ({seconds(run.duration_s)})"),
        ("started by", run.started_by),
        ("deployment", run.deployment or NOT_RECORDED),
        (
            "runs",
            "; ".join(
                f"{s.number}. {when(s.at)} {s.how} → {s.state} {when(s.ended) if s.ended else ''}".strip() for s in run.starts
            )
            or NOT_RECORDED,
        ),
        ("attempts", listing(run.attempts)),
    ]
    for other in run.rollback_runs:
        rows.append(
            (
                "rollback run",
                f"{other.name} ({other.id}): {other.state}, {when(other.started)} to {when(other.ended)}; started by {other.started_by}",
            )
        )
    rows += [(link.label, link.url) for link in run.links]
    lines += _facts(rows)

    lines += ["## Databases: chain of custody", ""]
    if not report.databases:
        lines += ["No database was moved by this run.", ""]
    for db in report.databases:
        lines += _custody(db)

    lines += ["## DNS records", ""]
    if report.dns:
        lines += _table(
            ["application", "record", "before (TTL)", "after (TTL)", "switched", "confirmed", "put back to", "state"],
            [
                (
                    d.application,
                    f"{d.name or '[withheld]'} {d.type}",
                    f"{or_not_recorded(d.old_values) if d.old_values != [] else '(none)'} ({or_not_recorded(d.old_ttl)})",
                    f"{d.new_value or '[withheld]'} ({or_not_recorded(d.ttl)})",
                    when(d.switched_at) if d.switched_at else "-",
                    when(d.confirmed_at) if d.confirmed_at else "-",
                    (
                        f"{or_not_recorded(d.restored_values)} at {when(d.restored_at)}"
                        if d.restored_at or d.restored_values
                        else "-"
                    ),
                    d.state,
                )
                for d in report.dns
            ],
        )
    else:
        lines += ["No DNS records to switch.", ""]

    lines += ["## Decisions", ""]
    if not report.decisions:
        lines += ["No decision was asked for.", ""]
    for decision in report.decisions:
        title = f"{decision.kind} {decision.name}".strip()
        lines += [f"### {title[:1].upper() + title[1:]}: {decision.decision}", ""]
        lines += _facts(
            [
                ("decided by", decision.decided_by or NOT_RECORDED),
                ("reason", decision.reason or "-"),
                ("asked / decided", f"{when(decision.asked_at)} / {when(decision.decided_at)}"),
                ("applications", listing(decision.applications, "-")),
                ("went overdue", f"{decision.overdue} time(s)"),
            ]
        )
        lines += ["Shown when deciding:", "", *[f"- {e}" for e in decision.evidence], ""]

    lines += ["## Smoke tests and checks after the switch", ""]
    if report.checks:
        lines += _table(
            ["application", "attempt", "phase", "check", "target", "result", "at"],
            [
                (
                    c.application,
                    attempt(c.attempt),
                    c.phase,
                    c.check,
                    c.target or "-",
                    ("✔ " if c.passed else "✘ ") + c.result,
                    when(c.at),
                )
                for c in report.checks
            ],
        )
    else:
        lines += ["No checks ran.", ""]

    lines += ["## Rollbacks", ""]
    if not report.rollbacks:
        lines += ["Nothing was rolled back.", ""]
    for rollback in report.rollbacks:
        lines += [f"### Attempt {rollback.attempt}: {'rolled back' if rollback.finished else 'ROLLBACK NOT FINISHED'}", ""]
        lines += _facts([("by", rollback.by), ("why", "; ".join(rollback.why) or NOT_RECORDED)])
        lines += _table(
            ["order", "undoes", "state", "what it did", "run", "ended"],
            [(c.order, c.step, c.state, c.done or c.error or "-", c.run, when(c.ended)) for c in rollback.compensations],
            "rlllll",
        )
        if rollback.left_by_hand:
            lines += ["Left to do by hand, in this order:", "", *[f"1. {item}" for item in rollback.left_by_hand], ""]

    lines += ["## Timeline", ""]
    lines += _table(
        ["step", "attempt", "run", "state", "started", "ended", "duration", "tries", "failed tries / error"],
        [
            (
                t.name,
                attempt(t.attempt),
                t.run,
                t.state,
                when(t.started),
                when(t.ended),
                seconds(t.duration_s),
                t.tries,
                "; ".join([*t.failed_tries, *([t.error] if t.error else [])]) or "-",
            )
            for t in report.timeline
        ],
        "lllllllrl",
    )

    src = report.sources
    lines += ["## What this report was made from", ""]
    lines += _facts(
        [
            ("gathered", when(src.gathered_at)),
            ("task runs", src.task_runs),
            ("events", src.events),
            ("journal entries", listing(src.journal_entries)),
        ]
    )
    if src.audit_logs:
        lines += _table(
            ["audit log kept in Prefect", "sha256", "bytes", "lines", "kept"],
            [(a.name, f"`{a.sha256}`", f"{a.bytes:,}", f"{a.lines:,}", when(a.kept_at)) for a in src.audit_logs],
            "llrrl",
        )
    else:
        lines += ["No audit log was kept in Prefect for this run.", ""]
    lines += [f"- {n}" for n in src.notes] + ([""] if src.notes else [])
    lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    if report.digest:
        lines += [f"Digest: `{report.digest.value}` ({report.digest.of})", ""]
    return "\n".join(lines)
