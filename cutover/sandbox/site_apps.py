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
* ``/fault``, the fault switch for tests (tests/faults.py): ``POST /fault`` with
  ``{"path": "/health", "method": "GET", "status": 500, "count": 2}`` makes the next
  ``count`` requests for that path and method answer ``status`` (``{"error": "injected
  fault"}``) without reaching the application; ``count`` null or missing means until
  cleared. A new fault for the same path and method replaces the old one. ``GET /fault``
  lists the faults with the requests each has left (``{"faults": [...]}``); ``DELETE
  /fault`` clears them all, ``DELETE /fault?path=/health&method=GET`` that one only.
  ``/fault`` itself cannot be faulted, so a fault can always be cleared.

The config file (JSON, 0600: it holds the roles' passwords) is written by ``up``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

log = structlog.get_logger()


@dataclass
class Fault:
    """An injected fault (see ``/fault``): answer ``status``, for ``left`` more requests
    (None: until cleared)."""

    status: int
    left: int | None


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
    faults: dict[tuple[str, str], Fault] = field(default_factory=dict)  # by (path, METHOD)


def build_app(app: SiteApp) -> ASGIApp:
    """The ASGI application for ``app``; its maintenance flag and faults live in ``app``."""

    async def health(request: Request) -> JSONResponse:
        if app.maintenance:
            return JSONResponse({"status": "maintenance"}, status_code=503)
        query = sql.SQL("select current_setting('cluster_name'), (select count(*) from {})").format(
            sql.Identifier("public", app.table)
        )
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=app.db_host,
                port=app.db_port,
                user=app.db_user,
                password=app.db_password,
                dbname=app.database,
                sslmode="disable",
                connect_timeout=5,
                autocommit=True,
            )
            async with conn:
                cursor = await conn.execute(query)
                row = await cursor.fetchone()
        except psycopg.Error as exc:
            log.info("health_database_unavailable", app=app.name, site=app.site, database=app.database, error=type(exc).__name__)
            return JSONResponse({"status": "database-unavailable"}, status_code=503)
        assert row is not None
        return JSONResponse(
            {
                "status": "ok",
                "app": app.name,
                "site": app.site,
                "database": app.database,
                "cluster": row[0],
                "rows": row[1],
            }
        )

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

    return FaultSwitch(
        app,
        Starlette(
            routes=[
                Route("/health", health, methods=["GET"]),
                Route("/maintenance", maintenance, methods=["GET", "POST"]),
                Route("/fault", fault_switch(app), methods=["GET", "POST", "DELETE"]),
            ]
        ),
    )


FAULT_PATH = "/fault"


def fault_switch(app: SiteApp) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The ``/fault`` endpoint of ``app`` (see the module docstring)."""

    def listing() -> JSONResponse:
        return JSONResponse(
            {
                "faults": [
                    {"path": path, "method": method, "status": fault.status, "count": fault.left}
                    for (path, method), fault in sorted(app.faults.items())
                ]
            }
        )

    async def endpoint(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            path, method = request.query_params.get("path"), request.query_params.get("method")
            if path is None and method is None:
                app.faults.clear()
            elif path is None or method is None:
                return JSONResponse({"error": "DELETE /fault takes both path and method, or neither"}, status_code=422)
            else:
                app.faults.pop((path, method.upper()), None)
            log.info("fault_cleared", app=app.name, site=app.site, path=path, method=method)
        elif request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
            problem = _fault_problem(body)
            if problem:
                return JSONResponse({"error": f"POST /fault: {problem}"}, status_code=422)
            key = (body["path"], body["method"].upper())
            app.faults[key] = Fault(body["status"], body.get("count"))
            log.info(
                "fault_set",
                app=app.name,
                site=app.site,
                path=key[0],
                method=key[1],
                status=body["status"],
                count=body.get("count"),
            )
        return listing()

    return endpoint


def _fault_problem(body: Any) -> str | None:
    """What is wrong with a ``POST /fault`` body, or None."""
    if not isinstance(body, dict):
        return 'expected JSON {"path": "/health", "method": "GET", "status": 500, "count": null}'
    unknown = set(body) - {"path", "method", "status", "count"}
    if unknown:
        return f"unknown field(s) {', '.join(sorted(unknown))}"
    path, method, status, count = body.get("path"), body.get("method"), body.get("status"), body.get("count")
    if not isinstance(path, str) or not path.startswith("/"):
        return 'path must be a string starting with "/"'
    if path == FAULT_PATH:
        return "/fault itself cannot be faulted"
    if not isinstance(method, str) or not method.isalpha():
        return "method must be an HTTP method such as GET or POST"
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        return "status must be a final HTTP status code (200-599)"
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        return "count must be a positive integer, or null for until cleared"
    return None


class FaultSwitch:
    """ASGI wrapper: a request matching a fault of ``app`` gets the fault's status instead
    of reaching ``inner`` (and uses up one of its requests)."""

    def __init__(self, app: SiteApp, inner: ASGIApp) -> None:
        self.app = app
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = (scope.get("path", ""), scope.get("method", ""))
        fault = self.app.faults.get(key) if scope["type"] == "http" else None
        if fault is None:
            await self.inner(scope, receive, send)
            return
        if fault.left is not None:
            fault.left -= 1
            if fault.left == 0:
                del self.app.faults[key]
        log.info("fault_answered", app=self.app.name, site=self.app.site, path=key[0], method=key[1], status=fault.status)
        # 204 and 304 must not carry a body.
        response = (
            Response(status_code=fault.status)
            if fault.status in (204, 304)
            else JSONResponse({"error": "injected fault"}, status_code=fault.status)
        )
        await response(scope, receive, send)


class PortDispatch:
    """An ASGI app that passes each request to the application owning the local port."""

    def __init__(self, apps: dict[int, ASGIApp]) -> None:
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
        dispatch,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    await uvicorn.Server(config).serve(sockets=sockets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    asyncio.run(serve(load_config(args.config)))


if __name__ == "__main__":
    main()
