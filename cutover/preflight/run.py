"""The preflight checks, in the order a cutover meets what they check.

Each check adds items to the report and never raises for what it finds: a red item names
what is wrong and where, so that one run shows every problem. Nothing is changed.
"""

from __future__ import annotations

import shutil
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import structlog

from cutover import units
from cutover.errors import CutoverError
from cutover.journal import TtlRecord
from cutover.phases import endpoints, workspace
from cutover.phases.ttl import record_key, switchable_from
from cutover.plan.build import choose_method
from cutover.preflight.items import Report, Status
from cutover.runbook.model import Runbook
from cutover.runbook.references import parse_reference, resolve

log = structlog.get_logger()

# Room left on a disk beyond the dumps: a dump of a database is rarely bigger than the
# database, and the target also holds the restored data elsewhere; ask for a margin.
DISK_MARGIN = 1.2


def preflight(
    runbook: Runbook,
    *,
    live: bool = False,
    outside_window: bool = False,
    ttl_journal: TtlRecord | None = None,
    target_marker: Callable[[str, str], bool] | None = None,
    now: datetime | None = None,
) -> Report:
    """Check everything ``runbook`` needs, here and now; return the report.

    ``live``: this is the first step of a cutover run (being outside the window is red
    unless ``outside_window``; a TTL lowered too recently is red). ``target_marker(application, comment)``:
    whether a target database of that application with that comment belongs to this run
    (a retry finds its own)."""
    report = Report(runbook.cutover)
    now = now or datetime.now(UTC)
    _window(report, runbook, now, live, outside_window)
    missing = _secrets(report, runbook)
    sizes = _postgres(report, runbook, missing, target_marker)
    _ssh(report, runbook, missing, sizes)
    _local_disk(report, runbook, sizes)
    _dns(report, runbook, missing, ttl_journal, now, live)
    _http(report, runbook)
    log.info("preflight_done", cutover=runbook.cutover, items=len(report.items), red=len(report.red))
    return report


# --- window -----------------------------------------------------------------------------


def _window(report: Report, runbook: Runbook, now: datetime, live: bool, outside_window: bool) -> None:
    window = runbook.window
    span = f"{window.start.isoformat()} to {window.end.isoformat()}"
    if window.start <= now <= window.end:
        report.add("window", "now", Status.ok, f"inside the window ({span})")
    elif live and not outside_window:
        report.add("window", "now", Status.fail, f"outside the window ({span}); a live run needs --outside-window to go ahead")
    elif live:
        report.add("window", "now", Status.warn, f"outside the window ({span}); allowed by --outside-window")
    elif now < window.start:
        days = (window.start - now).total_seconds() / 86400
        report.add("window", "now", Status.ok, f"the window starts in {days:.1f} days ({span})")
    else:
        report.add("window", "now", Status.warn, f"the window has passed ({span})")


# --- secrets ----------------------------------------------------------------------------


def secret_references(runbook: Runbook) -> Iterator[tuple[str, str]]:
    """(key path, reference) of every secret the runbook refers to."""
    for name, site in runbook.sites.items():
        if site.postgres and site.postgres.password:
            yield f"sites.{name}.postgres.password", site.postgres.password
        if site.postgres and site.postgres.smoke_password:
            yield f"sites.{name}.postgres.smoke_password", site.postgres.smoke_password
        if site.ssh:
            yield f"sites.{name}.ssh.key", site.ssh.key
    if runbook.dns:
        yield "dns.api_key", runbook.dns.api_key
    for app in runbook.applications:
        for db in app.databases:
            for role, spec in db.roles.items():
                yield f"applications.{app.name}.databases.{db.name}.roles.{role}.password", spec.password
        for section in ("freeze", "unfreeze", "start", "stop", "smoke", "finalize"):
            for index, action in enumerate(getattr(app, section)):
                if action.http:
                    for header, value in action.http.headers.items():
                        if _is_reference(value):
                            yield f"applications.{app.name}.{section}[{index}].http.headers.{header}", value
        for index, record in enumerate(app.dns):
            if record.check:
                for header, value in record.check.headers.items():
                    if _is_reference(value):
                        yield f"applications.{app.name}.dns[{index}].check.headers.{header}", value


