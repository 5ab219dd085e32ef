"""Earlier runs of a cutover, as the step samples the timeline estimates from.

Each run's ``cutover.step.completed`` events carry the step's duration and bytes; they are
read from the Prefect API (``POST /events/filter``) over plain HTTP, so ``cutover plan
--timeline`` needs no Prefect import. The server keeps events for its retention period
(``PREFECT_SERVER_EVENTS_RETENTION_PERIOD``, 7 days by default): keep it longer than the
time from the first rehearsal to the weekend.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cutover import event_names as ev
from cutover.plan.timeline import StepSample
from cutover.statuspage.run_state import ROLLBACK_PREFIX, parse_time, related_id

PAGE_SIZE = 50


def completed_events(api_url: str, cutover: str, since: datetime, client: httpx.Client | None = None) -> list[dict[str, Any]]:
    """Every ``cutover.step.completed`` event of ``cutover`` since ``since``, oldest first."""
    api_url = api_url.rstrip("/")
    owned = client is None
    client = client or httpx.Client(timeout=30)
    body = {
        "filter": {
            "occurred": {"since": since.isoformat(), "until": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()},
            "event": {"name": [ev.STEP_COMPLETED]},
            "resource": {"labels": {ev.LABEL_CUTOVER: [cutover]}},
            "order": "ASC",
        },
        "limit": PAGE_SIZE,
    }
    try:
        response = client.post(f"{api_url}/events/filter", json=body)
        response.raise_for_status()
        page = response.json()
        events = list(page.get("events") or [])
        while page.get("next_page"):
            response = client.get(page["next_page"])
            response.raise_for_status()
            page = response.json()
            events.extend(page.get("events") or [])
    finally:
        if owned:
            client.close()
    return events


def samples_from_events(events: list[dict[str, Any]], exclude_runs: set[str] | None = None) -> list[StepSample]:
    """The forward steps' samples of the cutover flow's runs (not its rollbacks)."""
    samples = []
    for event in events:
        run, _ = related_id(event, "flow-run")
        _, flow = related_id(event, "flow")
        step_id = (event.get("resource") or {}).get(ev.LABEL_NAME, "")
        if not run or flow not in (None, ev.CUTOVER_FLOW) or step_id.startswith(ROLLBACK_PREFIX):
            continue
        if exclude_runs and run in exclude_runs:
            continue
        payload = event.get("payload") or {}
        samples.append(
            StepSample(run, step_id, float(payload.get("duration_s") or 0.0), payload.get("bytes"), parse_time(event["occurred"]))
        )
    return samples


def rehearsal_samples(api_url: str, cutover: str, days: float = 90.0) -> list[StepSample]:
    since = datetime.now(UTC) - timedelta(days=days)
    return samples_from_events(completed_events(api_url, cutover, since))
