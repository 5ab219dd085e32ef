"""The notification automations on the session's Prefect server, sending through a custom
webhook block to a small HTTP receiver on loopback (the sandbox's stand-in for Slack,
Teams or email): a waiting decision notifies at once, and a cutover that goes quiet after
a step started notifies when its window passes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from cutover import event_names as ev
from cutover.orchestration.automations import create_automations, delete_automations

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(json.loads(body or b"{}"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", received
    finally:
        server.shutdown()
        server.server_close()


def emit(api_url: str, name: str, cutover: str, step_id: str, phase: str) -> None:
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": ev.step_resource(cutover, step_id, phase),
        "payload": {},
    }
    httpx.post(f"{api_url}/events", json=[event], timeout=10).raise_for_status()


def wait_for_notification(received: list[dict], text: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in list(received):
            if text in message.get("subject", ""):
                return message
        time.sleep(0.5)
    raise AssertionError(f"no notification with {text!r}; got {received}")


def test_a_waiting_decision_and_a_silent_run_notify_through_a_webhook_block(prefect_api, webhook):
    url, received = webhook
    api = prefect_api.api_url
    cutover = f"notify-test-{uuid.uuid4().hex[:6]}"
    names = create_automations(api, webhook_url=url, silent_minutes=0.25)
    try:
        assert len(names) == 4
        assert create_automations(api, webhook_url=url, silent_minutes=0.25) == names, "creating again replaces them"
        listed = httpx.post(f"{api}/automations/filter", json={}, timeout=10).json()
        assert sorted(a["name"] for a in listed if a["name"].startswith("cutover: ")) == sorted(names)

        emit(api, ev.GATE_WAITING, cutover, "gate/go-no-go", "gate")
        message = wait_for_notification(received, "a decision is waiting", 60)
        assert cutover in message["subject"] and "gate/go-no-go" in message["body"]

        emit(api, ev.STEP_STARTED, cutover, "gis/stream/gis", "stream")  # then nothing for 15 s
        message = wait_for_notification(received, "no news for", 90)
        assert cutover in message["subject"] and "gis/stream/gis" in message["body"]
    finally:
        assert delete_automations(api) == 4