def _is_reference(value: str) -> bool:
    try:
        parse_reference(value)
    except ValueError:
        return False
    return True


def _secrets(report: Report, runbook: Runbook) -> set[str]:
    """Resolve every reference once; the paths that could not be resolved."""
    missing: set[str] = set()
    seen: dict[str, str | None] = {}
    for path, reference in secret_references(runbook):
        if reference not in seen:
            try:
                resolve(reference)
                seen[reference] = None
            except (CutoverError, LookupError) as exc:  # UnresolvedSecret is a LookupError
                seen[reference] = str(exc)
        problem = seen[reference]
        if problem:
            missing.add(path)
            report.add("secret", path, Status.fail, f"{reference}: {problem} in this worker's environment")
    if not missing:
        report.add("secret", "all", Status.ok, f"{len(seen)} secret reference(s) resolve in this worker's environment")
    return missing


# --- PostgreSQL -------------------------------------------------------------------------


def _postgres(
    report: Report, runbook: Runbook, missing: set[str], target_marker: Callable[[str, str], bool] | None
) -> dict[str, int]:
    """Every source and target cluster: reachable, privileges, tools; source sizes by
    ``app/db`` (what the disk checks need)."""
    from cutover.postgres import dump, privileges
    from cutover.postgres.endpoint import connect

    sizes: dict[str, int] = {}
    sources = sorted({db.from_ for app in runbook.applications for db in app.databases})
    targets = sorted({db.to for app in runbook.applications for db in app.databases})
    for site_name in sorted(set(sources) | set(targets)):
        subject = f"{site_name} {_where_pg(runbook, site_name)}"
        if f"sites.{site_name}.postgres.password" in missing:
            report.add("postgres", subject, Status.fail, "not tried: its password reference does not resolve")
            continue
        try:
            endpoint = endpoints.postgres(runbook, site_name)
            with connect(endpoint, "postgres", autocommit=True) as admin:
                version = dump.server_version(admin)
                role = privileges.role_privileges(admin)
                superuser, createdb, createrole, signal, read_all = (
                    role.superuser,
                    role.createdb,
                    role.createrole,
                    role.signal_backend,
                    role.read_all_data,
                )
                report.add(
                    "postgres",
                    subject,
                    Status.ok,
                    f"PostgreSQL {version[0]}.{version[1]}, connected as {endpoint.user}" + (" (superuser)" if superuser else ""),
                )
                _more_than_needed(
                    report, runbook, site_name, endpoint, bool(superuser), site_name in sources, site_name in targets
                )
                if site_name in sources:
                    _source_databases(
                        report, runbook, site_name, admin, endpoint, bool(superuser), bool(signal), bool(read_all), sizes
                    )
                    _dump_tool(report, site_name, endpoint, version)
                if site_name in targets:
                    if not superuser and not (createdb and createrole):
                        report.add(
                            "postgres",
                            subject,
                            Status.fail,
                            f"{endpoint.user} needs CREATEDB and CREATEROLE (or superuser) to create the target databases and roles",
                        )
                    _target_databases(report, runbook, site_name, admin, target_marker)
        except CutoverError as exc:
            report.add("postgres", subject, Status.fail, str(exc))
        except Exception as exc:  # an unexpected answer must not hide the other checks
            report.add("postgres", subject, Status.fail, f"{type(exc).__name__}: {exc}")
    return sizes


