"""Mirroring the public state to a hosted status page service, as scheduled maintenance
with a status per component (one component per application).

One interface, :class:`StatusService` (``async publish(client, public)``), and two
services: Atlassian Statuspage (``POST``/``PATCH /v1/pages/{page}/incidents``, an incident
with ``scheduled_for``/``scheduled_until`` and a ``components`` map; ``Authorization: OAuth
KEY``) and Cachet 2.x (``POST``/``PUT /api/v1/schedules`` with ``components``, and
``PUT /api/v1/components/{id}``; ``X-Cachet-Token``).

:class:`Publisher` runs beside the page: ``submit`` only keeps the newest public state
(never blocks the page, let alone the cutover); its loop sends a state that differs from
the last one sent, retrying with backoff while the service fails, a newer state replacing
the one that could not be sent. The maintenance's id is kept in a small state file, so a
restarted page updates the same maintenance instead of opening another.

Only the public state goes out: the same words and fields the public page shows.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog
import yaml

from cutover.redaction import register_secret
from cutover.runbook.references import resolve

log = structlog.get_logger()

RETRY_S = (1, 2, 5, 10, 30, 60)


class StatusService(Protocol):
    name: str

    async def publish(self, client: httpx.AsyncClient, public: dict[str, Any]) -> None: ...


def _summary(public: dict[str, Any]) -> str:
    """A plain English line for the maintenance's text (public words only)."""
    apps = public.get("applications") or []
    live = sum(1 for a in apps if a["status"] == "live")
    eta = public.get("eta") or {}
    text = f"{live} of {len(apps)} applications live on the new site; {public['progress']['percent']}% done."
    if eta.get("expected") and eta.get("verdict") != "finished":
        text += f" Expected to be done at {eta['expected'][11:16]}."
    return text


class _Remembered:
    """The id of the maintenance a service opened, in a JSON file (or only in memory)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path is not None and path.exists() else {}
        self.values: dict[str, str] = data if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.values))
            tmp.replace(self.path)


@dataclass
class AtlassianStatuspage:
    """Atlassian Statuspage: one scheduled maintenance incident for the cutover."""

    page_id: str
    api_key: str = field(repr=False)
    components: dict[str, str]  # application -> component id
    base_url: str = "https://api.statuspage.io/v1"
    state_file: Path | None = None
    name: str = "statuspage"

    COMPONENT = {
        "planned": "operational",
        "frozen": "under_maintenance",
        "moving": "under_maintenance",
        "checking": "under_maintenance",
        "live": "operational",
        "rolling_back": "under_maintenance",
        "rolled_back": "operational",
        "attention": "major_outage",
    }

    def __post_init__(self) -> None:
        self._remembered = _Remembered(self.state_file)

    @staticmethod
    def incident_status(public: dict[str, Any]) -> str:
        state = public["state"]
        if state == "not_started":
            return "scheduled"
        if state in ("completed", "rolled_back"):
            return "completed"
        statuses = {a["status"] for a in public.get("applications") or []}
        if state == "running" and statuses <= {"checking", "live"} and "checking" in statuses:
            return "verifying"
        return "in_progress"

    def payload(self, public: dict[str, Any]) -> dict[str, Any]:
        components = {
            self.components[a["name"]]: self.COMPONENT[a["status"]]
            for a in public.get("applications") or []
            if a["name"] in self.components
        }
        incident: dict[str, Any] = {
            "name": f"Migration {public['cutover']}",
            "status": self.incident_status(public),
            "body": _summary(public),
            "components": components,
            "component_ids": list(components),
        }
        window = public.get("window")
        if window:
            incident["scheduled_for"] = window["start"]
            incident["scheduled_until"] = window["end"]
        return {"incident": incident}

    async def publish(self, client: httpx.AsyncClient, public: dict[str, Any]) -> None:
        headers = {"Authorization": f"OAuth {self.api_key}"}
        incident_id = self._remembered.get("incident_id")
        base = f"{self.base_url.rstrip('/')}/pages/{self.page_id}/incidents"
        if incident_id is None:
            response = await client.post(base, json=self.payload(public), headers=headers)
            response.raise_for_status()
            self._remembered.set("incident_id", str(response.json()["id"]))
        else:
            response = await client.patch(f"{base}/{incident_id}", json=self.payload(public), headers=headers)
            response.raise_for_status()


@dataclass
class Cachet:
    """Cachet 2.x: one schedule (maintenance) for the cutover, and its components' statuses."""

    base_url: str  # https://status.example.org
    token: str = field(repr=False)
    components: dict[str, int]  # application -> component id
    state_file: Path | None = None
    name: str = "cachet"

    # 1 operational, 2 performance issues, 3 partial outage, 4 major outage
    COMPONENT = {
        "planned": 1,
        "frozen": 3,
        "moving": 3,
        "checking": 3,
        "live": 1,
        "rolling_back": 3,
        "rolled_back": 1,
        "attention": 4,
    }
    UPCOMING, IN_PROGRESS, COMPLETE = 0, 1, 2

    def __post_init__(self) -> None:
        self._remembered = _Remembered(self.state_file)

    def schedule_status(self, public: dict[str, Any]) -> int:
        state = public["state"]
        if state == "not_started":
            return self.UPCOMING
        return self.COMPLETE if state in ("completed", "rolled_back") else self.IN_PROGRESS

    def component_statuses(self, public: dict[str, Any]) -> dict[int, int]:
        return {
            self.components[a["name"]]: self.COMPONENT[a["status"]]
            for a in public.get("applications") or []
            if a["name"] in self.components
        }

    def schedule(self, public: dict[str, Any]) -> dict[str, Any]:
        window = public.get("window") or {}
        body: dict[str, Any] = {
            "name": f"Migration {public['cutover']}",
            "message": _summary(public),
            "status": self.schedule_status(public),
            "components": {str(k): v for k, v in self.component_statuses(public).items()},
        }
        if window.get("start"):
            body["scheduled_at"] = _cachet_time(window["start"])
        if body["status"] == self.COMPLETE:
            body["completed_at"] = _cachet_time(public.get("updated") or window.get("end"))
        return body

    async def publish(self, client: httpx.AsyncClient, public: dict[str, Any]) -> None:
        headers = {"X-Cachet-Token": self.token}
        api = f"{self.base_url.rstrip('/')}/api/v1"
        schedule_id = self._remembered.get("schedule_id")
        if schedule_id is None:
            response = await client.post(f"{api}/schedules", json=self.schedule(public), headers=headers)
            response.raise_for_status()
            self._remembered.set("schedule_id", str(response.json()["data"]["id"]))
        else:
            response = await client.put(f"{api}/schedules/{schedule_id}", json=self.schedule(public), headers=headers)
            response.raise_for_status()
        for component_id, status in self.component_statuses(public).items():
            response = await client.put(f"{api}/components/{component_id}", json={"status": status}, headers=headers)
            response.raise_for_status()


