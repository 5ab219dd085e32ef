"""Mirroring the public state to Atlassian Statuspage and Cachet, against their documented
payloads through httpx.MockTransport (the services are not runnable here)."""

from __future__ import annotations

import asyncio
import json

import httpx

from cutover.statuspage.publishers import AtlassianStatuspage, Cachet, Publisher


def public(state="running", statuses=(("burgerzaken", "moving"), ("gis", "live")), percent=40):
    return {
        "cutover": "gemeente-werkendam",
        "window": {"start": "2027-07-16T18:00:00+02:00", "end": "2027-07-19T06:00:00+02:00"},
        "state": state,
        "applications": [{"name": n, "status": s, "percent": 50} for n, s in statuses],
        "progress": {"done": 4, "total": 10, "percent": percent},
        "eta": {"expected": "2027-07-16T19:30:00+02:00", "verdict": "on_schedule", "minutes": 0},
        "updated": "2027-07-16T18:40:00+02:00",
    }


def recording(responses):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses(request)

    return seen, httpx.MockTransport(handler)


async def publish_all(publisher, states, settle=0.05):
    task = asyncio.create_task(publisher.run())
    for state in states:
        publisher.submit(state)
        await asyncio.sleep(settle)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_statuspage_opens_one_scheduled_maintenance_then_updates_it(tmp_path):
    seen, transport = recording(lambda r: httpx.Response(201 if r.method == "POST" else 200, json={"id": "inc42"}))
    service = AtlassianStatuspage("pg1", "key-abc", {"burgerzaken": "cmpB", "gis": "cmpG"}, state_file=tmp_path / "s.json")
    asyncio.run(
        publish_all(
            Publisher(service, transport),
            [public(), public(), public("completed", (("burgerzaken", "live"), ("gis", "live")), 100)],
        )
    )
    assert [(r.method, r.url.path) for r in seen] == [
        ("POST", "/v1/pages/pg1/incidents"),
        ("PATCH", "/v1/pages/pg1/incidents/inc42"),
    ]
    assert all(r.headers["authorization"] == "OAuth key-abc" for r in seen)
    first = json.loads(seen[0].content)["incident"]
    assert first["status"] == "in_progress" and first["scheduled_for"] == "2027-07-16T18:00:00+02:00"
    assert first["scheduled_until"] == "2027-07-19T06:00:00+02:00"
    assert first["components"] == {"cmpB": "under_maintenance", "cmpG": "operational"} and set(first["component_ids"]) == {
        "cmpB",
        "cmpG",
    }
    last = json.loads(seen[1].content)["incident"]
    assert last["status"] == "completed" and set(last["components"].values()) == {"operational"}
    assert json.loads((tmp_path / "s.json").read_text()) == {"incident_id": "inc42"}, "a restarted page updates the same incident"


def test_cachet_schedule_and_component_statuses(tmp_path):
    def answer(request):
        return httpx.Response(200, json={"data": {"id": 7}})

    seen, transport = recording(answer)
    service = Cachet("https://status.example.org", "tok", {"burgerzaken": 3, "gis": 4}, state_file=tmp_path / "c.json")
    asyncio.run(
        publish_all(
            Publisher(service, transport), [public(), public("attention", (("burgerzaken", "attention"), ("gis", "live")))]
        )
    )
    calls = [(r.method, r.url.path) for r in seen]
    assert calls[:3] == [("POST", "/api/v1/schedules"), ("PUT", "/api/v1/components/3"), ("PUT", "/api/v1/components/4")]
    assert calls[3] == ("PUT", "/api/v1/schedules/7")
    assert all(r.headers["x-cachet-token"] == "tok" for r in seen)
    schedule = json.loads(seen[0].content)
    assert (
        schedule["status"] == 1 and schedule["scheduled_at"] == "2027-07-16 18:00" and schedule["components"] == {"3": 3, "4": 1}
    )
    assert json.loads(seen[4].content) == {"status": 4}, "an application that needs attention is a major outage"


def test_a_failing_service_is_retried_with_the_newest_state_and_never_blocks_submit():
    attempts = []

    def flaky(request):
        attempts.append(json.loads(request.content)["incident"]["body"])
        return httpx.Response(503) if len(attempts) < 2 else httpx.Response(201, json={"id": "i1"})

    _, transport = recording(flaky)
    publisher = Publisher(AtlassianStatuspage("pg", "k", {}), transport, retry_s=(0.3,))

    async def scenario():
        task = asyncio.create_task(publisher.run())
        publisher.submit(public(percent=10))
        await asyncio.sleep(0.1)  # the first try fails; the retry waits 0.3 s
        publisher.submit(public(percent=20))  # returns at once while the publisher waits
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert len(attempts) == 2 and "10% done" in attempts[0] and "20% done" in attempts[1]
    assert publisher.published == 1 and publisher.failures == 0


def test_only_the_public_words_go_out():
    payload = json.dumps(AtlassianStatuspage("pg", "k", {"gis": "c"}).payload(public()))
    assert "bzk" not in payload and "127.0.0" not in payload
