"""The status page as a Starlette app.

Public (no login; nothing internal, see :mod:`cutover.statuspage.public_view`):

* ``/`` the page (server-rendered: it works without JavaScript, refreshing itself every
  30 s; with JavaScript it follows ``/events``), ``?lang=en|nl`` switches the language;
* ``/events`` server-sent events: ``state`` messages with the rendered main part;
* ``/status.json`` the same state as JSON.

Team (a token, see :mod:`cutover.statuspage.settings`):

* ``/team`` the step timeline, gates, throughput, forecast and the log;
  ``?token=`` once sets a cookie and redirects to the same page without it;
  ``?app=`` and ``?level=`` filter the log;
* ``/team/events`` server-sent events: ``state`` (rendered) and ``log`` (one JSON line each);
* ``/team/state.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cutover.statuspage import i18n
from cutover.statuspage.hub import Hub
from cutover.statuspage.log_lines import LEVELS, LogLine, matches
from cutover.statuspage.public_view import localized
from cutover.statuspage.team_view import team_state

HERE = Path(__file__).parent
KEEPALIVE_S = 15.0
LOG_LINES_SHOWN = 300
TEAM_COOKIE = "cutover_team"
LANG_COOKIE = "lang"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:",
}

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


def _cookie_value(token: str) -> str:
    # the cookie is proof of the token, not the token itself
    return hmac.new(token.encode(), b"cutover-status-team", hashlib.sha256).hexdigest()


class StatusPage:
    """Routes over a :class:`Hub`; ``team_token`` None turns the team view off."""

    def __init__(self, hub: Hub, team_token: str | None, ui_url: str) -> None:
        self.hub = hub
        self.team_token = team_token
        self.ui_url = ui_url

    # --- public -------------------------------------------------------------------

    def _lang(self, request: Request) -> str:
        return i18n.pick_language(
            request.query_params.get("lang"), request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
        )

    def _public_event(self, lang: str, version: int) -> bytes:
        """The public state as one server-sent event of ``version``."""
        payload = {
            "at": self._event_at(),
            "version": version,
            "updated": self.hub.public.get("updated"),
            "state": self.hub.public.get("state"),
            "html": self._public_main(lang),
        }
        return sse("state", payload, version)

    def _public(self, lang: str) -> dict[str, Any]:
        return self.hub.rendered(f"public-{lang}", lambda: localized(self.hub.public, lang))

    def _public_main(self, lang: str) -> str:
        return self.hub.rendered(
            f"public-main-{lang}",
            lambda: templates.get_template("public_main.html").render(
                s=self._public(lang), t=lambda k, **v: i18n.text(lang, k, **v)
            ),
        )

    def _event_at(self) -> str | None:
        """When the newest event shown happened (ms): a viewer can tell how late it is."""
        at = self.hub.state.last_event_at
        return at.isoformat(timespec="milliseconds") if at else None

    async def index(self, request: Request) -> Response:
        lang = self._lang(request)
        other = "nl" if lang == "en" else "en"
        html = templates.get_template("public.html").render(
            s=self._public(lang),
            main=self._public_main(lang),
            lang=lang,
            other=other,
            t=lambda k, **v: i18n.text(lang, k, **v),
            version=self.hub.views.version,
        )
        response = HTMLResponse(html, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})
        if request.query_params.get("lang") in i18n.LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return response

    async def status_json(self, request: Request) -> Response:
        return JSONResponse(
            self._public(self._lang(request)), headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
        )

    async def events(self, request: Request) -> Response:
        lang = self._lang(request)

        async def stream() -> AsyncIterator[bytes]:
            version = -1
            yield b"retry: 3000\n\n"
            while True:
                if self.hub.views.version > version:
                    version = self.hub.views.version
                    yield self.hub.rendered(f"public-sse-{lang}", partial(self._public_event, lang, version))
                elif not await self.hub.views.wait_newer(version, KEEPALIVE_S):
                    yield b": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)

    # --- team ---------------------------------------------------------------------

    def _refused(self, request: Request) -> Response | None:
        """None when the request may see the team view, else the refusal."""
        if not self.team_token:
            return self._refusal(403, "The team view is off: no team token is configured for this status page.")
        offered = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        if not offered and header.lower().startswith("bearer "):
            offered = header[7:].strip()
        if offered is not None:
            if hmac.compare_digest(offered.encode(), self.team_token.encode()):
                return None
            return self._refusal(403, "Wrong team token.")
        cookie = request.cookies.get(TEAM_COOKIE)
        if cookie is None:
            return self._refusal(401, "The team view needs the team token: open /team?token=... once.")
        if hmac.compare_digest(cookie.encode(), _cookie_value(self.team_token).encode()):
            return None
        return self._refusal(403, "Wrong team token.")

    def _refusal(self, status: int, message: str) -> Response:
        html = templates.get_template("refused.html").render(message=message)
        return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    def _team(self) -> dict[str, Any]:
        return self.hub.rendered("team", lambda: team_state(self.hub.state, self.hub.eta, self.ui_url, datetime.now(UTC)))

    def _team_main(self) -> str:
        return self.hub.rendered("team-main", lambda: templates.get_template("team_main.html").render(s=self._team()))

    def _filters(self, request: Request) -> tuple[str | None, str | None]:
        app = request.query_params.get("app") or None
        level = request.query_params.get("level") or None
        return app, (level if level in LEVELS else None)

    def _lines(self, app: str | None, level: str | None, lines: list[LogLine] | None = None) -> list[LogLine]:
        chosen = [line for line in (lines if lines is not None else self.hub.lines_after(-1)) if matches(line, app, level)]
        return chosen[-LOG_LINES_SHOWN:]

    async def team(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        if "token" in request.query_params:
            kept = {k: v for k, v in request.query_params.items() if k != "token"}
            response: Response = RedirectResponse("/team" + (f"?{urlencode(kept)}" if kept else ""), status_code=303)
            response.set_cookie(TEAM_COOKIE, _cookie_value(self.team_token or ""), httponly=True, samesite="strict", path="/team")
            return response
        app, level = self._filters(request)
        lines = sorted(self._lines(app, level), key=lambda line: line.timestamp)
        html = templates.get_template("team.html").render(
            s=self._team(),
            main=self._team_main(),
            lines=[line.to_dict() for line in lines],
            applications=self.hub.state.applications(),
            app=app or "",
            level=level or "",
            levels=list(LEVELS),
        )
        return HTMLResponse(html, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    async def team_state_json(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return JSONResponse(self._team(), headers={"Cache-Control": "no-store"})

    async def team_events(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        app, level = self._filters(request)
        hub = self.hub

        async def stream() -> AsyncIterator[bytes]:
            views, logs = -1, hub.logs.version
            yield b"retry: 3000\n\n"
            for line in sorted(self._lines(app, level), key=lambda line: line.timestamp):
                yield sse("log", line.to_dict())
            while True:
                sent = False
                if hub.views.version > views:
                    views = hub.views.version
                    yield sse("state", {"version": views, "html": self._team_main()}, views)
                    sent = True
                if hub.logs.version > logs:
                    new = hub.lines_after(logs)
                    logs = hub.logs.version
                    for line in new:
                        if matches(line, app, level):
                            yield sse("log", line.to_dict())
                    sent = True
                if sent:
                    continue
                waits = {
                    asyncio.create_task(hub.views.wait_newer(views, KEEPALIVE_S)),
                    asyncio.create_task(hub.logs.wait_newer(logs, KEEPALIVE_S)),
                }
                done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if not any(task.result() for task in done):
                    yield b": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok" if self.hub.ready else "starting", status_code=200 if self.hub.ready else 503)


def create_app(page: StatusPage, background: list[Any] | None = None) -> Starlette:
    """The Starlette app; ``background`` are coroutine factories run for the app's life
    (the feed, the clock tick, publishers)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(make()) for make in (background or [])]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    routes = [
        Route("/", page.index),
        Route("/status.json", page.status_json),
        Route("/events", page.events),
        Route("/team", page.team),
        Route("/team/state.json", page.team_state_json),
        Route("/team/events", page.team_events),
        Route("/healthz", page.health),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