def _more_than_needed(
    report: Report, runbook: Runbook, site_name: str, endpoint: Any, superuser: bool, source: bool, target: bool
) -> None:
    """Amber items where the run holds more than its steps need (docs/security.md,
    "Privileges"): a superuser where a dump role or CREATEDB and CREATEROLE would do, smoke
    SQL without a smoke role of its own, TLS to PostgreSQL off or unchecked across a network."""
    site = runbook.sites[site_name].postgres
    assert site is not None
    subject = f"{site_name} ({endpoint.where})"
    if superuser:
        needs = []
        if source:
            needs.append("on a source: own the databases (or pg_read_all_data), and pg_signal_backend")
        if target:
            needs.append("on a target: CREATEDB and CREATEROLE")
        report.add(
            "privileges",
            subject,
            Status.warn,
            f"{endpoint.user} is a superuser; the run needs less ({'; '.join(needs)}): see docs/security.md, Privileges",
        )
    smoke = [a for app in runbook.applications for a in app.smoke if a.sql is not None and a.sql.site == site_name]
    if smoke and site.smoke_user is None:
        report.add(
            "privileges",
            f"{subject} smoke",
            Status.warn,
            f"{len(smoke)} smoke query(ies) run as {endpoint.user} (in a read-only transaction); "
            "name a smoke_user that may only read",
        )
    elif smoke and site.smoke_user is not None:
        _smoke_login(report, runbook, site_name, subject, smoke[0].sql.database if smoke[0].sql else "postgres")
    if site.sslmode not in ("verify-full", "verify-ca") and not _loopback(site.host):
        report.add(
            "tls",
            subject,
            Status.warn,
            f"sslmode {site.sslmode} across a network: the server is not authenticated (and with disable/allow/prefer "
            "the traffic may be plain); keep verify-full",
        )


def _smoke_login(report: Report, runbook: Runbook, site_name: str, subject: str, database: str) -> None:
    from cutover.postgres import privileges
    from cutover.postgres.endpoint import connect

    endpoint = endpoints.postgres(runbook, site_name, login="smoke")
    try:
        with connect(endpoint, database, autocommit=True) as conn:
            role = privileges.role_privileges(conn)
    except CutoverError as exc:
        # the database is created by the import: before it, reaching the server is the check
        report.add("privileges", f"{subject} smoke", Status.warn, f"smoke_user {endpoint.user}: {exc}")
        return
    if role.superuser:
        report.add("privileges", f"{subject} smoke", Status.warn, f"smoke_user {endpoint.user} is a superuser: it could write")
    else:
        report.add("privileges", f"{subject} smoke", Status.ok, f"smoke SQL runs as {endpoint.user}, in read-only transactions")


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _where_pg(runbook: Runbook, site_name: str) -> str:
    site = runbook.sites[site_name].postgres
    return f"({site.host}:{site.port})" if site else ""


def _source_databases(
    report: Report,
    runbook: Runbook,
    site_name: str,
    admin: Any,
    endpoint: Any,
    superuser: bool,
    signal: bool,
    read_all: bool,
    sizes: dict[str, int],
) -> None:
    from cutover.postgres import freeze, privileges
    from cutover.postgres.endpoint import connect

    for app in runbook.applications:
        for db in app.databases:
            if db.from_ != site_name:
                continue
            key = f"{app.name}/{db.name}"
            found = privileges.size_and_owner(admin, db.name)
            if found is None:
                report.add("source", key, Status.fail, f"database {db.name} does not exist on {site_name}")
                continue
            size, owner = found
            sizes[key] = size
            problems = []
            if not superuser and owner != endpoint.user:
                problems.append(
                    f"the freeze (ALTER DATABASE) needs {endpoint.user} to own {db.name} (owner: {owner}) or be superuser"
                )
            if not superuser and not signal:
                problems.append("ending open sessions at the freeze needs pg_signal_backend")
            if not superuser and not read_all:
                with connect(endpoint, db.name, autocommit=True) as conn:
                    unreadable = privileges.unreadable_tables(conn)
                if unreadable:
                    problems.append(f"{endpoint.user} cannot read {unreadable} table(s) of {db.name} (grant pg_read_all_data)")
            if problems:
                report.add("source", key, Status.fail, "; ".join(problems))
                continue
            method = choose_method(runbook, db, size)
            detail = f"{units.size(size)}, moves by {method}"
            if freeze.is_read_only(admin, db.name):
                report.add(
                    "source",
                    key,
                    Status.warn,
                    f"{detail}; already read-only: frozen before this run, and a rollback leaves it so",
                )
            else:
                report.add("source", key, Status.ok, detail)


