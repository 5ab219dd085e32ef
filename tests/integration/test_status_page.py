"""The status page during a real sandbox cutover, watched in headless Chromium.

One run of the demo runbook from its deployment (gate answered through the API), with the
status page running as its own process against the session's Prefect server:

* the public page, never reloaded, shows applications moving through their states and
  ends with all of them live; a second, Dutch, phone-sized page does the same;
* the team view shows a transfer's progress and log lines arriving, and the pending gate;
* the team view refuses a missing or a wrong token;
* the status page is stopped and started again mid-run and shows the whole state again
  (backfill from the server's event history), while the open pages reconnect by themselves;
* every byte the public page, its JSON feed and its event streams served over the run is
  scanned: no hostname, address, port, database name or secret value of the sandbox.

A ballast table makes one database's stream last a few seconds, so its progress is seen.
Screenshots go to ``$CUTOVER_SCREENSHOTS`` (``docs/images`` to refresh the docs' pictures).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cutover.orchestration.follow import answer_gate, start_run
from cutover.postgres.endpoint import PgEndpoint, connect
from cutover.sandbox.info import SandboxInfo
from cutover.sandbox.reset import reset
from cutover.statuspage.process import start_status_page, stop_status_page

pytestmark = pytest.mark.integration

DEMO = Path("runbooks/demo.yaml").resolve()
OWN_CUTOVER = "gemeente-werkendam-status-page-tests"
TOKEN = "status-team-token-for-the-browser-test"
BALLAST_DB = "gis"
BALLAST_TABLE = "cutover_status_ballast"
BALLAST_MB = 64
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
RANK = {"planned": 0, "frozen": 1, "moving": 2, "checking": 3, "live": 4}


def endpoint(pg) -> PgEndpoint:
    return PgEndpoint(host=pg.host, port=pg.port, user=pg.user, password=pg.password, sslmode="disable")


@pytest.fixture
def estate_with_ballast(sandbox: SandboxInfo) -> Iterator[SandboxInfo]:
    """The estate as new, with a big table of random text in one database."""
    reset(sandbox)
    with connect(endpoint(sandbox.onprem), BALLAST_DB, autocommit=True) as conn:
        conn.execute(f"drop table if exists public.{BALLAST_TABLE}")
        conn.execute(f"create table public.{BALLAST_TABLE} (id int primary key, payload text)")
        conn.execute(f"alter table public.{BALLAST_TABLE} alter payload set storage external")
        with conn.cursor() as cur, cur.copy(f"copy public.{BALLAST_TABLE} (id, payload) from stdin") as copy:
            for i in range(BALLAST_MB):
                copy.write_row((i, os.urandom(1 << 19).hex()))  # 1 MiB of hex: pg_dump's compression halves it only
    try:
        yield sandbox
    finally:
        reset(sandbox)  # drops the targets, the ballast's copy with them
        with connect(endpoint(sandbox.onprem), BALLAST_DB, autocommit=True) as conn:
            conn.execute(f"drop table if exists public.{BALLAST_TABLE}")


class Recorder:
    """Every byte the public side serves: both event streams (reconnecting across a
    restart), and the page, the JSON feed and the static files fetched every second."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.chunks: list[bytes] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._stream, args=(lang,), daemon=True) for lang in ("en", "nl")]
        self.threads.append(threading.Thread(target=self._poll, daemon=True))

    def __enter__(self) -> Recorder:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=20)

    def _keep(self, data: bytes) -> None:
        with self.lock:
            self.chunks.append(data)

    def _stream(self, lang: str) -> None:
        while not self.stop.is_set():
            try:
                with httpx.stream("GET", f"{self.base}/events?lang={lang}", timeout=httpx.Timeout(5, read=2)) as response:
                    for chunk in response.iter_raw():
                        self._keep(chunk)
                        if self.stop.is_set():
                            return
            except httpx.HTTPError:
                time.sleep(0.3)  # restarting, or the read timeout between messages: go on

    def _poll(self) -> None:
        paths = ["/", "/?lang=nl", "/status.json", "/status.json?lang=nl", "/static/style.css", "/static/public.js"]
        while not self.stop.wait(1.0):
            for path in paths:
                try:
                    self._keep(httpx.get(self.base + path, timeout=5, headers={"Accept-Language": "nl"}).content)
                except httpx.HTTPError:
                    pass

    def text(self) -> str:
        with self.lock:
            return b"".join(self.chunks).decode("utf-8", "replace")