def _cachet_time(iso: str | None) -> str | None:
    # Cachet takes "Y-m-d H:i" in the page's own timezone
    return iso[:16].replace("T", " ") if iso else None


class Publisher:
    """Sends the newest public state to ``service`` in the background (see the module)."""

    def __init__(
        self,
        service: StatusService,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
        retry_s: tuple[float, ...] = RETRY_S,
    ) -> None:
        self.service = service
        self.retry_s = retry_s
        self.transport = transport
        self.timeout_s = timeout_s
        self._latest: dict[str, Any] | None = None
        self._sent: str | None = None
        self._wake = asyncio.Event()
        self.failures = 0
        self.published = 0

    def submit(self, public: dict[str, Any]) -> None:
        """Keep ``public`` to send; returns at once."""
        self._latest = public
        self._wake.set()

    def _comparable(self, public: dict[str, Any]) -> str:
        # "updated" moves with every event; the service needs only what it shows
        return json.dumps({k: v for k, v in public.items() if k != "updated"}, sort_keys=True)

    async def run(self) -> None:
        async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout_s) as client:
            while True:
                await self._wake.wait()
                self._wake.clear()
                public = self._latest
                if public is None or self._comparable(public) == self._sent:
                    continue
                try:
                    await self.service.publish(client, public)
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    delay = self.retry_s[min(self.failures, len(self.retry_s) - 1)]
                    self.failures += 1
                    log.warning(
                        "status_publish_failed",
                        service=self.service.name,
                        error=f"{type(exc).__name__}: {exc}"[:300],
                        retry_in_s=delay,
                    )
                    await asyncio.sleep(delay)
                    self._wake.set()  # try again, with the newest state by then
                    continue
                self.failures = 0
                self.published += 1
                self._sent = self._comparable(public)


def publisher_from_file(path: Path, runbook: Any = None) -> Publisher:
    """A publisher from a YAML file::

    provider: statuspage            # or cachet
    page_id: abc123                  # statuspage
    api_key: env:STATUSPAGE_API_KEY  # a reference, as in runbooks (cachet: token)
    url: https://status.example.org  # cachet (statuspage: optional base_url)
    components: {burgerzaken: cmp1, zaaksysteem: cmp2}
    state_file: statuspage-state.json   # optional, next to this file
    """
    config = yaml.safe_load(path.read_text()) or {}
    state_file = config.get("state_file")
    state = (path.parent / state_file) if state_file else path.with_suffix(".state.json")
    provider = config.get("provider")
    if provider == "statuspage":
        key = resolve(config["api_key"])
        register_secret(key)
        service: StatusService = AtlassianStatuspage(
            page_id=str(config["page_id"]),
            api_key=key,
            components={str(k): str(v) for k, v in config["components"].items()},
            base_url=config.get("base_url", "https://api.statuspage.io/v1"),
            state_file=state,
        )
    elif provider == "cachet":
        token = resolve(config["token"])
        register_secret(token)
        service = Cachet(
            base_url=config["url"],
            token=token,
            components={str(k): int(v) for k, v in config["components"].items()},
            state_file=state,
        )
    else:
        raise ValueError(f"{path}: provider must be statuspage or cachet, not {provider!r}")
    return Publisher(service)
