"""What each step returns: one typed result per phase.

A result is what a retried run takes from the cache instead of running the step again,
what the next steps are given (a verify gets its freeze's fingerprints), what the gate
shows as evidence and what the summary and the report read. ``figures()`` is the one
place that says which numbers of a result go into its events and summaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepResult:
    """Base of every step's result."""

    def figures(self) -> dict[str, Any]:
        """The numbers of this result for events and summaries (durations, bytes, rows, checksums)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- actions and checks -----------------------------------------------------------------


@dataclass(frozen=True)
class ActionOutcome:
    """One action or check that passed: what it was (``action``: ``app.smoke[0] http``) and
    what came back; the fields of other kinds stay None. Never a header or a secret."""

    action: str
    kind: str
    url: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    address: str | None = None  # the address a post-switch check reached through our DNS
    site: str | None = None
    database: str | None = None
    value: Any = None
    exit_status: int | None = None

    def describe(self) -> str:
        if self.status is not None:
            return f"{self.status}, {self.latency_ms:.0f} ms" if self.latency_ms is not None else str(self.status)
        if self.exit_status is not None:
            return f"exit {self.exit_status}"
        if self.kind == "sql":
            return f"= {self.value}"
        return "ok"


# Steps that always look again (smoke, source check, post-switch) and compensations run
# uncached, and Prefect persists no result without a cache key: their outcomes travel in
# their completed event (``figures()``), where the report finds them.


@dataclass(frozen=True)
class ActionsResult(StepResult):
    """start, smoke, finalize: every action in order."""

    results: list[ActionOutcome] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"checks": [asdict(outcome) for outcome in self.results]}


@dataclass(frozen=True)
class PostSwitchResult(StepResult):
    """The checks through the switched names."""

    checks: list[ActionOutcome] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"checks": [asdict(outcome) for outcome in self.checks]}


# --- freeze and the source ----------------------------------------------------------------


@dataclass(frozen=True)
class FrozenDatabase:
    """A source database as the freeze left it: its fingerprint and change marker (as
    their ``to_dict()``), its size and row count."""

    fingerprint: dict[str, Any]
    marker: dict[str, Any]
    size: int
    rows: int


@dataclass(frozen=True)
class FreezeResult(StepResult):
    actions: list[ActionOutcome] = field(default_factory=list)
    databases: dict[str, FrozenDatabase] = field(default_factory=dict)
    found_frozen: list[str] = field(default_factory=list)  # read-only before this run froze anything

    def figures(self) -> dict[str, Any]:
        return {"rows": sum(d.rows for d in self.databases.values()), "bytes": sum(d.size for d in self.databases.values())}


@dataclass(frozen=True)
class SourceProof:
    database: str  # app/db
    proof: str  # "marker": the cheap proof held; "fingerprint": a full pass was needed and matched


@dataclass(frozen=True)
class SourceCheckResult(StepResult):
    databases: list[SourceProof] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"proofs": {p.database: p.proof for p in self.databases}}


# --- moving a database --------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult(StepResult):
    path: str
    bytes: int
    duration_s: float | None = None
    skipped: bool = False  # a finished dump of an earlier attempt was kept
    location: dict[str, Any] | None = None  # where the dump lives: where, host, path, mode

    def figures(self) -> dict[str, Any]:
        return {"bytes": self.bytes}


@dataclass(frozen=True)
class TransferResult(StepResult):
    bytes: int
    bytes_sent: int
    files: int
    sha256: str  # of the manifest of per-file sha256s
    duration_s: float | None = None
    # the same manifest over the sha256s the target host computed of what it holds; the
    # upload refuses a file whose two hashes differ, so a recorded value equals ``sha256``
    sha256_received: str | None = None

    def figures(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "bytes_sent": self.bytes_sent, "sha256": self.sha256}


@dataclass(frozen=True)
class ImportResult(StepResult):
    database: str
    duration_s: float | None = None
    repaired_bytes: int = 0  # sent again because the uploaded files were damaged or gone
    skipped: bool = False  # already imported by this attempt
    dump_sha256: str | None = None  # the dump's manifest as checked on the target right before the restore
    roles_needed: list[str] | None = None  # the roles the database uses, present on the target
    roles_created: list[str] | None = None  # of those, the ones this step created
    location: dict[str, Any] | None = None  # where the uploaded dump lives: where, host, path, mode


@dataclass(frozen=True)
class StreamResult(StepResult):
    database: str
    bytes: int | None = None
    sha256: str | None = None  # of the dump stream, as sent (and as received: they matched)
    duration_s: float | None = None
    skipped: bool = False
    sha256_received: str | None = None  # as the target host counted what it received
    roles_needed: list[str] | None = None
    roles_created: list[str] | None = None
    # "copy": the rows went table by table (cutover.postgres.table_copy); bytes is the COPY
    # text moved, there is no byte stream to hash (the verify step's fingerprint proves it)
    method: str = "stream"
    tables: int | None = None
    tables_resumed: int | None = None  # finished by an earlier attempt, not copied again

    def figures(self) -> dict[str, Any]:
        return {k: v for k, v in (("bytes", self.bytes), ("sha256", self.sha256), ("tables", self.tables)) if v is not None}


@dataclass(frozen=True)
class VerifyResult(StepResult):
    database: str
    tables: int
    rows: int
    fingerprint_match: bool = True
    # the target's fingerprint (``Fingerprint.to_dict()``), beside the source's of the freeze:
    # what the report shows table by table
    fingerprint: dict[str, Any] | None = None
    # the dump's copies once verified (file method): per place where, host, path, mode,
    # kept (keep_dump) and removed_at (ISO time); empty when streamed
    dumps: list[dict[str, Any]] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {"tables": self.tables, "rows": self.rows}


@dataclass(frozen=True)
class FilesResult(StepResult):
    size: int
    bytes_sent: int
    files: int
    duration_s: float | None = None

    def figures(self) -> dict[str, Any]:
        return {"bytes": self.size, "bytes_sent": self.bytes_sent}


# --- the gate and DNS ---------------------------------------------------------------------


@dataclass(frozen=True)
class DnsChange:
    """One record of the change set a switch would make (an octoDNS-style plan entry)."""

    application: str
    name: str
    type: str
    old: list[str] | None  # None: could not be read (``action`` says why); [] : not there
    old_ttl: int | None
    new: str
    ttl: int
    action: str  # update | create | none | "unknown: ..."


@dataclass(frozen=True)
class GateResult(StepResult):
    gate: str
    applications: list[str]
    approve: bool
    decided_by: str
    reason: str
    at: str
    dns_changes: list[DnsChange] = field(default_factory=list)
    dns_plan: str = ""  # digest of dns_changes

    def figures(self) -> dict[str, Any]:
        return {"approve": self.approve, "decided_by": self.decided_by, "dns_plan": self.dns_plan}


@dataclass(frozen=True)
class RecordSwitched:
    name: str
    type: str
    old: list[str]
    new: str
    answered: list[str]  # what the authoritative server answered after the switch
    old_ttl: int | None = None
    ttl: int | None = None
    switched_at: str | None = None  # ISO 8601, UTC: the provider took the change
    confirmed_at: str | None = None  # the authoritative server answered the new value


@dataclass(frozen=True)
class DnsSwitchResult(StepResult):
    records: list[RecordSwitched] = field(default_factory=list)


# --- rollback -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CompensationResult(StepResult):
    """What one compensation did, in words (``done``), and its details."""

    done: str
    details: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {"done": self.done, "details": self.details}
