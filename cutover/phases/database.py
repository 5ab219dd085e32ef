"""Moving one database: freeze, export, transfer, import (or stream, or copy table by
table), verify, source check.

Each function is idempotent on its own: it looks at the world first. A database created
on the target carries a comment ``cutover:<run key>`` while it is being filled and
``cutover:<run key>:imported`` once the restore finished, so a rerun tells its own
half-finished attempt (dropped and restored again) from a finished one (kept) and from
somebody else's database (refused).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shlex
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from cutover.errors import PermanentStepError, StepError, TransientStepError
from cutover.phases import endpoints, workspace
from cutover.postgres import dump, fingerprint, freeze, roles, table_copy
from cutover.postgres.endpoint import PgEndpoint, connect, lost_server
from cutover.postgres.passfile import client_environment, remote_passfile
from cutover.results import (
    CompensationResult,
    ExportResult,
    FrozenDatabase,
    ImportResult,
    SourceProof,
    StreamResult,
    TransferResult,
    VerifyResult,
)
from cutover.runbook.model import Application, DatabaseMove, Runbook
from cutover.ssh.target import SshTarget

log = structlog.get_logger()


@dataclass(frozen=True)
class Move:
    """One database's move in one attempt of a run. Its endpoints (and the secrets in
    them) are resolved once, when a step first needs them."""

    runbook: Runbook
    app: Application
    db: DatabaseMove
    attempt_key: str
    _resolved: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.app.name}/{self.db.name}"

    def _once(self, name: str, make: Any) -> Any:
        if name not in self._resolved:
            self._resolved[name] = make()
        return self._resolved[name]

    def source(self) -> PgEndpoint:
        return self._once("source", lambda: endpoints.postgres(self.runbook, self.db.from_))  # type: ignore[no-any-return]

    def target(self) -> PgEndpoint:
        return self._once("target", lambda: endpoints.postgres(self.runbook, self.db.to))  # type: ignore[no-any-return]

    def target_host(self) -> SshTarget:
        return self._once("ssh", lambda: endpoints.ssh(self.runbook, self.db.to))  # type: ignore[no-any-return]

    def local_dump_dir(self) -> Path:
        return workspace.run_dir(self.runbook.cutover, self.attempt_key) / f"{self.app.name}.{self.db.name}.dump"

    def remote_dump_dir(self) -> str:
        ssh = self.runbook.sites[self.db.to].ssh
        assert ssh is not None
        base = workspace.remote_run_dir(ssh.work_dir, self.runbook.cutover, self.attempt_key)
        return f"{base}/{self.app.name}.{self.db.name}.dump"

    def copy_journal(self) -> table_copy.CopyJournal:
        """What the copy method finished in this attempt (kept for a retry to resume)."""
        run = workspace.run_dir(self.runbook.cutover, self.attempt_key)
        return table_copy.CopyJournal(run / f"{self.app.name}.{self.db.name}.copy.json")

    def marker(self, finished: bool = False) -> str:
        return f"{dump.MARKER_PREFIX}{self.attempt_key}" + (":imported" if finished else "")


def find_move(runbook: Runbook, app_name: str, db_name: str, attempt_key: str) -> Move:
    app = runbook.application(app_name)
    return Move(runbook, app, app.database(db_name), attempt_key)


# --- freeze and the proof that nothing changed since --------------------------------


def freeze_database(move: Move) -> FrozenDatabase:
    """Make the source read-only, end its sessions, and record its fingerprint, change
    marker and size. Safe to repeat: read-only stays read-only, the fingerprint is retaken."""
    source = move.source()
    with connect(source, "postgres", autocommit=True) as admin:
        freeze.set_read_only(admin, move.db.name)
        marker = freeze.change_marker(admin, move.db.name)
        size = dump.database_size(admin, move.db.name)
    start = time.perf_counter()
    taken = fingerprint_of(source, move.db.name, move.db.jobs)
    rows = taken.total_rows
    log.info("source_frozen", database=move.key, size=size, rows=rows, fingerprint_s=round(time.perf_counter() - start, 2))
    return FrozenDatabase(fingerprint=taken.to_dict(), marker=marker.to_dict(), size=size, rows=rows)


def fingerprint_of(endpoint: PgEndpoint, dbname: str, jobs: int, *, algorithm: str | None = None) -> fingerprint.Fingerprint:
    """The fingerprint of ``dbname``, its tables read over ``jobs`` connections at once (the
    database's ``jobs``: what the runbook lets one step take of the host), in one snapshot."""
    return fingerprint.fingerprint_parallel(lambda: connect(endpoint, dbname, autocommit=True), jobs, algorithm=algorithm)


def unfreeze_database(move: Move) -> None:
    with connect(move.source(), "postgres", autocommit=True) as admin:
        freeze.set_writable(admin, move.db.name)


def check_source_unchanged(move: Move, frozen: FrozenDatabase) -> SourceProof:
    """Prove the source took no write since its freeze: the database's own write proof
    first (:func:`cutover.postgres.freeze.change_marker`), the full fingerprint when that
    moved. Raises PermanentStepError naming the table."""
    source = move.source()
    with connect(source, "postgres", autocommit=True) as admin:
        if not freeze.is_read_only(admin, move.db.name):
            raise PermanentStepError(f"{move.key}: the source is writable again; it was unfrozen after the freeze")
        moved = freeze.marker_moved(frozen.marker, freeze.change_marker(admin, move.db.name))
    if not moved:
        return SourceProof(database=move.key, proof="marker")
    log.info("source_marker_moved", database=move.key, moved=moved)
    at_freeze = fingerprint.Fingerprint.from_dict(frozen.fingerprint)
    now = fingerprint_of(source, move.db.name, move.db.jobs, algorithm=at_freeze.algorithm)
    differences = fingerprint.compare(at_freeze, now)
    if differences:
        raise PermanentStepError(f"{move.key}: the source changed after the freeze: " + "; ".join(differences[:5]))
    return SourceProof(database=move.key, proof="fingerprint")


# --- export / transfer / import (file method) ---------------------------------------


def export_database(move: Move) -> ExportResult:
    """pg_dump -Fd -j N into the run's work directory; a finished dump is kept."""
    out = move.local_dump_dir()
    done = out / ".cutover-complete"
    if done.exists():
        return ExportResult(path=str(out), bytes=_tree_size(out), skipped=True, location=_local_location(out))
    if out.exists():
        shutil.rmtree(out)  # a half-written dump from a crashed attempt: pg_dump wants an empty dir
    source = move.source()
    start = time.perf_counter()
    from cutover.process import ProgramExited, run_program

    try:
        with client_environment(source) as env:
            run_program(
                dump.pg_dump_argv(source, move.db.name, format="directory", jobs=move.db.jobs, out=str(out)),
                env=env,
                timeout_s=move.runbook.defaults.timeout_s,
                log_name=f"pg_dump {move.key}",
            )
    except ProgramExited as exc:
        if lost_server(exc.stderr_tail):
            raise TransientStepError(f"{move.key}: pg_dump lost the source server: {exc}") from exc
        raise
    _write_private(done, move.attempt_key)
    size = _tree_size(out)
    duration = round(time.perf_counter() - start, 2)
    log.info("database_exported", database=move.key, bytes=size, duration_s=duration)
    return ExportResult(path=str(out), bytes=size, duration_s=duration, location=_local_location(out))


def transfer_dump(move: Move, progress: Callable[[int, int], None] | None = None) -> TransferResult:
    """Upload the dump directory over SFTP, resuming partial files; sha256 per file.
    ``progress(done, total)`` is called with byte counts as the upload goes."""
    from cutover.ssh.target import connect as ssh_connect
    from cutover.ssh.upload import upload_tree

    local = move.local_dump_dir()
    if not (local / ".cutover-complete").exists():
        raise PermanentStepError(f"{move.key}: no finished dump at {local}; rerun the export step")
    start = time.perf_counter()
    client = ssh_connect(move.target_host())
    try:
        total = _tree_size(local)
        result = upload_tree(
            client,
            str(local),
            move.remote_dump_dir(),
            progress=(lambda done: progress(done, total)) if progress else None,
            private=True,
        )
    finally:
        client.close()
    manifest = "".join(f"{f.sha256}  {name}\n" for name, f in sorted(result.files.items()))
    digest = hashlib.sha256(manifest.encode()).hexdigest()
    outcome = TransferResult(
        bytes=result.size,
        bytes_sent=result.bytes_sent,
        files=len(result.files),
        sha256=digest,
        duration_s=round(time.perf_counter() - start, 2),
        # every file's sha256 was computed again on the target host and matched (upload_tree
        # raises otherwise): the manifest received is the manifest sent
        sha256_received=digest,
    )
    log.info("dump_transferred", database=move.key, **outcome.to_dict())
    return outcome


def import_dump(move: Move) -> ImportResult:
    """Create roles and the database on the target, then pg_restore -j N on the target host."""
    if _already_imported(move):
        return ImportResult(database=move.key, skipped=True)
    # the files may have been damaged or removed on the target since the transfer: check
    # every sha256 again, and send again what does not match, before restoring from them
    checked = transfer_dump(move)
    if checked.bytes_sent:
        log.warning("dump_repaired_before_import", database=move.key, bytes_sent=checked.bytes_sent)
    needed, created = _prepare_target(move)
    ssh_site = move.runbook.sites[move.db.to].ssh
    assert ssh_site is not None
    command = dump.pg_restore_command(move.db.target, jobs=move.db.jobs, path=move.remote_dump_dir(), bin_dir=ssh_site.pg_bin_dir)
    start = time.perf_counter()
    _run_on_target(move, command, stdin=None)
    _mark_imported(move)
    duration = round(time.perf_counter() - start, 2)
    log.info("database_imported", database=move.key, duration_s=duration)
    return ImportResult(
        database=move.key,
        duration_s=duration,
        repaired_bytes=checked.bytes_sent,
        dump_sha256=checked.sha256,
        roles_needed=needed,
        roles_created=created,
        location=_remote_location(move),
    )


# --- stream method -------------------------------------------------------------------


def stream_database(move: Move, progress: Callable[[int], None] | None = None) -> StreamResult:
    """pg_dump -Fc | SSH channel | pg_restore on the target host, sha256 on both ends.
    ``progress(bytes_sent_so_far)`` is called as the bytes go (from another thread)."""
    if _already_imported(move):
        return StreamResult(database=move.key, skipped=True)
    needed, created = _prepare_target(move)
    from cutover.process import start_program
    from cutover.ssh.stream import stream_to_remote
    from cutover.ssh.target import connect as ssh_connect

    source = move.source()
    ssh_site = move.runbook.sites[move.db.to].ssh
    assert ssh_site is not None
    restore = dump.pg_restore_command(move.db.target, jobs=1, path=None, bin_dir=ssh_site.pg_bin_dir)
    start = time.perf_counter()
    with client_environment(source) as env:
        producer = start_program(
            dump.pg_dump_argv(source, move.db.name, format="custom", jobs=1, out=None),
            env=env,
            timeout_s=move.runbook.defaults.timeout_s,
            log_name=f"pg_dump {move.key}",
        )
        client = ssh_connect(move.target_host())
        try:
            assert producer.stdout is not None, "pg_dump was started with its output piped"
            result = stream_to_remote(
                client,
                producer.stdout,  # type: ignore[arg-type]  # a pipe of bytes
                restore,
                env=move.target().libpq_env(),
                secret_files=remote_passfile(move.target()),
                timeout_s=move.runbook.defaults.timeout_s,
                progress=progress,
            )
        except BaseException:
            producer.kill()
            raise
        finally:
            client.close()
        producer.wait()
    if result.exit_status != 0:
        raise TransientStepError(f"{move.key}: pg_restore on the target exited {result.exit_status}")
    _mark_imported(move)
    duration = round(time.perf_counter() - start, 2)
    log.info("database_streamed", database=move.key, bytes=result.bytes, sha256=result.sha256_local, duration_s=duration)
    return StreamResult(
        database=move.key,
        bytes=result.bytes,
        sha256=result.sha256_local,
        duration_s=duration,
        sha256_received=result.sha256_remote,
        roles_needed=needed,
        roles_created=created,
    )


# --- copy method ---------------------------------------------------------------------


def copy_tables(move: Move, progress: Callable[[int], None] | None = None) -> StreamResult:
    """The rows table by table with ``COPY``, ``jobs`` tables at a time, through an SSH
    tunnel to the target cluster (:mod:`cutover.postgres.table_copy`). A retry of the same
    attempt resumes: the tables an earlier try finished stay, unless its index builds had
    begun (then the database starts over). ``progress(bytes)`` gets the bytes of
    COPY text moved so far."""
    from cutover.ssh import tunnel

    if _already_imported(move):
        return StreamResult(database=move.key, skipped=True, method="copy")
    journal = move.copy_journal()
    with connect(move.target(), "postgres", autocommit=True) as admin:
        ours = dump.database_comment(admin, move.db.target) == move.marker()
    resume = ours and journal.resumable
    if not resume:
        journal.reset()
    else:
        log.info("table_copy_resumed", database=move.key, finished=journal.state.get("done", []))
    needed, created = _prepare_target(move, keep_partial=resume)
    target = move.target()
    archive = workspace.run_dir(move.runbook.cutover, move.attempt_key) / f"{move.app.name}.{move.db.name}.schema.dump"
    start = time.perf_counter()
    try:
        with tunnel.forward(
            move.target_host(), tunnel.remote_address(target.host, target.port), hello=tunnel.POSTGRES_HELLO
        ) as forward:
            outcome = table_copy.copy_database(
                move.source(),
                move.db.name,
                target.through_tunnel(forward.port),
                move.db.target,
                jobs=move.db.jobs,
                archive=archive,
                journal=journal,
                timeout_s=move.runbook.defaults.timeout_s,
                progress=progress,
            )
    finally:
        archive.unlink(missing_ok=True)  # dumped again by every attempt: never left at rest
    _mark_imported(move)
    journal.reset()
    duration = round(time.perf_counter() - start, 2)
    log.info(
        "database_copied",
        database=move.key,
        tables=outcome.tables,
        resumed=outcome.tables - outcome.tables_copied,
        bytes=outcome.bytes,
        duration_s=duration,
    )
    return StreamResult(
        database=move.key,
        bytes=outcome.bytes,
        duration_s=duration,
        roles_needed=needed,
        roles_created=created,
        method="copy",
        tables=outcome.tables,
        tables_resumed=outcome.tables - outcome.tables_copied,
    )


# --- verify --------------------------------------------------------------------------


def verify_database(move: Move, frozen: FrozenDatabase) -> VerifyResult:
    """The target's fingerprint must equal the source's taken at freeze time."""
    source = fingerprint.Fingerprint.from_dict(frozen.fingerprint)
    taken = fingerprint_of(move.target(), move.db.target, move.db.jobs)
    differences = fingerprint.compare(source, taken)
    if differences:
        raise PermanentStepError(f"{move.key}: target differs from the source: " + "; ".join(differences[:10]))
    rows = taken.total_rows
    log.info("database_verified", database=move.key, tables=len(taken.tables), rows=rows)
    dumps = dispose_of_dumps(move)
    return VerifyResult(database=move.key, tables=len(taken.tables), rows=rows, fingerprint=taken.to_dict(), dumps=dumps)


# --- the dump's copies at rest -------------------------------------------------------


def dispose_of_dumps(move: Move) -> list[dict[str, Any]]:
    """After a verified import (and in the import's rollback): remove the dump directory on
    the target host, then on the orchestrator (in that order, so that a local one still
    there means "not done yet"), unless the runbook says ``keep_dump``. Returns what was where and when it was removed
    (or that it was kept); empty when the database was streamed (no dump on any disk).
    Removing what is gone already counts as done, so a retried verify repeats it safely."""
    local = workspace.run_dir(move.runbook.cutover, move.attempt_key) / f"{move.app.name}.{move.db.name}.dump"
    if not local.exists():
        return []
    places = [_remote_location(move), _local_location(local)]
    if move.db.keep_dump:
        log.warning("dump_kept", database=move.key, places=[f"{p['host']}:{p['path']}" for p in places])
        return [{**place, "kept": True, "removed_at": None} for place in places]
    from cutover.ssh.remote import run_remote
    from cutover.ssh.target import connect as ssh_connect

    remote = move.remote_dump_dir()
    client = ssh_connect(move.target_host())
    try:
        outcome = run_remote(
            client,
            f"rm -rf -- {shlex.quote(remote)} && {{ rmdir -- {shlex.quote(posixpath.dirname(remote))} 2>/dev/null; true; }}",
            timeout_s=move.runbook.defaults.check_timeout_s * 10,
        )
    finally:
        client.close()
    if outcome.exit_status != 0:
        raise TransientStepError(f"{move.key}: removing the dump on the target host exited {outcome.exit_status}")
    places[0]["removed_at"] = _now()
    shutil.rmtree(local)
    places[1]["removed_at"] = _now()
    log.info("dump_removed", database=move.key, places=[f"{p['host']}:{p['path']}" for p in places])
    return [{**place, "kept": False} for place in places]


def _local_location(path: Path) -> dict[str, Any]:
    return {"where": "orchestrator", "host": socket.gethostname(), "path": str(path), "mode": workspace.PRIVATE_MODE}


def _remote_location(move: Move) -> dict[str, Any]:
    ssh = move.runbook.sites[move.db.to].ssh
    assert ssh is not None
    return {"where": "target host", "host": ssh.host, "path": move.remote_dump_dir(), "mode": workspace.PRIVATE_MODE}


def _write_private(path: Path, text: str) -> None:
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(text)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- writes on the target after the switch ------------------------------------------


def target_write_count(move: Move) -> int:
    """Rows written in the target database so far (``dump.rows_written``)."""
    with connect(move.target(), move.db.target, autocommit=True) as conn:
        return dump.rows_written(conn)


def target_write_counts(runbook: Runbook, app: Application, attempt_key: str) -> dict[str, int]:
    return {f"{app.name}/{db.name}": target_write_count(Move(runbook, app, db, attempt_key)) for db in app.databases}


def target_writes_since(runbook: Runbook, app: Application, attempt_key: str, baseline: dict[str, int]) -> dict[str, int]:
    """Rows written in each of ``app``'s target databases since ``baseline`` (the counters
    the DNS switch recorded): what a rollback past the point of no return would lose."""
    writes = {}
    for db in app.databases:
        move = Move(runbook, app, db, attempt_key)
        now = target_write_count(move)
        writes[move.key] = max(0, now - int(baseline.get(move.key, now)))
    return writes


def undo_target_database(move: Move) -> CompensationResult:
    """Keep, rename or drop the target database (``on_rollback``), if this run created it;
    then the roles this attempt created for it (:func:`cutover.postgres.roles.undo_created_roles`),
    and the attempt's dump files on both hosts (:func:`dispose_of_dumps`)."""
    target = move.db.target
    elsewhere = _roles_needed_elsewhere(move)
    with connect(move.target(), "postgres", autocommit=True) as admin:
        outcome = _undo_database(move, admin, target)
        # what this or an earlier try of this compensation kept aside (keep, rename)
        kept = [
            str(row[0])
            for row in admin.execute(
                "select datname from pg_database where datname = %s or datname like %s",
                (target, _aside_prefix(target).replace("_", "\\_") + "%"),
            )
        ]
        undone = roles.undo_created_roles(admin, move.marker(), kept, elsewhere)
    details = dict(outcome.details)
    # the attempt's dump copies (file method) go too: the data is back on the source. Best
    # effort: a target host that cannot be reached must not hold back the rest of the
    # rollback (the sources writable again); what is left is said, and logged.
    try:
        disposed = dispose_of_dumps(move)
    except StepError as exc:
        log.warning("dump_not_removed", database=move.key, error=str(exc))
        details["dumps_left"] = str(exc)
    else:
        if disposed:
            details["dumps"] = disposed
    if undone.dropped:
        details["roles_dropped"] = undone.dropped
    if undone.login_disabled:
        details["roles_login_disabled"] = undone.login_disabled
    if undone.left:
        details["roles_left"] = undone.left
    return CompensationResult(outcome.done, details)


def _roles_needed_elsewhere(move: Move) -> dict[str, list[str]] | None:
    """Role -> the other databases the runbook moves to the same site that use it (read on
    their sources: on the target they may not be restored yet). None when a source cannot
    be read: then no role is removed."""
    needed: dict[str, list[str]] = {}
    try:
        for app in move.runbook.applications:
            for db in app.databases:
                if db.to != move.db.to or (app.name, db.name) == (move.app.name, move.db.name):
                    continue
                other = Move(move.runbook, app, db, move.attempt_key)
                with connect(other.source(), db.name, autocommit=True) as conn:
                    for role in roles.roles_in_use(conn):
                        needed.setdefault(role, []).append(other.key)
    except StepError as exc:
        log.warning("roles_left_unknown_use", database=move.key, error=str(exc))
        return None
    return needed


def _undo_database(move: Move, admin: Any, target: str) -> CompensationResult:
    if not dump.database_exists(admin, target):
        return CompensationResult("nothing to undo: no target database", {"database": move.key})
    comment = dump.database_comment(admin, target) or ""
    if comment not in (move.marker(), move.marker(finished=True)):
        log.info("target_database_left", database=move.key, reason="not created by this run", comment=comment)
        return CompensationResult("left alone: not created by this run", {"database": move.key})
    policy = move.db.on_rollback
    if policy == "drop":
        dump.drop_database(admin, target)
        return CompensationResult("dropped", {"database": move.key})
    if policy == "rename":
        aside = _aside_prefix(target) + time.strftime("%Y%m%d%H%M%S", time.gmtime())
        dump.rename_database(admin, target, aside)
        return CompensationResult(f"renamed to {aside}", {"database": move.key, "to": aside})
    return CompensationResult("kept", {"database": move.key})


# --- shared --------------------------------------------------------------------------


def _aside_prefix(target: str) -> str:
    return f"{target[:40]}_rolled_back_"


def _prepare_target(move: Move, *, keep_partial: bool = False) -> tuple[list[str], list[str]]:
    """Roles first (a missing one stops us before any data moves), then an empty database
    (``keep_partial``: this attempt's unfinished one, which the copy method resumes).
    Returns the roles the database uses and those of them created here."""
    source, target = move.source(), move.target()
    with connect(source, move.db.name, autocommit=True) as conn:
        needed = roles.roles_in_use(conn)
        owner = dump.database_owner(conn)
    passwords = {
        name: endpoints.secret(spec.password, f"{move.key} roles.{name}.password") or "" for name, spec in move.db.roles.items()
    }
    definitions = roles.role_definitions(source, needed)
    with connect(target, "postgres", autocommit=True) as admin:
        # databases of one application share roles and are prepared at the same time:
        # one creator at a time per target cluster (released when the connection closes)
        admin.execute("select pg_advisory_lock(hashtext('cutover:ensure-roles'))")
        created = roles.ensure_roles(admin, definitions, needed, passwords, marker=move.marker())
        missing = roles.missing_roles(admin, needed)
        if missing:
            raise PermanentStepError(f"{move.key}: roles missing on the target: {', '.join(sorted(missing))}")
        if not keep_partial:
            dump.ensure_empty_database(admin, move.db.target, owner, marker=move.marker())
    return sorted(needed), sorted(created)


def _already_imported(move: Move) -> bool:
    with connect(move.target(), "postgres", autocommit=True) as admin:
        return dump.database_comment(admin, move.db.target) == move.marker(finished=True)


def _mark_imported(move: Move) -> None:
    with connect(move.target(), "postgres", autocommit=True) as admin:
        dump.set_marker(admin, move.db.target, move.marker(finished=True))


def _run_on_target(move: Move, command: str, stdin: Any) -> None:
    from cutover.ssh.remote import run_remote
    from cutover.ssh.target import connect as ssh_connect

    client = ssh_connect(move.target_host())
    try:
        outcome = run_remote(
            client,
            command,
            env=move.target().libpq_env(),
            secret_files=remote_passfile(move.target()),
            stdin=stdin,
            timeout_s=move.runbook.defaults.timeout_s,
        )
    finally:
        client.close()
    if outcome.exit_status != 0:
        raise TransientStepError(f"{move.key}: pg_restore on the target exited {outcome.exit_status}: {outcome.stderr_tail}")


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
