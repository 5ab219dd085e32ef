"""The cutover report: what it says, as typed data, before any format.

:func:`cutover.report.build.build_report` makes it from a run's record; the renderers
(:mod:`cutover.report.as_markdown`, :mod:`cutover.report.as_html`,
:mod:`cutover.report.as_json`) only lay it out, so every format says the same. Times are
ISO 8601 strings in UTC; a value nobody recorded is None and shows as "not recorded".
In the public variant, every field that would name a host (hosts, addresses, URLs, DNS
names and values, paths, links) is None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["completed", "rolled_back", "needs_attention", "in_progress", "not_started"]


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    headline: str  # "Completed and verified", "Rolled back, sources intact", "Needs attention"
    details: list[str] = field(default_factory=list)  # what, for each thing that needs attention


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class RunStart:
    """One time the flow run ran: its first start, or a retry."""

    number: int
    at: str | None
    how: str  # "started from deployment cutover/cutover", "retried: Rerun by cutover rerun"
    ended: str | None
    state: str


@dataclass(frozen=True)
class OtherRun:
    """A rollback run of this cutover run."""

    id: str
    name: str
    state: str
    started: str | None
    ended: str | None
    started_by: str
    link: str | None


@dataclass(frozen=True)
class RunInfo:
    cutover: str
    description: str
    window_start: str | None
    window_end: str | None
    runbook_path: str | None
    runbook_sha256: str | None
    runbook_read: str  # when the digest was taken
    flow_run_id: str
    flow_run_name: str
    state: str
    message: str
    started: str | None
    ended: str | None
    duration_s: float | None
    started_by: str
    deployment: str | None
    starts: list[RunStart]
    attempts: list[str]  # attempt keys, oldest first (a rollback starts a new one)
    rollback_runs: list[OtherRun]
    links: list[Link]


@dataclass(frozen=True)
class TimelineEntry:
    name: str  # the step id, rollback/<step id>, preflight, point-of-no-return
    kind: str  # step | compensation | preflight | decision
    application: str | None
    attempt: str | None
    run: str  # "this run", or the rollback run's name
    state: str  # Completed, Cached, Failed, Crashed, ...
    started: str | None
    ended: str | None
    duration_s: float | None
    tries: int
    failed_tries: list[str]  # the error of each try that failed, oldest first
    error: str | None  # why it failed for good


@dataclass(frozen=True)
class FingerprintSummary:
    """A database's fingerprint in short: its digest and counts; the tables are listed apart."""

    digest: str  # sha256 of the comparable parts (see cutover.report.custody)
    algorithm: str  # how each row was hashed (cutover.postgres.fingerprint: hash64, md5-64)
    tables: int
    rows: int
    sequences: int
    large_objects: int
    schema_objects: int
    schema_hash: str
    taken_at: str | None


@dataclass(frozen=True)
class TableFigures:
    table: str
    source_rows: int | None
    source_hash: str | None
    target_rows: int | None
    target_hash: str | None
    equal: bool


@dataclass(frozen=True)
class DumpLocation:
    where: str  # "orchestrator (the worker's work directory)", "target host"
    host: str | None
    path: str | None
    mode: str | None
    removed_at: str | None  # None: not recorded (or kept)
    kept: bool = False  # the runbook said keep_dump: still there after the verified import


@dataclass(frozen=True)
class Custody:
    """One database's chain of custody, from the source at the freeze to the verified target."""

    application: str
    database: str
    target_database: str
    source: str | None  # host:port of the source cluster (team report only)
    target: str | None
    method: str | None
    verdict: str  # "equal", "DIFFERENT: ...", "not verified: ..."
    verified: bool
    source_fingerprint: FingerprintSummary | None
    target_fingerprint: FingerprintSummary | None
    tables: list[TableFigures]
    dump_bytes: int | None
    dump_files: int | None
    dump_sha256_sent: str | None
    dump_sha256_received: str | None
    dump_sha256_before_restore: str | None
    dump_what: str  # what the sha256 is of: "the pg_dump -Fc stream", "the manifest of per-file sha256s"
    repaired_bytes: int | None
    roles_needed: list[str] | None
    roles_created: list[str] | None
    dump_locations: list[DumpLocation]
    source_check: str  # "no write since the freeze (write counters unchanged)", "not run", ...
    source_check_at: str | None
    after_rollback: str | None  # what the rollback did with the target database


@dataclass(frozen=True)
class DnsRecordReport:
    application: str
    name: str | None
    type: str
    old_values: list[str] | None
    old_ttl: int | None
    new_value: str | None
    ttl: int | None
    switched_at: str | None
    confirmed_at: str | None
    answered: list[str] | None
    restored_values: list[str] | None
    restored_at: str | None
    state: str  # "switched and confirmed", "not switched", "switched, then put back", ...


@dataclass(frozen=True)
class Decision:
    kind: str  # "gate" | "point of no return"
    name: str
    applications: list[str]
    asked_at: str | None
    decided_at: str | None
    decided_by: str
    decision: str  # "go", "no-go", "roll forward", "roll back (writes lost acknowledged)"
    reason: str
    evidence: list[str]  # what the person was shown
    overdue: int  # how many times the question went overdue


@dataclass(frozen=True)
class CheckReport:
    application: str
    attempt: str | None
    phase: str  # smoke | post-switch
    check: str  # "gis.smoke[0] http"
    target: str | None  # the URL, or site/database (team report only)
    result: str  # "200, 12 ms", "= True", or the failure
    passed: bool
    at: str | None


@dataclass(frozen=True)
class CompensationEntry:
    order: int  # in the order the rollback plan runs them
    step: str  # the step undone
    phase: str
    run: str  # "this run" or the rollback run's name
    state: str
    done: str | None  # what it did, in words
    started: str | None
    ended: str | None
    error: str | None


@dataclass(frozen=True)
class RollbackReport:
    attempt: str
    by: str  # "this run, by itself", "this run, as decided at the point of no return", "rollback run X"
    why: list[str]
    finished: bool
    compensations: list[CompensationEntry]
    left_by_hand: list[str]
    writes_lost: dict[str, Any]  # rows the target took after the switch, acknowledged lost


@dataclass(frozen=True)
class AuditCopy:
    name: str
    sha256: str
    bytes: int
    lines: int
    kept_at: str


@dataclass(frozen=True)
class Sources:
    """What the report was made from: nothing was asked of the estate."""

    gathered_at: str | None
    task_runs: int
    events: int
    journal_entries: list[str]
    audit_logs: list[AuditCopy]
    notes: list[str]


@dataclass(frozen=True)
class Digest:
    algorithm: str
    of: str  # how to recompute it
    value: str


@dataclass(frozen=True)
class Report:
    variant: Literal["team", "public"]
    verdict: Verdict
    run: RunInfo
    timeline: list[TimelineEntry]
    databases: list[Custody]
    dns: list[DnsRecordReport]
    decisions: list[Decision]
    checks: list[CheckReport]
    rollbacks: list[RollbackReport]
    sources: Sources
    notes: list[str]
    digest: Digest | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