def forbidden_words(sandbox: SandboxInfo) -> dict[str, str]:
    """What must never be on the public side, each with why."""
    words: dict[str, str] = {}
    for pg in (sandbox.onprem, sandbox.cloud):
        words[pg.host] = "database host"
        words[str(pg.port)] = "database port"
        words[pg.password] = "database password"
    words[sandbox.ssh.host] = "SSH host"
    words[str(sandbox.ssh.port)] = "SSH port"
    words[sandbox.powerdns.api_key] = "PowerDNS API key"
    words[str(sandbox.powerdns.dns_port)] = "DNS port"
    words[sandbox.powerdns.api_url.rsplit(":", 1)[-1]] = "PowerDNS API port"
    words["127.0.0."] = "an address"
    words["werkendam.test"] = "the zone's hostnames"
    for line in sandbox.ssh.private_key.splitlines():
        if len(line) >= 16 and not line.startswith("-----"):
            words[line] = "SSH private key"
    for app in sandbox.apps.values():
        words[str(app.port)] = f"{app.name}'s port"
        words[app.db_password] = f"{app.name}'s database password"
        words[app.hostname.rstrip(".")] = f"{app.name}'s hostname"
        for db in app.databases:
            if db not in sandbox.apps:  # "gis" and "portaal" name an application too
                words[db] = "a database name"
    words[TOKEN] = "the team token"
    return words


def leaks(text: str, words: dict[str, str]) -> list[str]:
    found = []
    for word, why in words.items():
        pattern = rf"(?<![\w.]){re.escape(word)}(?![\w])" if word.replace(".", "").isalnum() else re.escape(word)
        if re.search(pattern, text):
            found.append(f"{why}: {word[:12]}")
    if re.search(r"\b[a-z]+/(freeze|export|transfer|import|stream|verify|smoke|dns|finalize)\b", text):
        found.append("a step id")
    return found


def app_statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all("li.app", "items => Object.fromEntries(items.map(i => [i.dataset.app, i.dataset.status]))")


def flow_run_state(api_url: str, flow_run_id: str) -> str:
    return httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).json()["state"]["type"]


