"""Benchmark: N concurrent viewers of the public page's event stream, on loopback.

A real Prefect server (its own temporary home) and the status page as its own process,
as in production; N server-sent-event viewers in this process (asyncio, httpx). Events go
in through the Prefect API (``POST /api/events``, one step event at a time at ``--rate``
per second); every viewer notes, for each message it receives, how long after the
newest event in it happened it arrived (the message carries that event's time, ms). So a
latency covers the whole path: Prefect's event pipeline, its websocket to the page, the
page's coalescing and rendering, and the SSE fan-out. Also reported: the status page
process's resident memory with N viewers connected, and how many messages arrived.

    .venv/bin/python bench/status_page.py [--viewers 1,100,500] [--seconds 20] [--rate 5] [--write]

``--write`` puts the table into the "Status page" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cutover.event_names import STEP_COMPLETED, STEP_STARTED, step_resource  # noqa: E402
from cutover.orchestration.server import start_server, stop_server  # noqa: E402
from cutover.statuspage.process import start_status_page, stop_status_page  # noqa: E402

AT = re.compile(rb'^data: \{"at":"([^"]+)"')
DOC = ROOT / "docs" / "benchmarks.md"
_TABLE_HEAD = "| viewers |"
CUTOVER = "bench-estate"  # a page without a runbook follows the first cutover it hears of


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Connected:
    """Set once ``expected`` viewers have their stream open."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count, self.all = expected, 0, asyncio.Event()

    def one_more(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.all.set()


async def viewer(client: httpx.AsyncClient, url: str, latencies: list[float], connected: Connected, stop: asyncio.Event) -> None:
    async with client.stream("GET", url) as response:
        connected.one_more()
        async for line in response.aiter_lines():
            if stop.is_set():
                return
            match = AT.match(line.encode())
            if match:
                sent = datetime.fromisoformat(match.group(1).decode()).timestamp()
                latencies.append(time.time() - sent)


async def emit_events(api_url: str, cutover: str, seconds: float, rate: float) -> int:
    count = 0
    async with httpx.AsyncClient(timeout=10) as client:
        deadline = time.monotonic() + seconds
        step = 0
        while time.monotonic() < deadline:
            name = STEP_STARTED if count % 2 == 0 else STEP_COMPLETED
            if name == STEP_STARTED:
                step += 1
            event = {
                "id": str(uuid.uuid4()),
                "occurred": datetime.now(UTC).isoformat(),
                "event": name,
                "resource": step_resource(cutover, f"app{step % 50:02d}/freeze", "freeze"),
                "related": [
                    {
                        "prefect.resource.id": "prefect.flow-run.00000000-0000-0000-0000-000000000b0e",
                        "prefect.resource.role": "flow-run",
                        "prefect.resource.name": "bench",
                    }
                ],
                "payload": {"duration_s": 0.5} if name == STEP_COMPLETED else {},
            }
            (await client.post(f"{api_url}/events", json=[event])).raise_for_status()
            count += 1
            await asyncio.sleep(1.0 / rate)
    return count


async def one_round(page_url: str, page_pid: int, api_url: str, viewers: int, seconds: float, rate: float) -> dict[str, float]:
    latencies: list[float] = []
    stop = asyncio.Event()
    connected = Connected(viewers)
    limits = httpx.Limits(max_connections=viewers + 10, max_keepalive_connections=viewers + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as client:
        tasks = [
            asyncio.create_task(viewer(client, f"{page_url}events?lang=en", latencies, connected, stop)) for _ in range(viewers)
        ]
        await asyncio.wait_for(connected.all.wait(), 120)
        await asyncio.sleep(1.0)
        latencies.clear()  # the state each viewer gets on connecting is not an event's delivery
        emitted = await emit_events(api_url, CUTOVER, seconds, rate)
        memory = rss_mib(page_pid)
        await asyncio.sleep(2.0)  # the last deliveries
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    ordered = sorted(latencies)
    return {
        "viewers": viewers,
        "events": emitted,
        "messages": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan"),
        "max_ms": 1000 * ordered[-1] if ordered else float("nan"),
        "rss_mib": memory,
    }


def table(rows: list[dict[str, float]], seconds: float, rate: float) -> str:
    lines = [
        "| viewers | events | messages received | p50 latency | p99 latency | max | status page RSS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['viewers']} | {r['events']} | {r['messages']} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms "
            f"| {r['max_ms']:.0f} ms | {r['rss_mib']:.0f} MiB |"
        )
    lines.append("")
    lines.append(
        f"{seconds:g} s of step events at {rate:g}/s per round, through a local Prefect server (SQLite), on this 2-core machine."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", default="1,100,500")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    args = parser.parse_args()
    counts = [int(n) for n in args.viewers.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(counts) + 256)), hard))
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        server = start_server(Path(tmp) / "prefect")
        try:
            page = start_status_page(Path(tmp) / "page", server.api_url, port=None)
            try:
                rows = []
                for count in counts:
                    row = asyncio.run(one_round(page.url, page.pid, server.api_url, count, args.seconds, args.rate))
                    rows.append(row)
                    print(
                        f"{count} viewers: p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, RSS {row['rss_mib']:.0f} MiB",
                        flush=True,
                    )
            finally:
                stop_status_page(Path(tmp) / "page")
        finally:
            stop_server(Path(tmp) / "prefect")
    text = table(rows, args.seconds, args.rate)
    print(text)
    if args.write:
        # the section's table is replaced; the words around it stay
        doc = DOC.read_text()
        section = doc.index("## Status page")
        start = doc.index(_TABLE_HEAD, section)
        end = doc.index("\n\n", start)
        DOC.write_text(doc[:start] + text.split("\n\n")[0] + doc[end:])


if __name__ == "__main__":
    main()
