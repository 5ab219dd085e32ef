"""The status page's HTTP side: languages, the JSON feed, and the team view's token."""

from __future__ import annotations

import asyncio
import warnings

import pytest

with warnings.catch_warnings():  # Starlette's TestClient still runs on httpx, and says so
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from cutover.plan import build_plan
from cutover.runbook import load_runbook
from cutover.statuspage.app import StatusPage, create_app, sse
from cutover.statuspage.hub import Hub, Signal
from cutover.statuspage.i18n import pick_language
from cutover.statuspage.log_lines import parse_record
from cutover.statuspage.run_state import CutoverState
from tests.unit.status_events import step_done

TOKEN = "team-token-for-tests-1234"


@pytest.fixture
def client():
    runbook = load_runbook("runbooks/demo.yaml")
    state = CutoverState(runbook.cutover, build_plan(runbook))
    state.apply_all(step_done("gis/freeze", "freeze", 0, 1))
    hub = Hub(state, window=(runbook.window.start, runbook.window.end), title=runbook.cutover)
    hub.refresh()
    hub.ready = True
    with TestClient(create_app(StatusPage(hub, TOKEN, "http://ui.test"))) as test_client:
        yield test_client


def test_language_from_the_switch_then_the_cookie_then_accept_language():
    assert pick_language(None, None, "nl-NL,nl;q=0.9,en;q=0.8") == "nl"
    assert pick_language(None, None, "de-DE, en;q=0.5") == "en"
    assert pick_language(None, None, "fr") == "en"
    assert pick_language("en", "nl", "nl") == "en"
    assert pick_language(None, "nl", "en") == "nl"


def test_public_page_in_dutch_and_english(client):
    dutch = client.get("/", headers={"Accept-Language": "nl"})
    assert dutch.status_code == 200 and "Stand van de migratie" in dutch.text and "bevroren" in dutch.text
    assert 'http-equiv="refresh"' in dutch.text, "without JavaScript the page refreshes itself"
    english = client.get("/?lang=en", headers={"Accept-Language": "nl"})
    assert "Migration status" in english.text and "frozen" in english.text
    assert english.cookies.get("lang") == "en"
    assert dutch.headers["content-security-policy"].startswith("default-src 'self'")


def test_json_feed_has_the_same_state(client):
    feed = client.get("/status.json?lang=nl").json()
    assert feed["cutover"] == "gemeente-werkendam"
    assert {a["name"]: a["label"] for a in feed["applications"]}["gis"] == "bevroren"
    assert feed["window"]["end"].startswith("2027-07-19T06:00")


def test_team_view_refuses_a_missing_or_wrong_token(client):
    assert client.get("/team").status_code == 401
    assert client.get("/team?token=wrong").status_code == 403
    assert client.get("/team/state.json", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/team/events").status_code == 401
    assert client.get("/team/state.json", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_token_once_becomes_a_cookie_that_is_not_the_token(client):
    first = client.get(f"/team?token={TOKEN}&app=gis", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/team?app=gis"
    cookie = first.cookies.get("cutover_team")
    assert cookie and TOKEN not in cookie
    page = client.get("/team?app=gis")
    assert page.status_code == 200 and "gis/freeze" in page.text
    client.cookies.set("cutover_team", "forged")
    assert client.get("/team").status_code == 403


def test_team_view_is_off_without_a_configured_token():
    runbook = load_runbook("runbooks/demo.yaml")
    hub = Hub(CutoverState(runbook.cutover, build_plan(runbook)))
    with TestClient(create_app(StatusPage(hub, None, "http://ui.test"))) as client:
        assert client.get("/team").status_code == 403
        assert client.get("/team?token=").status_code == 403


def test_a_server_sent_event_is_one_json_line():
    assert sse("state", {"a": "x\ny"}, 3) == b'event: state\nid: 3\ndata: {"a":"x\\ny"}\n\n'


def test_signal_wakes_every_waiter_once_per_version():
    async def scenario():
        signal = Signal()
        waiters = [asyncio.create_task(signal.wait_newer(0, 5)) for _ in range(50)]
        await asyncio.sleep(0)
        signal.bump()
        return await asyncio.gather(*waiters), await signal.wait_newer(1, 0.01)

    woken, timed_out = asyncio.run(scenario())
    assert all(woken) and timed_out is False


def test_log_records_become_structured_redacted_lines():
    record = {
        "id": "l1",
        "timestamp": "2026-12-01T23:10:50.036641Z",
        "level": 40,
        "name": "cutover.phases.database",
        "message": "stream_finished address=127.0.0.3:2222 bytes=123 step_id=gis/stream/gis url=postgresql://u:s3cretpw@h/db",
        "task_run_id": "t1",
        "flow_run_id": "f1",
    }
    line = parse_record(record, {})
    assert (line.event, line.level, line.application, line.step_id) == ("stream_finished", "error", "gis", "gis/stream/gis")
    assert line.fields["bytes"] == "123" and "s3cretpw" not in line.text
    assert (
        parse_record({**record, "message": "Finished in state Completed()"}, {"t1": "zaaksysteem/verify/zaken"}).application
        == "zaaksysteem"
    )
