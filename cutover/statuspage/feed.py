"""What the status page hears from the Prefect server: events and the run's logs.

Events: the live subscription (Prefect's websocket ``/events/out``, through its
``PrefectEventSubscriber``) is opened first and buffered; then the whole history is read
from ``POST /events/filter`` page by page (the websocket's own backfill reaches back 15
minutes only; a weekend is longer); then the buffer and the live stream follow. Events
seen twice count once. A second history pass a little later catches what was still on its
way into the server's database at the first. When the server goes away the feed starts
over, with backoff: the page keeps showing the last state meanwhile.

Logs: the current run's records from ``POST /logs/filter`` (again whenever the current
run changes), then live ones from ``/logs/out`` (``PrefectLogsSubscriber``), kept only
when they belong to the current run or a rollback of it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import structlog

from cutover import event_names as ev
from cutover.statuspage.hub import Hub
from cutover.statuspage.log_lines import parse_record

log = structlog.get_logger()

EVENT_PREFIXES = [ev.CUTOVER_PREFIX, ev.FLOW_RUN_PREFIX, ev.TASK_RUN_FAILED, ev.TASK_RUN_CRASHED]
PAGE_SIZE = 50  # the most the events API returns per page
LOG_PAGE = 200
LOG_HISTORY = 2000  # the current run's latest lines read at start
CATCH_UP_AFTER_S = 15.0
UNCLAIMED_KEPT = 1000
RETRY_S = (1, 2, 5, 10, 30)


def event_filter_json(since: datetime, until: datetime, prefixes: list[str] | None = None) -> dict[str, Any]:
    """An ``EventFilter`` as the REST API takes it: events by name prefix, oldest first."""
    return {
        "occurred": {"since": since.isoformat(), "until": until.isoformat()},
        "event": {"prefix": prefixes or EVENT_PREFIXES},
        "order": "ASC",
    }


async def read_events(client: httpx.AsyncClient, api_url: str, since: datetime, prefixes: list[str] | None = None) -> list[dict[str, Any]]:
    """Every event since ``since`` (by name prefix), following the API's next-page links."""
    until = datetime.now(timezone.utc) + timedelta(minutes=5)
    response = await client.post(
        f"{api_url}/events/filter", json={"filter": event_filter_json(since, until, prefixes), "limit": PAGE_SIZE}
    )
    response.raise_for_status()
    page = response.json()
    events = list(page.get("events") or [])
    while page.get("next_page"):
        response = await client.get(page["next_page"])
        response.raise_for_status()
        page = response.json()
        events.extend(page.get("events") or [])
    return events


class Feed:
    """Keeps ``hub`` fed from the Prefect API at ``api_url`` until cancelled."""

    def __init__(self, hub: Hub, api_url: str, backfill: timedelta) -> None:
        self.hub = hub
        self.api_url = api_url.rstrip("/")
        self.backfill = backfill
        self.connected = False
        self._log_runs: set[str] = set()

    async def run(self) -> None:
        await asyncio.gather(self._forever(self._events, "events"), self._forever(self._logs, "logs"))

    async def _forever(self, work: Any, what: str) -> None:
        failures = 0
        while True:
            try:
                await work()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server restarts, the network drops: start over
                self.connected = False
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                log.warning("status_feed_lost", feed=what, error=f"{type(exc).__name__}: {exc}"[:300], retry_in_s=delay)
                await asyncio.sleep(delay)

    # --- events -------------------------------------------------------------------

    async def _events(self) -> None:
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        since = datetime.now(timezone.utc) - self.backfill
        live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        subscriber = PrefectEventSubscriber(
            api_url=self.api_url,
            filter=EventFilter(event=EventNameFilter(prefix=EVENT_PREFIXES)),
            reconnect_on_clean_close=True,
        )
        async with subscriber, httpx.AsyncClient(timeout=30) as client:

            async def listen() -> None:
                async for event in subscriber:
                    live.put_nowait(event.model_dump(mode="json"))

            listener = asyncio.create_task(listen())
            try:
                history = await read_events(client, self.api_url, since)
                self.hub.state.apply_all(history)
                self.hub.ready = True
                self.connected = True
                self.hub.refresh()
                log.info("status_feed_backfilled", events=len(history))
                catch_up = asyncio.get_running_loop().time() + CATCH_UP_AFTER_S
                while True:
                    if listener.done():
                        listener.result()  # raises what ended it
                        return
                    timeout = max(0.0, catch_up - asyncio.get_running_loop().time()) if catch_up else 5.0
                    try:
                        first = await asyncio.wait_for(live.get(), timeout=min(timeout, 5.0) or 0.01)
                        batch = [first]
                        while not live.empty():
                            batch.append(live.get_nowait())
                        self.hub.apply_events(batch)
                    except asyncio.TimeoutError:
                        pass
                    if catch_up and asyncio.get_running_loop().time() >= catch_up:
                        catch_up = 0.0
                        self.hub.apply_events(await read_events(client, self.api_url, since))
            finally:
                listener.cancel()

    # --- logs ---------------------------------------------------------------------

    def _wanted_runs(self) -> set[str]:
        state = self.hub.state
        return {rid for rid in state.runs if rid == state.current_run or state._in_current(rid, state.runs[rid].first_seen)}

    async def _logs(self) -> None:
        from prefect.client.schemas.filters import LogFilter
        from prefect.logging.clients import PrefectLogsSubscriber

        live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        unclaimed: deque[dict[str, Any]] = deque(maxlen=UNCLAIMED_KEPT)
        subscriber = PrefectLogsSubscriber(api_url=self.api_url, filter=LogFilter(), reconnect_on_clean_close=True)
        self._log_runs = set()
        async with subscriber, httpx.AsyncClient(timeout=30) as client:

            async def listen() -> None:
                async for record in subscriber:
                    live.put_nowait(record.model_dump(mode="json"))

            listener = asyncio.create_task(listen())
            try:
                while True:
                    if listener.done():
                        listener.result()
                        return
                    wanted = self._wanted_runs()
                    if wanted - self._log_runs:
                        for run_id in sorted(wanted - self._log_runs):
                            await self._log_history(client, run_id)
                            self._log_runs.add(run_id)
                        claimed = [r for r in unclaimed if str(r.get("flow_run_id")) in wanted]
                        self.hub.add_log_lines([parse_record(r, self.hub.state.task_runs) for r in claimed])
                    try:
                        first = await asyncio.wait_for(live.get(), timeout=1.0)
                    except asyncio.TimeoutError:
                        continue
                    batch = [first]
                    while not live.empty():
                        batch.append(live.get_nowait())
                    wanted = self._wanted_runs()
                    steps = self.hub.state.task_runs
                    # a run's first lines may come before the first event that names the run
                    unclaimed.extend(r for r in batch if str(r.get("flow_run_id")) not in wanted)
                    self.hub.add_log_lines([parse_record(r, steps) for r in batch if str(r.get("flow_run_id")) in wanted])
            finally:
                listener.cancel()

    async def _log_history(self, client: httpx.AsyncClient, flow_run_id: str) -> None:
        records: list[dict[str, Any]] = []
        offset = 0
        while len(records) < LOG_HISTORY:
            response = await client.post(
                f"{self.api_url}/logs/filter",
                json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_DESC", "limit": LOG_PAGE, "offset": offset},
            )
            response.raise_for_status()
            page = response.json()
            records.extend(page)
            if len(page) < LOG_PAGE:
                break
            offset += LOG_PAGE
        records.reverse()
        steps = self.hub.state.task_runs
        self.hub.add_log_lines([parse_record(r, steps) for r in records])
