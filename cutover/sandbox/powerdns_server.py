"""The PowerDNS authoritative server of the sandbox, with its HTTP API.

``pdns_server`` in the foreground (no guardian, no daemon: the pid we record is the
server itself), the gsqlite3 backend on a database made from the schema file the Debian
package ships, DNS on a free 127.0.0.1 port, API and webserver on another. Caches are off
so an API change is answered by the next DNS query, which is what a test wants to see.
The zone and one A record per application are created through the API itself.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
import structlog

from cutover.errors import SandboxError
from cutover.sandbox import processes
from cutover.sandbox.info import OLD_SITE_ADDRESS, AppInfo, PowerDnsInfo

log = structlog.get_logger()

PDNS_SERVER = os.environ.get("CUTOVER_SANDBOX_PDNS", "/usr/sbin/pdns_server")
_SCHEMA_CANDIDATES = (
    "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
    "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
)
RECORD_TTL = 60


def schema_file() -> Path:
    """The gsqlite3 schema that ships with the installed backend package."""
    for candidate in _SCHEMA_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SandboxError("PowerDNS gsqlite3 schema not found; install pdns-backend-sqlite3")


def prepare(pdns_dir: Path, info: PowerDnsInfo) -> None:
    """Write pdns.conf and create the sqlite database (kept when it exists)."""
    pdns_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = pdns_dir / "pdns.sqlite3"
    if not database.exists():
        partial = database.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        with sqlite3.connect(partial) as db:
            db.executescript(schema_file().read_text())
        db.close()
        partial.replace(database)
    api_port = int(info.api_url.rsplit(":", 1)[1])
    settings = {
        "launch": "gsqlite3",
        "gsqlite3-database": str(database),
        "local-address": f"{info.dns_host}:{info.dns_port}",
        "api": "yes",
        "api-key": info.api_key,
        "webserver": "yes",
        "webserver-address": "127.0.0.1",
        "webserver-port": str(api_port),
        "webserver-allow-from": "127.0.0.0/8",
        "guardian": "no",
        "daemon": "no",
        "disable-syslog": "yes",
        "write-pid": "no",
        "socket-dir": str(pdns_dir),
        "cache-ttl": "0",
        "query-cache-ttl": "0",
        "negquery-cache-ttl": "0",
        "zone-cache-refresh-interval": "0",
        "default-ttl": str(RECORD_TTL),
        "loglevel": "4",
    }
    conf = pdns_dir / "pdns.conf"
    conf.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    conf.chmod(0o600)


def start(info: PowerDnsInfo, pdns_dir: Path) -> int:
    """Start pdns_server unless ours runs, and wait until its API answers; returns its pid."""
    marker = f"--config-dir={pdns_dir}"
    if processes.is_ours(info.pid, marker):
        assert info.pid is not None
        return info.pid
    log_file = pdns_dir / "pdns.log"
    pid = processes.start_detached([PDNS_SERVER, marker, "--guardian=no", "--daemon=no"], log_file)
    deadline = time.monotonic() + 20
    with httpx.Client(timeout=2, headers={"X-API-Key": info.api_key}) as client:
        while True:
            if not processes.alive(pid):
                tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] if log_file.exists() else []
                raise SandboxError(
                    f"pdns_server ({info.api_url}, DNS {info.dns_host}:{info.dns_port}) exited at start: {tail[0] if tail else 'no output'}"
                )
            try:
                if client.get(f"{info.api_url}/api/v1/servers/{info.server_id}").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SandboxError(f"the PowerDNS API at {info.api_url} did not answer within 20s (log: {log_file})")
            time.sleep(0.05)
    log.info("sandbox_pdns_started", api=info.api_url, dns_port=info.dns_port, pid=pid)
    return pid


def ensure_zone(info: PowerDnsInfo, apps: dict[str, AppInfo]) -> None:
    """Create the zone with one A record per application pointing at the old site, unless
    the zone exists (its records are then left as they are: a cutover may have moved them)."""
    zone_url = f"{info.api_url}/api/v1/servers/{info.server_id}/zones"
    rrsets = [
        {"name": app.hostname, "type": "A", "ttl": RECORD_TTL, "records": [{"content": OLD_SITE_ADDRESS, "disabled": False}]}
        for app in apps.values()
    ]
    rrsets.append(
        {"name": f"ns1.{info.zone}", "type": "A", "ttl": RECORD_TTL, "records": [{"content": "127.0.0.1", "disabled": False}]}
    )
    try:
        with httpx.Client(timeout=10, headers={"X-API-Key": info.api_key}) as client:
            if client.get(f"{zone_url}/{info.zone}").status_code == 200:
                return
            response = client.post(
                zone_url,
                json={"name": info.zone, "kind": "Native", "nameservers": [f"ns1.{info.zone}"], "rrsets": rrsets},
            )
    except httpx.HTTPError as exc:
        raise SandboxError(f"creating zone {info.zone} through {info.api_url} failed: {type(exc).__name__}") from exc
    if response.status_code != 201:
        raise SandboxError(
            f"creating zone {info.zone} through {info.api_url} failed: HTTP {response.status_code} {response.text[:200]}"
        )