def _dump_tool(report: Report, site_name: str, endpoint: Any, version: tuple[int, int]) -> None:
    from cutover.postgres import dump

    try:
        tool = dump.pg_dump_version(endpoint.bin_dir)
        dump.check_dump_compatible(tool, version)
    except CutoverError as exc:
        report.add("tools", f"pg_dump for {site_name}", Status.fail, str(exc))
        return
    report.add(
        "tools",
        f"pg_dump for {site_name}",
        Status.ok,
        f"pg_dump {tool[0]}.{tool[1]} fits the source server {version[0]}.{version[1]}",
    )


def _target_databases(
    report: Report, runbook: Runbook, site_name: str, admin: Any, target_marker: Callable[[str, str], bool] | None
) -> None:
    from cutover.postgres import dump

    for app in runbook.applications:
        for db in app.databases:
            if db.to != site_name or not dump.database_exists(admin, db.target):
                continue
            comment = dump.database_comment(admin, db.target) or ""
            key = f"{app.name}/{db.name}"
            if target_marker is not None and target_marker(app.name, comment):
                report.add("target", key, Status.ok, f"{db.target} on {site_name} is this run's own, from an earlier attempt")
            elif comment.startswith(dump.MARKER_PREFIX):
                report.add(
                    "target",
                    key,
                    Status.fail,
                    f"{db.target} already exists on {site_name}, made by an earlier cutover run or attempt ({comment}): the estate may already be cut over",
                )
            else:
                report.add(
                    "target",
                    key,
                    Status.fail,
                    f"{db.target} already exists on {site_name} and was not made by Cutover; move it aside first",
                )


# --- SSH and disks ----------------------------------------------------------------------


def _file_bytes(runbook: Runbook, sizes: dict[str, int], site_name: str | None = None) -> int:
    """The bytes of dumps the file method will write (for databases going to ``site_name``)."""
    total = 0
    for app in runbook.applications:
        for db in app.databases:
            key = f"{app.name}/{db.name}"
            if (site_name is None or db.to == site_name) and choose_method(runbook, db, sizes.get(key)) == "file":
                total += sizes.get(key, db.size_bytes or 0)
    return total


def _ssh(report: Report, runbook: Runbook, missing: set[str], sizes: dict[str, int]) -> None:
    from cutover.postgres import dump as dump_mod
    from cutover.ssh.remote import run_remote
    from cutover.ssh.target import connect

    needed = sorted(
        {db.to for a in runbook.applications for db in a.databases}
        | {f.to for a in runbook.applications for f in a.files}
        | {
            s.ssh.site
            for a in runbook.applications
            for s in [*a.freeze, *a.unfreeze, *a.start, *a.stop, *a.smoke, *a.finalize]
            if s.ssh
        }
    )
    for site_name in needed:
        site = runbook.sites.get(site_name)
        if site is None or site.ssh is None:
            continue
        subject = f"{site_name} ({site.ssh.user}@{site.ssh.host}:{site.ssh.port})"
        copies_here = any(
            db.to == site_name and choose_method(runbook, db, sizes.get(f"{a.name}/{db.name}")) == "copy"
            for a in runbook.applications
            for db in a.databases
        )
        if f"sites.{site_name}.ssh.key" in missing:
            report.add("ssh", subject, Status.fail, "not tried: its key reference does not resolve")
            continue
        try:
            client = connect(endpoints.ssh(runbook, site_name))
        except CutoverError as exc:
            report.add("ssh", subject, Status.fail, str(exc))
            if copies_here:
                report.add("tunnel", f"{site_name} PostgreSQL through SSH", Status.fail, "not tried: SSH to the site failed")
            continue
        try:
            report.add("ssh", subject, Status.ok, "reached with the pinned host key")
            tools = f"{site.ssh.pg_bin_dir.rstrip('/')}/pg_restore" if site.ssh.pg_bin_dir else "pg_restore"
            version = run_remote(client, f"{tools} --version", timeout_s=30)
            text = (version.stdout_tail or "").strip()
            local = dump_mod.pg_dump_version(_source_bin_dir(runbook, site_name))
            major = _major(text)
            if version.exit_status != 0 or major is None:
                report.add(
                    "tools",
                    f"pg_restore on {site_name}",
                    Status.fail,
                    f"{tools} --version failed there (exit {version.exit_status})",
                )
            elif major < local[0]:
                report.add(
                    "tools", f"pg_restore on {site_name}", Status.fail, f"{text} cannot read archives of pg_dump {local[0]}"
                )
            else:
                report.add("tools", f"pg_restore on {site_name}", Status.ok, f"{text}, reads pg_dump {local[0]} archives")
            need = int(_file_bytes(runbook, sizes, site_name) * DISK_MARGIN)
            work = site.ssh.work_dir
            free = run_remote(
                client, f'd={_quote(work)}; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; df -Pk "$d" | tail -1', timeout_s=30
            )
            fields = (free.stdout_tail or "").split()
            if free.exit_status != 0 or len(fields) < 4 or not fields[3].isdigit():
                report.add("disk", f"{site_name}:{work}", Status.fail, "cannot tell the free space there (df failed)")
            else:
                available = int(fields[3]) * 1024
                status = Status.ok if available >= need else Status.fail
                report.add("disk", f"{site_name}:{work}", status, f"{units.size(available)} free, dumps need {units.size(need)}")
        except CutoverError as exc:
            report.add("ssh", subject, Status.fail, str(exc))
        finally:
            client.close()
        if copies_here:
            _tunnel(report, runbook, site_name, missing)


