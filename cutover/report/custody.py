"""Each database's chain of custody, from what the run recorded: the source's fingerprint
at the freeze, the dump as sent and as received, the target's fingerprint after the
import, the verdict (compared again here, from the two recorded fingerprints), the roles,
where dump files lived, and the source check before the switch.

The content proof is the fingerprint, not the dump's sha256: ``pg_dump`` writes the same
data differently from one run to the next (object order, compression, timestamps), so a
dump's sha256 only proves that the bytes arrived as they were sent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from cutover.plan.build import Plan, Step
from cutover.plan.rollback import rollback_id
from cutover.postgres import fingerprint as fp
from cutover.report.lookup import Recorded, iso, text
from cutover.report.model import Custody, DumpLocation, FingerprintSummary, TableFigures
from cutover.results import (
    CompensationResult,
    ExportResult,
    FreezeResult,
    ImportResult,
    SourceCheckResult,
    StreamResult,
    TransferResult,
    VerifyResult,
)

# The parts of a fingerprint that must be equal on both sides (not the database's name,
# which may differ on the target, nor how long taking it took).
_COMPARED = ("tables", "materialized_views", "sequences", "large_objects", "schema_hash")

# A fingerprint persisted before fingerprints named their row hash was taken with md5-64.
_TAKEN_BEFORE_ALGORITHMS = "md5-64"

SOURCE_PROOFS = {
    "marker": "no write since the freeze: the database's storage, write counters, sequences and schema had not moved",
    "fingerprint": "the write counters had moved; the full fingerprint was taken again and equals the freeze's",
}


def fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    """sha256 of a fingerprint's compared parts as canonical JSON (sorted keys, no spaces):
    equal for a source and its restored copy, different when any table's rows or content,
    a sequence, a large object or a schema object differ."""
    parts = {key: fingerprint.get(key) for key in _COMPARED}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _summary(fingerprint: dict[str, Any], taken_at: str | None) -> FingerprintSummary:
    tables = fingerprint.get("tables") or {}
    return FingerprintSummary(
        digest=fingerprint_digest(fingerprint),
        algorithm=str(fingerprint.get("algorithm") or _TAKEN_BEFORE_ALGORITHMS),
        tables=len(tables),
        rows=sum(int(t["rows"]) for t in tables.values()),
        sequences=len(fingerprint.get("sequences") or {}),
        large_objects=int((fingerprint.get("large_objects") or {}).get("count", 0)),
        schema_objects=len(fingerprint.get("schema_objects") or []),
        schema_hash=str(fingerprint.get("schema_hash", "")),
        taken_at=taken_at,
    )


def table_figures(source: dict[str, Any] | None, target: dict[str, Any] | None) -> list[TableFigures]:
    a = (source or {}).get("tables") or {}
    b = (target or {}).get("tables") or {}
    rows = []
    for name in sorted(a.keys() | b.keys()):
        s, t = a.get(name), b.get(name)
        rows.append(
            TableFigures(
                table=name,
                source_rows=None if s is None else int(s["rows"]),
                source_hash=None if s is None else str(s["hash"]),
                target_rows=None if t is None else int(t["rows"]),
                target_hash=None if t is None else str(t["hash"]),
                equal=s is not None and t is not None and s["rows"] == t["rows"] and s["hash"] == t["hash"],
            )
        )
    return rows


def _differences(source: dict[str, Any], target: dict[str, Any]) -> list[str]:
    try:
        return fp.compare(fp.Fingerprint.from_dict(source), fp.Fingerprint.from_dict(target))
    except (KeyError, TypeError, ValueError) as exc:  # a fingerprint recorded by another version
        return [f"the recorded fingerprints cannot be compared ({type(exc).__name__}: {exc})"]


def _step(plan: Plan, app: str, phase: str, database: str | None = None) -> Step | None:
    for step in plan.steps.values():
        if step.application == app and step.phase == phase and (database is None or step.database == database):
            return step
    return None


def _site(facts: dict[str, Any], site: str, kind: str) -> dict[str, Any]:
    return ((facts.get("sites") or {}).get(site) or {}).get(kind) or {}


def _database_facts(facts: dict[str, Any], app: str, db: str) -> dict[str, Any]:
    for application in facts.get("applications") or []:
        if application.get("name") == app:
            for database in application.get("databases") or []:
                if database.get("name") == db:
                    return dict(database)
    return {}


def _recorded_location(result: Any) -> tuple[str | None, str | None, str | None]:
    """(host, path, mode) a step result says its dump files lived at, when it says so
    (its ``location``: a dict of where, host, path and mode; or a plain path)."""
    location = getattr(result, "location", None)
    if isinstance(location, dict):
        mode = location.get("mode")
        return location.get("host"), location.get("path"), None if mode is None else str(mode)
    mode = getattr(result, "mode", None)
    return None, None if location is None else str(location), None if mode is None else str(mode)


def _removed_at(result: Any) -> str | None:
    value = getattr(result, "removed_at", None)
    return None if value is None else str(value)


def database_custody(rec: Recorded, attempt: str, plan: Plan, app: str, db: str, *, public: bool) -> Custody:
    facts = rec.record.runbook.data if rec.record.runbook is not None else {}
    db_facts = _database_facts(facts, app, db)
    method = plan.methods.get(f"{app}/{db}")
    step_of = {phase: _step(plan, app, phase, db) for phase in ("export", "transfer", "import", "stream", "verify")}
    freeze_step = _step(plan, app, "freeze")

    def result(phase: str) -> Any:
        step = step_of.get(phase) if phase != "freeze" else freeze_step
        return rec.result(step.id, attempt) if step is not None else None

    def ended(step: Step | None) -> str | None:
        run = rec.latest(step.id, attempt) if step is not None else None
        return iso(run.ended) if run is not None and run.state_type == "COMPLETED" else None

    frozen_result = result("freeze")
    frozen = frozen_result.databases.get(db) if isinstance(frozen_result, FreezeResult) else None
    source_fp = frozen.fingerprint if frozen is not None else None
    verify_result = result("verify")
    target_fp = verify_result.fingerprint if isinstance(verify_result, VerifyResult) else None

    verify_run = rec.latest(step_of["verify"].id, attempt) if step_of["verify"] is not None else None
    if source_fp is not None and target_fp is not None:
        differences = _differences(source_fp, target_fp)
        verified = not differences and verify_run is not None and verify_run.state_type == "COMPLETED"
        verdict = (
            "equal: every table, sequence, large object and schema object"
            if not differences
            else "DIFFERENT: " + "; ".join(differences[:5])
        )
    elif verify_run is not None and verify_run.state_type == "COMPLETED":
        verified, verdict = True, "equal (the verify step passed; this run did not record the target's fingerprint)"
    elif verify_run is not None and verify_run.state_type in ("FAILED", "CRASHED"):
        verified, verdict = False, "DIFFERENT or unreadable: " + (rec.failure(verify_run) or verify_run.state)
    else:
        verified, verdict = False, "not verified: the verify step did not run"

    stream = result("stream")
    export = result("export")
    transfer = result("transfer")
    imported = result("import")
    moved: StreamResult | ImportResult | None = (
        stream if isinstance(stream, StreamResult) else (imported if isinstance(imported, ImportResult) else None)
    )
    if isinstance(stream, StreamResult):
        size, files = stream.bytes, None
        sent, received, before_restore = stream.sha256, getattr(stream, "sha256_received", None), None
        what = "the pg_dump -Fc stream, counted as it left the orchestrator and as the target host received it; no dump file was written on either side"
        if getattr(stream, "method", "stream") == "copy":
            what = (
                "the rows, table by table with COPY through an SSH tunnel to the target cluster, and pg_dump's schema "
                "archive (removed after the step); no byte stream to count: the target's fingerprint proves the copy"
            )
    else:
        size = (
            transfer.bytes
            if isinstance(transfer, TransferResult)
            else (export.bytes if isinstance(export, ExportResult) else None)
        )
        files = transfer.files if isinstance(transfer, TransferResult) else None
        sent = transfer.sha256 if isinstance(transfer, TransferResult) else None
        received = getattr(transfer, "sha256_received", None) if isinstance(transfer, TransferResult) else None
        before_restore = getattr(imported, "dump_sha256", None) if isinstance(imported, ImportResult) else None
        what = "the manifest of the pg_dump -Fd directory's per-file sha256s, as uploaded, as the target host hashed each file, and as checked again right before the restore"

    locations: list[DumpLocation] = []
    # what the verify step did with the copies once the import was proven (removed, or kept)
    disposed = {str(d.get("where")): d for d in (verify_result.dumps if isinstance(verify_result, VerifyResult) else []) or []}
    if method == "file" or isinstance(export, ExportResult):
        host, path, mode = _recorded_location(export)
        local = disposed.get("orchestrator", {})
        locations.append(
            DumpLocation(
                where="orchestrator: the worker's work directory",
                host=None if public else host,
                path=None if public else (path or (export.path if isinstance(export, ExportResult) else None)),
                mode=mode,
                removed_at=local.get("removed_at") or _removed_at(export),
                kept=bool(local.get("kept")),
            )
        )
        ssh = _site(facts, str(db_facts.get("to", "")), "ssh")
        r_host, r_path, r_mode = _recorded_location(imported)
        remote = f"{str(ssh.get('work_dir', '')).rstrip('/')}/{plan.cutover}/{attempt}/{app}.{db}.dump" if ssh else None
        on_target = disposed.get("target host", {})
        locations.append(
            DumpLocation(
                where="target host: the upload directory",
                host=None if public else (r_host or ssh.get("host")),
                path=None if public else (r_path or remote),
                mode=r_mode,
                removed_at=on_target.get("removed_at") or _removed_at(imported),
                kept=bool(on_target.get("kept")),
            )
        )

    check_step = _step(plan, app, "source_check")
    source_check, check_at = "not run", None
    if check_step is not None:
        check_run = rec.latest(check_step.id, attempt)
        checked = rec.result(check_step.id, attempt)
        if isinstance(checked, SourceCheckResult):
            proof = next((p.proof for p in checked.databases if p.database == f"{app}/{db}"), None)
            source_check = SOURCE_PROOFS.get(proof or "", f"proof: {proof}") if proof else "not recorded"
            check_at = ended(check_step)
        elif check_run is not None and check_run.state_type in ("FAILED", "CRASHED"):
            source_check = "FAILED: " + (rec.failure(check_run) or check_run.state)
            check_at = iso(check_run.ended)

    undo_step = step_of["stream"] or step_of["import"]
    after_rollback = None
    if undo_step is not None:
        undone = [r for r in rec.compensations(attempt) if r.name == rollback_id(undo_step.id)]
        if undone:
            last = undone[-1]
            if isinstance(last.result, CompensationResult):
                after_rollback = text(last.result.done)
                # the rollback removed the dump (verify never passed): when, per place
                by_rollback = {str(d.get("where")): d for d in last.result.details.get("dumps") or [] if isinstance(d, dict)}
                locations = [
                    replace(
                        place, removed_at=place.removed_at or by_rollback.get(place.where.split(":")[0], {}).get("removed_at")
                    )
                    for place in locations
                ]
            else:
                after_rollback = f"{last.state}: " + (rec.failure(last) or "not recorded")

    def where(site: str | None) -> str | None:
        pg = _site(facts, site or "", "postgres")
        return None if public or not pg else f"{pg.get('host')}:{pg.get('port')}"

    return Custody(
        application=app,
        database=db,
        target_database=str(db_facts.get("target_name") or db),
        source=where(db_facts.get("from")),
        target=where(db_facts.get("to")),
        method=method,
        verdict=text(verdict),
        verified=verified,
        source_fingerprint=_summary(source_fp, ended(freeze_step)) if source_fp else None,
        target_fingerprint=_summary(target_fp, ended(step_of["verify"])) if target_fp else None,
        tables=table_figures(source_fp, target_fp),
        dump_bytes=size,
        dump_files=files,
        dump_sha256_sent=sent,
        dump_sha256_received=received,
        dump_sha256_before_restore=before_restore,
        dump_what=what,
        repaired_bytes=imported.repaired_bytes if isinstance(imported, ImportResult) else None,
        roles_needed=getattr(moved, "roles_needed", None),
        roles_created=getattr(moved, "roles_created", None),
        dump_locations=locations,
        source_check=source_check,
        source_check_at=check_at,
        after_rollback=after_rollback,
    )


def custody(rec: Recorded, attempt: str, plan: Plan, *, public: bool) -> list[Custody]:
    """Every database the attempt's plan moves, in plan order."""
    seen: list[tuple[str, str]] = []
    for step in plan.steps.values():
        if step.database and step.application and (step.application, step.database) not in seen:
            seen.append((step.application, step.database))
    return [database_custody(rec, attempt, plan, app, db, public=public) for app, db in seen]
