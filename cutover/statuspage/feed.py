"""What the status page hears from the Prefect server: events and the run's logs.

Events: the live subscription (Prefect's websocket ``/events/out``, through its
``PrefectEventSubscriber``) is opened first and buffered; then the whole history is read
from ``POST /events/filter`` page by page (the websocket's own backfill reaches back 15
minutes only; a weekend is longer); then the buffer and the live stream follow. Events
seen twice count once. A second history pass a little later catches what was still on its
way into the server's database at the first. When the server goes away the feed starts
over, with backoff: the page keeps showing the last state meanwhile.

Logs: the current run's (and its rollbacks') latest records from ``POST /logs/filter``,
then every second the ones after the newest seen.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog

from cutover import event_names as ev
from cutover.statuspage.hub import Hub
from cutover.statuspage.log_lines import parse_record
from cutover.statuspage.run_state import parse_time

log = structlog.get_logger()

EVENT_PREFIXES = [ev.CUTOVER_PREFIX, ev.FLOW_RUN_PREFIX, ev.TASK_RUN_FAILED, ev.TASK_RUN_CRASHED]
HEARTBEAT = "prefect.flow-run.heartbeat"  # says a process lives; nothing the page shows
PAGE_SIZE = 50  # the most the events API returns per page
LOG_PAGE = 200
LOG_HISTORY = 2000  # the current run's latest lines read at start
CATCH_UP_AFTER_S = 15.0
LOG_POLL_S = 1.0
LOG_OVERLAP = timedelta(seconds=5)
RETRY_S = (1, 2, 5, 10, 30)


def event_filter_json(since: datetime, until: datetime, prefixes: list[str] | None = None) -> dict[str, Any]:
    """An ``EventFilter`` as the REST API takes it: events by name prefix, oldest first.
    Progress events are left out of the history (a weekend has very many of them, and
    only the newest matters: the live stream brings it within seconds)."""
    return {
        "occurred": {"since": since.isoformat(), "until": until.isoformat()},
        "event": {"prefix": prefixes or EVENT_PREFIXES, "exclude_name": [ev.STEP_PROGRESS, HEARTBEAT]},
        "order": "ASC",
    }


async def read_events(
    client: httpx.AsyncClient, api_url: str, since: datetime, prefixes: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every event since ``since`` (by name prefix), following the API's next-page links."""
    until = datetime.now(UTC) + timedelta(minutes=5)
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

        since = datetime.now(UTC) - self.backfill
        live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        subscriber = PrefectEventSubscriber(
            api_url=self.api_url,
            filter=EventFilter(event=EventNameFilter(prefix=EVENT_PREFIXES, exclude_name=[HEARTBEAT])),
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
                    except TimeoutError:
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
        # Polled: the server's websocket for logs (/logs/out) is off unless the server
        # runs with PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED; the run's logs reach the API
        # in batches every couple of seconds anyway.
        newest: dict[str, datetime] = {}
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                for run_id in sorted(self._wanted_runs()):
                    if run_id not in newest:
                        newest[run_id] = await self._log_history(client, run_id)
                    else:
                        newest[run_id] = await self._log_since(client, run_id, newest[run_id])
                await asyncio.sleep(LOG_POLL_S)

    def _add(self, records: list[dict[str, Any]]) -> datetime | None:
        steps = self.hub.state.task_runs
        self.hub.add_log_lines([parse_record(r, steps) for r in records])
        stamps = [parse_time(r["timestamp"]) for r in records if r.get("timestamp")]
        return max(stamps) if stamps else None

    async def _log_history(self, client: httpx.AsyncClient, flow_run_id: str) -> datetime:
        """The run's latest :data:`LOG_HISTORY` lines; the newest one's time."""
        records: list[dict[str, Any]] = []
        offset = 0
        while len(records) < LOG_HISTORY:
            page = await self._log_page(client, {"flow_run_id": {"any_": [flow_run_id]}}, "TIMESTAMP_DESC", offset)
            records.extend(page)
            if len(page) < LOG_PAGE:
                break
            offset += LOG_PAGE
        records.reverse()
        return self._add(records) or datetime.now(UTC) - LOG_OVERLAP

    async def _log_since(self, client: httpx.AsyncClient, flow_run_id: str, newest: datetime) -> datetime:
        """Lines from a little before ``newest`` on (a batch may carry older lines than
        one already read; seen ones count once)."""
        offset = 0
        after = (newest - LOG_OVERLAP).isoformat()
        while True:
            page = await self._log_page(
                client, {"flow_run_id": {"any_": [flow_run_id]}, "timestamp": {"after_": after}}, "TIMESTAMP_ASC", offset
            )
            found = self._add(page)
            newest = max(newest, found) if found else newest
            if len(page) < LOG_PAGE:
                return newest
            offset += LOG_PAGE

    async def _log_page(self, client: httpx.AsyncClient, logs: dict[str, Any], sort: str, offset: int) -> list[dict[str, Any]]:
        response = await client.post(
            f"{self.api_url}/logs/filter", json={"logs": logs, "sort": sort, "limit": LOG_PAGE, "offset": offset}
        )
        response.raise_for_status()
        return list(response.json())