def _tunnel(report: Report, runbook: Runbook, site_name: str, missing: set[str]) -> None:
    """The copy method's way in: the target cluster through an SSH tunnel, logged in with
    the runbook's credentials (TLS as the runbook says), and the local client programs."""
    from cutover.postgres.endpoint import client_program
    from cutover.postgres.endpoint import connect as pg_connect
    from cutover.ssh import tunnel

    subject = f"{site_name} PostgreSQL through SSH"
    if any(ref.startswith(f"sites.{site_name}.") for ref in missing):
        report.add("tunnel", subject, Status.fail, "not tried: a secret of the site does not resolve")
        return
    try:
        target = endpoints.postgres(runbook, site_name)
        for program in ("psql", "pg_restore"):
            client_program(program, target.bin_dir)
        remote = tunnel.remote_address(target.host, target.port)
        with (
            tunnel.forward(endpoints.ssh(runbook, site_name), remote, hello=tunnel.POSTGRES_HELLO) as forward,
            pg_connect(target.through_tunnel(forward.port), "postgres", autocommit=True) as conn,
        ):
            tls = "TLS" if conn.pgconn.ssl_in_use else "no TLS"
    except CutoverError as exc:
        report.add("tunnel", subject, Status.fail, str(exc))
        return
    report.add(
        "tunnel", subject, Status.ok, f"{remote} reached and logged in for the copy method ({tls}, sslmode {target.sslmode})"
    )


def _source_bin_dir(runbook: Runbook, target_site: str) -> str | None:
    for app in runbook.applications:
        for db in app.databases:
            if db.to == target_site:
                source = runbook.sites[db.from_].postgres
                return source.bin_dir if source else None
    return None


def _major(version_text: str) -> int | None:
    import re

    match = re.search(r"\(PostgreSQL\)\s+(\d+)", version_text)
    return int(match.group(1)) if match else None


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _local_disk(report: Report, runbook: Runbook, sizes: dict[str, int]) -> None:
    need = int(_file_bytes(runbook, sizes) * DISK_MARGIN)
    root = workspace.work_root()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    available = shutil.disk_usage(probe).free
    status = Status.ok if available >= need else Status.fail
    report.add("disk", f"orchestrator:{root}", status, f"{units.size(available)} free, dumps need {units.size(need)}")


# --- DNS --------------------------------------------------------------------------------


