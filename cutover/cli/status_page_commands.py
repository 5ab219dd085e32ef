"""``cutover status-page`` (the web page for stakeholders and the team), ``cutover
notifications`` (Prefect automations that notify) and the timeline behind ``cutover plan
--timeline``. Prefect and the web stack are imported inside the commands."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

ApiOption = Annotated[
    str | None,
    typer.Option("--api", help="Prefect API URL (default: PREFECT_API_URL or the active Prefect profile)", show_default=False),
]


def _api(explicit: str | None) -> str:
    from cutover.errors import CutoverError
    from cutover.orchestration.api import configured_api_url

    try:
        return configured_api_url(explicit)
    except CutoverError as exc:
        print(f"cutover: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


def status_page(
    api: ApiOption = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 4300,
    runbook: Annotated[Path | None, typer.Option("--runbook", help="the runbook: name, window, plan and forecast")] = None,
    ui: Annotated[
        str | None, typer.Option("--ui", help="Prefect UI address for the team view's links (default: from the API)")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="file with the team token (default: CUTOVER_STATUS_TEAM_TOKEN)")
    ] = None,
    publish: Annotated[
        Path | None, typer.Option("--publish", help="YAML: mirror the public state to Atlassian Statuspage or Cachet")
    ] = None,
    backfill_days: Annotated[float, typer.Option("--backfill-days", help="how far back to read the event history")] = 14.0,
) -> None:
    """Serve the status page: public view at /, team view at /team (needs the team token)."""
    from cutover.cli.runbook_commands import load_or_exit
    from cutover.log import configure_logging
    from cutover.orchestration.api import ui_url_for
    from cutover.statuspage.server import assemble, serve
    from cutover.statuspage.settings import StatusPageSettings, team_token

    configure_logging(console=True, level="INFO", library_levels={"uvicorn.error": "WARNING", "websockets": "WARNING"})
    api_url = _api(api)
    loaded = load_or_exit(runbook) if runbook is not None else None
    settings = StatusPageSettings(
        api_url=api_url,
        ui_url=ui or ui_url_for(api_url),
        runbook=runbook,
        team_token=team_token(token_file),
        backfill=timedelta(days=backfill_days),
        publish_config=publish,
    )
    if settings.team_token is None:
        print(
            "cutover status-page: no team token (CUTOVER_STATUS_TEAM_TOKEN or --token-file): the team view is off",
            file=sys.stderr,
        )
    print(f"status page: http://{host}:{port}/  (team view: http://{host}:{port}/team)", flush=True)
    if loaded is not None:
        import uvicorn

        assembled = assemble(settings, loaded)
        uvicorn.run(assembled.app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=2)
    else:
        serve(settings, host, port)


def notifications(
    api: ApiOption = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST notifications as JSON {subject, body} to this URL")
    ] = None,
    block: Annotated[
        str | None, typer.Option("--block", help="a saved notification block instead, as TYPE/NAME (e.g. slack-webhook/ops)")
    ] = None,
    silent_minutes: Annotated[
        float, typer.Option("--silent-minutes", help="notify when a running cutover has no step event for this long")
    ] = 15.0,
    remove: Annotated[bool, typer.Option("--remove", help="remove the cutover automations instead")] = False,
) -> None:
    """Create (or replace) the Prefect automations that notify: a decision waiting, a step
    failed for good, past the point of no return, a run gone silent."""
    from cutover.errors import CutoverError
    from cutover.orchestration import automations

    api_url = _api(api)
    try:
        if remove:
            print(f"removed {automations.delete_automations(api_url)} automation(s)")
            return
        block_id = None
        if block is not None:
            block_type, _, name = block.partition("/")
            block_id = automations.block_id_by_name(api_url, block_type, name)
        elif webhook is None:
            print("cutover notifications: give --webhook URL or --block TYPE/NAME", file=sys.stderr)
            raise typer.Exit(2)
        names = automations.create_automations(api_url, webhook_url=webhook, block_id=block_id, silent_minutes=silent_minutes)
    except CutoverError as exc:
        print(f"cutover notifications: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    for name in names:
        print(name)


def print_timeline(runbook: Any, api: str | None) -> int:
    """``cutover plan --timeline``: print the prediction; 0, or 1 when P90 ends after the window."""
    import httpx

    from cutover.plan import build_plan
    from cutover.plan.timeline import methods_from_steps, step_estimates, timeline_text
    from cutover.statuspage.rehearsals import rehearsal_samples

    api_url = api or os.environ.get("PREFECT_API_URL")
    samples = []
    if api_url:
        try:
            samples = rehearsal_samples(api_url, runbook.cutover)
        except httpx.HTTPError as exc:
            print(
                f"cutover plan: no earlier runs read from {api_url} ({type(exc).__name__}); using the planner's defaults",
                file=sys.stderr,
            )
    else:
        print("cutover plan: no Prefect API given (--api or PREFECT_API_URL); using the planner's defaults", file=sys.stderr)
    plan = build_plan(runbook, methods=methods_from_steps(s.step_id for s in reversed(samples)))
    text, late = timeline_text(plan, step_estimates(plan, samples), runbook.window.start, runbook.window.end)
    sys.stdout.write(text + "\n")
    if late:
        print("warning: at P90 the cutover ends after the window", file=sys.stderr)
        return 1
    return 0


def register(app: typer.Typer) -> None:
    app.command("status-page")(status_page)
    app.command()(notifications)
