"""The applications of one site, served by one process: ``python -m cutover.sandbox.site_apps
--config <file>``.

Every application has its own address:port (the site's loopback address, the app's port);
a single uvicorn server listens on all of them and hands each request to the application
whose socket received it. Per application:

* ``GET /health``: 503 ``{"status": "maintenance"}`` in maintenance mode; otherwise a fresh
  connection (the cloud database appears only once the cutover has imported it) as the
  application's role to its first database on this site's cluster, and 200
  ``{"status": "ok", "app", "site", "database", "cluster", "rows"}`` or 503
  ``{"status": "database-unavailable"}``.
* ``GET /maintenance`` and ``POST /maintenance`` with ``{"enabled": true|false}``: read and
  switch maintenance mode; both answer ``{"maintenance": bool}``.

The config file (JSON, 0600: it holds the roles' passwords) is written by ``up``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

log = structlog.get_logger()


@dataclass
class SiteApp:
    """One application at one site, as the config file describes it."""

    name: str
    site: str
    address: str
    port: int
    database: str
    table: str
    db_host: str
    db_port: int
    db_user: str
    db_password: str
    maintenance: bool


def build_app(app: SiteApp) -> Starlette:
    """The Starlette application for ``app``; its maintenance flag lives in ``app``."""

    async def health(request: Request) -> JSONResponse:
        if app.maintenance:
            return JSONResponse({"status": "maintenance"}, status_code=503)
        query = sql.SQL("select current_setting('cluster_name'), (select count(*) from {})").format(
            sql.Identifier("public", app.table)
        )
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=app.db_host, port=app.db_port, user=app.db_user, password=app.db_password,
                dbname=app.database, sslmode="disable", connect_timeout=5, autocommit=True,
            )
            async with conn:
                cursor = await conn.execute(query)
                row = await cursor.fetchone()
        except psycopg.Error as exc:
            log.info("health_database_unavailable", app=app.name, site=app.site, database=app.database,
                     error=type(exc).__name__)
            return JSONResponse({"status": "database-unavailable"}, status_code=503)
        assert row is not None
        return JSONResponse({
            "status": "ok", "app": app.name, "site": app.site, "database": app.database,
            "cluster": row[0], "rows": row[1],
        })

    async def maintenance(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
                return JSONResponse({"error": 'expected JSON {"enabled": true|false}'}, status_code=422)
            if app.maintenance != body["enabled"]:
                log.info("maintenance_switched", app=app.name, site=app.site, enabled=body["enabled"])
            app.maintenance = body["enabled"]
        return JSONResponse({"maintenance": app.maintenance})

    return Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/maintenance", maintenance, methods=["GET", "POST"]),
    ])


class PortDispatch:
    """An ASGI app that passes each request to the application owning the local port."""

    def __init__(self, apps: dict[int, Starlette]) -> None:
        self.apps = apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        target = self.apps.get(server[1]) if server else None
        if target is None:
            response = JSONResponse({"error": "no application on this port"}, status_code=404)
            await response(scope, receive, send)
            return
        await target(scope, receive, send)


def load_config(path: Path) -> list[SiteApp]:
    data: dict[str, Any] = json.loads(path.read_text())
    return [SiteApp(**entry) for entry in data["apps"]]


def _listen(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def serve(apps: list[SiteApp]) -> None:
    """Serve every application on its own address:port until SIGTERM/SIGINT."""
    import uvicorn

    sockets = [_listen(app.address, app.port) for app in apps]
    dispatch = PortDispatch({app.port: build_app(app) for app in apps})
    config = uvicorn.Config(
        dispatch, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2,
    )
    await uvicorn.Server(config).serve(sockets=sockets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    asyncio.run(serve(load_config(args.config)))


if __name__ == "__main__":
    main()
