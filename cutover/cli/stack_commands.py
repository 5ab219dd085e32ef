"""``cutover up``, ``down`` and ``status``: the local Prefect server, the deployments and
a worker, to run your own runbooks (``cutover demo`` runs the sandbox's)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="where the server and its state live (default: the per-user state directory's prefect/)",
        show_default=False,
    ),
]


def _home(home: Path | None) -> Path:
    from cutover.state import prefect_home

    return (home or prefect_home()).expanduser().absolute()


def _fail(command: str, message: str, code: int = 1) -> typer.Exit:
    print(f"cutover {command}: {message}", file=sys.stderr)
    return typer.Exit(code)


def up(
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="NAME=value lines the worker gets (the runbook's env: secrets); default: this shell's environment",
            show_default=False,
        ),
    ] = None,
    home: HomeOption = None,
    runbook: Annotated[
        Path | None, typer.Option("--runbook", help="the runbook the status page shows before its first run", show_default=False)
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            help="notify this URL when a gate waits, a step fails for good, the point of no return is passed or a run goes silent",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start (or reuse) the local Prefect server with its UI, apply the deployments
    (cutover, preflight, rollback), start a worker with the estate's environment, and the
    status page beside the UI."""
    from cutover.cli.run_commands import _project_dir, _quiet_logging
    from cutover.errors import CutoverError
    from cutover.orchestration.stack import read_env_file, start_stack
    from cutover.redaction import is_sensitive_key, register_secrets
    from cutover.state import default_work_dir

    _quiet_logging()
    where = _home(home)
    try:
        if env_file is not None:
            env = {**os.environ, **read_env_file(env_file)}
            source = str(env_file.absolute())
        else:
            env = dict(os.environ)
            source = "the shell that ran cutover up"
        register_secrets(value for name, value in env.items() if is_sensitive_key(name))
        stack = start_stack(where, env, default_work_dir(), project_dir=_project_dir(), env_source=source, runbook=runbook)
        if webhook:
            from cutover.orchestration.automations import create_automations

            created = create_automations(stack.server.api_url, webhook_url=webhook)
    except CutoverError as exc:
        raise _fail("up", str(exc)) from None
    print(f"Prefect server {stack.server.api_url} (pid {stack.server.pid}); UI {stack.server.ui_url}")
    print(f"deployments: {', '.join(stack.deployments)}")
    print(f"worker {stack.worker.name} on pool {stack.worker.pool} (pid {stack.worker.pid}), environment from {source}")
    token_where = f"token in {stack.token_file}" if stack.token_file else "token: CUTOVER_STATUS_TEAM_TOKEN"
    print(f"status page {stack.status_page.url} (public); team view {stack.status_page.team_url} ({token_where})")
    if webhook:
        print(f"notifications to {webhook}: {len(created)} automation(s)")
    print(f"work directory (dumps, audit logs): {stack.work_dir}")
    print(f"`source {stack.server.home / 'env'}` points prefect and cutover commands at it; `cutover down` stops it")


def down(home: HomeOption = None) -> None:
    """Stop the worker and the Prefect server that `cutover up` started."""
    from cutover.cli.run_commands import _quiet_logging
    from cutover.errors import CutoverError
    from cutover.orchestration.stack import stop_stack

    _quiet_logging()
    try:
        stopped = stop_stack(_home(home))
    except CutoverError as exc:
        raise _fail("down", str(exc)) from None
    print(f"stopped {len(stopped)} process(es) in {_home(home)}" if stopped else f"nothing was running in {_home(home)}")


def status(home: HomeOption = None) -> None:
    """Show what `cutover up` started: the server and its UI, the worker, the work directory.
    Exit 1 when the server or the worker is not running."""
    from cutover.orchestration.stack import stack_status

    where = _home(home)
    state = stack_status(where)
    print(f"home: {where}")
    if state.server is None:
        print("server: not running (cutover up starts it)")
    else:
        health = "healthy" if state.healthy else "NOT answering"
        print(f"server: {state.server.api_url} (pid {state.server.pid}, {health}); UI {state.server.ui_url}")
    if state.worker is None:
        print("worker: not running")
    else:
        print(f"worker: {state.worker.name} on pool {state.worker.pool} (pid {state.worker.pid})")
    print(f"status page: {state.status_page.url if state.status_page else 'not running'}")
    if state.env_source:
        print(f"worker environment: from {state.env_source}")
    print(f"work directory: {state.work_dir or 'not recorded (cutover up records it)'}")
    if state.server is None or not state.healthy or state.worker is None:
        raise typer.Exit(1)


def step_worker(
    site: Annotated[str, typer.Option("--site", help="the runbook's site whose steps this worker runs (see placement)")],
    runbook: Annotated[
        Path | None,
        typer.Option("--runbook", help="check that the runbook has this site before serving", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=256, help="steps run at once")] = 16,
) -> None:
    """Run the steps a runbook's ``placement`` gives to SITE, in the foreground, with this
    shell's environment (that site's secrets only) until stopped. Beside the site's
    ``prefect worker start``; it talks to the Prefect API of PREFECT_API_URL."""
    from cutover.cli.runbook_commands import load_or_exit

    if runbook is not None:
        loaded = load_or_exit(runbook)
        if site not in loaded.sites:
            raise _fail("step-worker", f"{runbook}: sites: no site {site!r} (the runbook has {', '.join(loaded.sites)})", 2)
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        # without one, Prefect would serve a private server of its own, which no flow run reaches
        raise _fail("step-worker", "no Prefect API to take steps from: set PREFECT_API_URL (or a Prefect profile)", 2)
    from cutover.log import configure_logging
    from tasks.site_steps import serve

    configure_logging(console=True)
    serve(site, limit=limit)


def register(app: typer.Typer) -> None:
    app.command(name="step-worker")(step_worker)
    app.command()(up)
    app.command()(down)
    app.command()(status)