def off_the_browser_thread(function, *args):
    """Prefect's sync helpers turn async where an event loop runs (Playwright's, here)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


def wait_for(what: str, check, timeout_s: float, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)


def test_status_page_follows_a_real_cutover_live_in_a_browser(estate_with_ballast, prefect_api, cutover_worker, tmp_path):
    from playwright.sync_api import sync_playwright

    sandbox = estate_with_ballast
    shots = Path(os.environ.get("CUTOVER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "status-page"
    # a cutover name of its own: other tests' runs of the demo on this server are not this page's
    runbook = tmp_path / "demo.yaml"
    # the ballast database streamed: one pipe, slow enough (seconds) for its progress to be seen
    # moving; copied table by table (what auto takes at its size) it is done within a second
    text = DEMO.read_text().replace("cutover: gemeente-werkendam\n", f"cutover: {OWN_CUTOVER}\n", 1)
    ballast_db = "      - name: gis\n        from: onprem\n        to: cloud\n        method: auto\n"
    runbook.write_text(text.replace(ballast_db, ballast_db.replace("method: auto", "method: stream"), 1))
    assert f"cutover: {OWN_CUTOVER}" in runbook.read_text() and "method: stream" in runbook.read_text()
    page_process = start_status_page(home, prefect_api.api_url, runbook=runbook, team_token=TOKEN)
    base = page_process.url.rstrip("/")
    try:
        # refused without the token, or with a wrong one
        assert httpx.get(f"{base}/team", timeout=10).status_code == 401
        assert httpx.get(f"{base}/team?token=wrong", timeout=10).status_code == 403
        assert httpx.get(f"{base}/team/events", timeout=10, headers={"Authorization": "Bearer nope"}).status_code == 403

        with Recorder(base) as recorder, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                public = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-GB").new_page()
                public.goto(base + "/")
                public.evaluate("window.loadedOnce = true")  # gone if the page ever reloads
                phone = browser.new_context(
                    viewport={"width": 390, "height": 844},
                    locale="nl-NL",
                    extra_http_headers={"Accept-Language": "nl-NL,nl;q=0.9"},
                ).new_page()
                phone.goto(base + "/")
                team = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
                team.goto(f"{base}/team?token={TOKEN}")
                assert team.url == f"{base}/team", "the token is swapped for a cookie"
                applications = set(app_statuses(public))
                assert applications == set(sandbox.apps) and set(app_statuses(public).values()) == {"planned"}
                assert "gepland" in phone.inner_text("#applications")

                flow_run_id = off_the_browser_thread(
                    start_run, prefect_api.api_url, "cutover/cutover", {"runbook": str(runbook), "outside_window": True}
                )
                seen: dict[str, list[str]] = {app: ["planned"] for app in applications}

                def watch() -> dict[str, str]:
                    current = app_statuses(public)
                    for app, status in current.items():
                        if seen[app][-1] != status:
                            seen[app].append(status)
                    return current

                # a transfer's progress in the team view, and log lines arriving
                progress_row = f'#throughput tr[data-step="{BALLAST_DB}/stream/{BALLAST_DB}"]'
                wait_for(
                    "the ballast stream's progress in the team view", lambda: (watch(), team.query_selector(progress_row))[1], 180
                )
                lines_then = team.eval_on_selector_all("#log-lines li", "items => items.length")
                sent_first = team.inner_text(progress_row + " .sent")

                def advanced() -> bool:
                    watch()
                    row = team.query_selector(progress_row + " .sent")
                    return row is not None and row.inner_text() != sent_first

                wait_for("the stream's progress to advance in the team view", advanced, 60)
                team.screenshot(path=str(shots / "status-team-transfer.png"), full_page=False)
                wait_for(
                    "more log lines",
                    lambda: (watch(), team.eval_on_selector_all("#log-lines li", "i => i.length") > lines_then)[1],
                    60,
                )
                assert team.query_selector_all("#log-lines li .log-app"), "log lines name their application"
                public.screenshot(path=str(shots / "status-public-moving.png"), full_page=True)

                # stop and start the status page mid-run: it reads the whole history again
                before = {a["name"]: a["status"] for a in httpx.get(f"{base}/status.json", timeout=10).json()["applications"]}
                stop_status_page(home)
                page_process = start_status_page(home, prefect_api.api_url, runbook=runbook, team_token=TOKEN)
                assert page_process.url.rstrip("/") == base, "it comes back on its port, so open pages reconnect"

                def caught_up() -> bool:
                    after = {a["name"]: a["status"] for a in httpx.get(f"{base}/status.json", timeout=10).json()["applications"]}
                    return all(RANK.get(after[app], 9) >= RANK.get(before[app], 9) for app in before) and any(
                        status != "planned" for status in after.values()
                    )

                wait_for("the restarted page to show the run so far", caught_up, 60, every_s=0.5)

                # the gate: pending in the team view with its Prefect UI link, answered through the API
                def paused() -> bool:
                    watch()
                    return flow_run_state(prefect_api.api_url, flow_run_id) == "PAUSED"

                wait_for("the go/no-go gate", paused, 240, every_s=0.5)
                gate = wait_for("the gate in the team view", lambda: team.query_selector('#gates li[data-gate="go-no-go"] a'), 60)
                assert gate.get_attribute("href") == f"{prefect_api.ui_url}/runs/flow-run/{flow_run_id}"
                wait_for(
                    "the public page to say it waits", lambda: public.get_attribute("#overall", "data-state") == "waiting", 30
                )
                team.screenshot(path=str(shots / "status-team-gate.png"), full_page=False)
                off_the_browser_thread(answer_gate, prefect_api.api_url, flow_run_id, True, "status-page-test", "checks passed")

                # the end: every application live, without a reload
                wait_for("every application live", lambda: set(watch().values()) == {"live"}, 240)
                wait_for(
                    "the run to complete", lambda: flow_run_state(prefect_api.api_url, flow_run_id) == "COMPLETED", 120, every_s=1
                )
                wait_for("the public page to say done", lambda: public.get_attribute("#overall", "data-state") == "completed", 60)
                wait_for("the phone page to say done", lambda: phone.get_attribute("#overall", "data-state") == "completed", 60)
                assert "live op de nieuwe locatie" in phone.inner_text("#applications")
                assert public.inner_text("#percent") == "100%"
                public.screenshot(path=str(shots / "status-public-done.png"), full_page=True)
                phone.screenshot(path=str(shots / "status-public-nl-phone.png"), full_page=True)
                team.screenshot(path=str(shots / "status-team-done.png"), full_page=False)
                assert public.evaluate("window.loadedOnce === true"), "the public page was never reloaded"
            finally:
                browser.close()

        for app, states in seen.items():
            assert states[-1] == "live" and len(states) >= 3, (app, states)
        assert any("moving" in states for states in seen.values()), seen

        # the finished run is a rehearsal now: the timeline learns the real durations
        def timeline() -> str | None:
            done = subprocess.run(
                [sys.executable, "-m", "cutover", "plan", str(runbook), "--timeline", "--api", prefect_api.api_url],
                capture_output=True,
                text=True,
                timeout=60,
            )
            return done.stdout if "rehearsal(s)" in done.stdout else None

        text = wait_for("the run's step events in the history", timeline, 60, every_s=3)
        p50 = re.search(r"P50 finish: \S+ \S+ \((?:(\d+)h)?(\d+)m", text)
        assert p50 and p50.group(1) is None and int(p50.group(2)) < 10, (
            f"the timeline uses what the steps took (the gate's 15-minute default gave way): {text[-400:]}"
        )

        served = recorder.text()
        assert "live op de nieuwe locatie" in served and "live on the new site" in served, "the recorder saw the whole run"
        assert leaks(served, forbidden_words(sandbox)) == []
    finally:
        stop_status_page(home)
