"""Putting a status page together from its settings, and serving it with uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from cutover.plan.build import Plan, build_plan
from cutover.plan.timeline import methods_from_steps
from cutover.runbook.model import Runbook
from cutover.statuspage.app import StatusPage, create_app
from cutover.statuspage.feed import Feed
from cutover.statuspage.hub import Hub
from cutover.statuspage.run_state import ROLLBACK_PREFIX, CutoverState
from cutover.statuspage.settings import StatusPageSettings, register_runbook_secrets

log = structlog.get_logger()


def methods_seen(state: CutoverState) -> dict[str, str]:
    """``app/db`` -> stream|file, as the runs have moved them: the current run's steps
    first, then the latest rehearsal's (a plan's ``auto`` needs sizes the page lacks)."""
    current = [sid for sid, step in state.steps.items() if step.status != "planned" and not sid.startswith(ROLLBACK_PREFIX)]
    return methods_from_steps(current + [s.step_id for s in reversed(state.samples())])


def replanner(runbook: Runbook) -> Callable[[CutoverState], Plan | None]:
    """Plans the runbook again when the runs show other methods than the plan has."""

    def replan(state: CutoverState) -> Plan | None:
        seen = methods_seen(state)
        current = state.plan.methods if state.plan is not None else {}
        if all(current.get(key) == method for key, method in seen.items()):
            return None
        log.info("status_page_replanned", methods=seen)
        return build_plan(runbook, methods={**current, **seen})

    return replan


@dataclass
class Assembled:
    app: Any
    hub: Hub
    feed: Feed


def assemble(settings: StatusPageSettings, runbook: Runbook | None = None) -> Assembled:
    """The app, its hub and its feed (not started: uvicorn's lifespan starts the feed)."""
    if runbook is None and settings.runbook is not None:
        from cutover.runbook import load_runbook

        runbook = load_runbook(settings.runbook)
    plan = build_plan(runbook) if runbook is not None else None
    if runbook is not None:
        register_runbook_secrets(runbook)
    state = CutoverState(runbook.cutover if runbook else None, plan)
    publisher = None
    if settings.publish_config is not None:
        from cutover.statuspage.publishers import publisher_from_file

        publisher = publisher_from_file(settings.publish_config, runbook)
    hub = Hub(
        state,
        window=(runbook.window.start, runbook.window.end) if runbook else None,
        title=runbook.cutover if runbook else None,
        replan=replanner(runbook) if runbook else None,
        on_public=publisher.submit if publisher else None,
    )
    feed = Feed(hub, settings.api_url, settings.backfill)
    page = StatusPage(hub, settings.team_token, settings.ui_url)
    background = [feed.run, hub.tick] + ([publisher.run] if publisher else [])
    return Assembled(create_app(page, background), hub, feed)


def serve(settings: StatusPageSettings, host: str, port: int) -> None:
    """Serve until interrupted (SIGINT/SIGTERM end it cleanly)."""
    import uvicorn

    assembled = assemble(settings)
    log.info("status_page_listening", url=f"http://{host}:{port}/", api_url=settings.api_url)
    uvicorn.run(assembled.app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=2)
