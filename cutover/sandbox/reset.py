"""Put a running sandbox back to "before the cutover", so several cutovers can run on one.

Drops every database and role the cutover created on the cloud cluster, makes the old
site's databases writable, points every DNS record back at the old site, clears every
injected fault of the applications (``/fault``, see site_apps) on both sites, and sets the
applications' maintenance flags to their starting values (old site live, new site in
maintenance). Tests use it between cutovers; `cutover sandbox reset` exposes it.
"""

from __future__ import annotations

import httpx
import psycopg
from psycopg import sql

from cutover.sandbox.info import OLD_SITE_ADDRESS, PostgresInfo, SandboxInfo


def _admin(pg: PostgresInfo) -> psycopg.Connection:
    return psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="postgres", autocommit=True, sslmode="disable"
    )


def reset(info: SandboxInfo) -> None:
    with _admin(info.cloud) as admin:
        databases = [
            r[0] for r in admin.execute("select datname from pg_database where not datistemplate and datname <> 'postgres'")
        ]
        for name in databases:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
        roles = [
            r[0]
            for r in admin.execute(
                "select rolname from pg_roles where rolname !~ '^pg_' and rolname <> current_user and oid > 16383"
            )
        ]
        for name in roles:
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))
    with _admin(info.onprem) as admin:
        for app in info.apps.values():
            for db in app.databases:
                admin.execute(sql.SQL("alter database {} reset default_transaction_read_only").format(sql.Identifier(db)))
    headers = {"X-API-Key": info.powerdns.api_key}
    zone_url = f"{info.powerdns.api_url}/api/v1/servers/{info.powerdns.server_id}/zones/{info.powerdns.zone}"
    rrsets = [
        {
            "name": app.hostname,
            "type": "A",
            "ttl": 60,
            "changetype": "REPLACE",
            "records": [{"content": OLD_SITE_ADDRESS, "disabled": False}],
        }
        for app in info.apps.values()
    ]
    with httpx.Client(timeout=10) as client:
        client.patch(zone_url, headers=headers, json={"rrsets": rrsets}).raise_for_status()
        for app in info.apps.values():
            # First, or a fault on POST /maintenance would fail the reset itself.
            for url in (app.old_url, app.new_url):
                cleared = client.delete(f"{url}/fault")
                # 404: a site process started before /fault existed has no faults to clear.
                if cleared.status_code != 404:
                    cleared.raise_for_status()
            client.post(f"{app.old_url}/maintenance", json={"enabled": False}).raise_for_status()
            client.post(f"{app.new_url}/maintenance", json={"enabled": True}).raise_for_status()