def _dns(report: Report, runbook: Runbook, missing: set[str], ttl_journal: TtlRecord | None, now: datetime, live: bool) -> None:
    records = [(app, record) for app in runbook.applications for record in app.dns]
    if runbook.dns is None or not records:
        return
    if "dns.api_key" in missing:
        report.add("dns", runbook.dns.api, Status.fail, "not tried: its API key reference does not resolve")
        return
    lowered = ttl_journal.get() if ttl_journal else {}
    try:
        provider = endpoints.dns_provider(runbook)
    except CutoverError as exc:
        report.add("dns", runbook.dns.api, Status.fail, str(exc))
        return
    with provider:
        for index, (_app, record) in enumerate(records):
            key = record_key(record)
            try:
                current = provider.get(record.name, record.type)
            except CutoverError as exc:
                report.add("dns", runbook.dns.api if index == 0 else key, Status.fail, str(exc))
                if index == 0:
                    return  # the API itself is the problem: one line says it
                continue
            if index == 0:
                report.add("dns", runbook.dns.api, Status.ok, f"API answers for zone {runbook.dns.zone} with the configured key")
            if current is None:
                report.add("dns", key, Status.ok, f"not there yet: the switch creates it ({record.to}, TTL {record.ttl})")
                continue
            now_is = ", ".join(current.values)
            until = switchable_from(lowered.get(key))
            if until is not None and now < until:
                status = Status.fail if live else Status.warn
                report.add(
                    "dns",
                    key,
                    status,
                    f"{now_is} TTL {current.ttl}; lowered at {lowered[key]['at']} from {lowered[key]['old_ttl']} s: the switch waits until {until.isoformat(timespec='seconds')}",
                )
            elif current.ttl > record.ttl:
                report.add(
                    "dns",
                    key,
                    Status.warn,
                    f"{now_is} TTL {current.ttl}, above the runbook's {record.ttl}: lower it days before (cutover preflight --lower-ttl)",
                )
            elif list(current.values) == [record.to]:
                report.add("dns", key, Status.ok, f"{now_is} TTL {current.ttl}: already at the new value")
            else:
                report.add("dns", key, Status.ok, f"{now_is} TTL {current.ttl}, switches to {record.to} TTL {record.ttl}")


# --- HTTP -------------------------------------------------------------------------------


def _http(report: Report, runbook: Runbook, timeout_s: float = 5.0) -> None:
    """Every HTTP action's endpoint accepts a connection (TLS verified for https). The
    requests themselves are not sent: they change things (maintenance on, off)."""
    endpoints_seen: dict[tuple[str, str, int], list[str]] = {}
    for app in runbook.applications:
        for section in ("freeze", "unfreeze", "start", "stop", "smoke", "finalize"):
            for index, action in enumerate(getattr(app, section)):
                if action.http is None:
                    continue
                parts = urlsplit(action.http.url)
                port = parts.port or (443 if parts.scheme == "https" else 80)
                endpoints_seen.setdefault((parts.scheme, parts.hostname or "", port), []).append(f"{app.name}.{section}[{index}]")
    if runbook.tls.insecure_skip_verify:
        report.add(
            "tls",
            "https",
            Status.warn,
            "tls.insecure_skip_verify: HTTPS certificates are not checked (the DNS API key and every request can be read "
            "and changed on the way); every such request is logged",
        )
    for (scheme, host, port), used_by in sorted(endpoints_seen.items()):
        subject = f"{scheme}://{host}:{port}"
        try:
            with socket.create_connection((host, port), timeout=timeout_s) as sock:
                if scheme == "https" and not runbook.tls.insecure_skip_verify:
                    context = ssl.create_default_context(cafile=runbook.tls.ca_bundle)
                    with context.wrap_socket(sock, server_hostname=host):
                        pass
        except (OSError, ssl.SSLError) as exc:
            report.add(
                "http",
                subject,
                Status.fail,
                f"{_reason(exc)} (used by {', '.join(used_by[:3])}{'...' if len(used_by) > 3 else ''})",
            )
            continue
        report.add("http", subject, Status.ok, f"accepts connections ({len(used_by)} action(s))")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
