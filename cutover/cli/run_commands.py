"""``cutover run``, ``rerun``, ``rollback``, ``decide`` and ``demo``: cutovers (and their
rollbacks) as flow runs of the deployments on a Prefect server, followed in the terminal.

Every failure is one line on stderr and a non-zero exit: 2 for a bad runbook, 1 for
anything else (unreachable API, failed or unverified cutover). Prefect is imported inside
the commands so that ``validate`` and ``plan`` stay fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cutover.errors import CutoverError

if TYPE_CHECKING:
    from cutover.orchestration.follow import RunOutcome
    from cutover.orchestration.server import PrefectServer

DEMO_RUNBOOK = "runbooks/demo.yaml"
DEMO_OPERATOR = "cutover-demo"

ApiOption = Annotated[
    str | None,
    typer.Option("--api", help="Prefect API URL (default: PREFECT_API_URL or the active Prefect profile)", show_default=False),
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="follow the run to its end; exit 0 only when it completed and verified")
]


def _quiet_logging() -> None:
    """The commands tell their own story on stdout; library lines show from WARNING up."""
    from cutover.log import configure_logging

    configure_logging(console=True, level="WARNING")


def _fail(command: str, message: str, code: int = 1) -> typer.Exit:
    print(f"cutover {command}: {message}", file=sys.stderr)
    return typer.Exit(code)


def _deployment(name: str) -> str:
    """``flow/deployment`` of prefect.yaml's deployment ``name`` in the project directory."""
    from cutover.orchestration.deployments import deployment

    return deployment(name, _project_dir())


def _project_dir() -> Path:
    from cutover.orchestration.deployments import PROJECT_DIR

    return Path(os.environ.get("CUTOVER_PROJECT_DIR") or PROJECT_DIR).absolute()


def runbook_parameter(runbook: Path, project_dir: Path) -> str:
    """The ``runbook`` parameter for the flow: relative to the project directory when the
    file lies inside it (the worker's clone may live elsewhere), absolute otherwise."""
    absolute = runbook.absolute()
    try:
        return str(absolute.relative_to(project_dir))
    except ValueError:
        return str(absolute)


def _report(outcome: RunOutcome, ui_url: str) -> None:
    from cutover.orchestration.api import flow_run_link

    print(f"flow run {outcome.flow_run_id}: {outcome.state_name}" + (f" ({outcome.message})" if outcome.message else ""))
    if isinstance(outcome.result, dict) and isinstance(outcome.result.get("preflight"), dict):
        from cutover.preflight import Report

        print("\n" + Report.from_dict(outcome.result["preflight"]).text())
    if isinstance(outcome.result, dict) and ("databases" in outcome.result or "applications" in outcome.result):
        print_summary(outcome.result)
    print(f"flow run in the UI: {flow_run_link(ui_url, outcome.flow_run_id)}")


def print_summary(summary: dict[str, Any]) -> None:
    """Print the flow's summary dict: one line per database and per application."""
    databases = summary.get("databases") or {}
    if databases:
        width = max(len(name) for name in databases)
        print(f"\n{'database':<{width}}  {'method':<7} {'rows':>10} {'bytes':>12} {'seconds':>8}  sha256")
        for name, db in databases.items():
            rows = "-" if db.get("rows") is None else str(db["rows"])
            size = "-" if db.get("bytes") is None else str(db["bytes"])
            seconds = "-" if db.get("duration_s") is None else f"{db['duration_s']:.1f}"
            print(f"{name:<{width}}  {db.get('method') or '-':<7} {rows:>10} {size:>12} {seconds:>8}  {db.get('sha256') or '-'}")
    applications = summary.get("applications") or {}
    if applications:
        width = max(len(name) for name in applications)
        print(f"\n{'application':<{width}}  {'smoke':<8} {'dns':<9} where it is now")
        for name, app in applications.items():
            why = f" ({app['rolled_back']})" if app.get("rolled_back") else ""
            print(f"{name:<{width}}  {app.get('smoke') or '-':<8} {app.get('dns') or '-':<9} {app.get('site', '-')}{why}")
    failed = summary.get("failed_steps")
    if failed:
        print(f"\nfailed steps: {', '.join(failed)}")
        for step, error in (summary.get("errors") or {}).items():
            print(f"  {step}: {error}")
    from cutover.summary import rollback_lines

    for line in rollback_lines(summary, "  - "):
        print(line)
    print(f"\ncutover {summary.get('cutover', '?')}: {'ok' if summary.get('ok') else 'NOT ok'}")


DEMO_DIR = Path(".sandbox")


def _api_url(explicit: str | None) -> str:
    """--api, PREFECT_API_URL, the Prefect profile, or else the server `cutover up` started,
    or the one a `cutover demo --keep` left running in ./.sandbox (said out loud, since it
    was not asked for)."""
    from cutover.orchestration import OrchestrationError
    from cutover.orchestration.api import configured_api_url
    from cutover.orchestration.server import running_server
    from cutover.state import prefect_home

    try:
        return configured_api_url(explicit)
    except OrchestrationError:
        for home, whose in ((prefect_home(), "cutover up"), (DEMO_DIR / "prefect", "the demo")):
            server = running_server(home)
            if server is not None:
                print(f"using the Prefect server of {whose} at {server.api_url} (PREFECT_API_URL is not set)")
                return server.api_url
        raise


def _follow(command: str, api_url: str, flow_run_id: str, **kwargs: Any) -> RunOutcome:
    from cutover.orchestration.follow import follow_run

    try:
        return follow_run(api_url, flow_run_id, **kwargs)
    except KeyboardInterrupt:
        from cutover.orchestration.api import flow_run_link, ui_url_for

        raise _fail(
            command, f"stopped following; the run goes on: {flow_run_link(ui_url_for(api_url), flow_run_id)}", 130
        ) from None


def run(
    runbook: Annotated[
        Path, typer.Argument(help="the runbook YAML file (relative to the project directory, or absolute)", show_default=False)
    ],
    wait: WaitOption = True,
    api: ApiOption = None,
    deployment: Annotated[
        str | None,
        typer.Option("--deployment", help="flow/deployment to run (default: prefect.yaml's cutover)", show_default=False),
    ] = None,
    outside_window: Annotated[
        bool, typer.Option("--outside-window", help="run although now is outside the runbook's window (a rehearsal)")
    ] = False,
) -> None:
    """Start a cutover as a flow run of its deployment (a server and a worker must run),
    print its id and UI link, and follow it. Its first step is the preflight: a red item
    stops it before anything is frozen."""
    from cutover.cli.runbook_commands import load_or_exit
    from cutover.orchestration import OrchestrationError
    from cutover.orchestration.api import flow_run_link, require_healthy, ui_url_for
    from cutover.orchestration.follow import start_run

    _quiet_logging()
    if runbook.exists():
        load_or_exit(runbook)  # a bad runbook fails here, with exit 2, before anything runs
        parameter = runbook_parameter(runbook, _project_dir())
    else:
        parameter = str(runbook)
        print(f"{runbook} is not on this machine; the worker will look for it in its project directory")
    try:
        api_url = _api_url(api)
        require_healthy(api_url)
        flow_run_id = start_run(
            api_url,
            deployment or _deployment("cutover"),
            {"runbook": parameter, **({"outside_window": True} if outside_window else {})},
        )
    except OrchestrationError as exc:
        raise _fail("run", str(exc)) from None
    ui_url = ui_url_for(api_url)
    print(f"flow run {flow_run_id}: {flow_run_link(ui_url, flow_run_id)}")
    if not wait:
        return
    outcome = _follow("run", api_url, flow_run_id)
    _report(outcome, ui_url)
    if not outcome.ok:
        raise typer.Exit(1)


def rerun(
    flow_run_id: Annotated[str, typer.Argument(help="the id of a finished flow run of a deployment", show_default=False)],
    wait: WaitOption = True,
    api: ApiOption = None,
) -> None:
    """Retry a finished flow run (as the UI's Retry does): steps that finished are taken
    from their cached results; the failed one and what follows it run again."""
    from cutover.orchestration import OrchestrationError
    from cutover.orchestration.api import flow_run_link, require_healthy, ui_url_for
    from cutover.orchestration.follow import retry_run

    _quiet_logging()
    try:
        api_url = _api_url(api)
        require_healthy(api_url)
        since = retry_run(api_url, flow_run_id)
    except OrchestrationError as exc:
        raise _fail("rerun", str(exc)) from None
    ui_url = ui_url_for(api_url)
    print(f"flow run {flow_run_id} scheduled again: {flow_run_link(ui_url, flow_run_id)}")
    if not wait:
        return
    outcome = _follow("rerun", api_url, flow_run_id, since=since)
    _report(outcome, ui_url)
    if not outcome.ok:
        raise typer.Exit(1)


def rollback(
    flow_run_id: Annotated[str, typer.Argument(help="the id of the cutover flow run to roll back", show_default=False)],
    acknowledge_writes_lost: Annotated[
        bool,
        typer.Option(
            "--acknowledge-writes-lost",
            help="past the point of no return: accept that the writes the new site took since the switch will not be on the source",
        ),
    ] = False,
    wait: WaitOption = True,
    api: ApiOption = None,
) -> None:
    """Roll back a finished (failed, crashed or cancelled) cutover run: undo every step it
    started, in reverse order, as a run of the rollback deployment."""
    from cutover.orchestration import OrchestrationError
    from cutover.orchestration.api import flow_run_link, require_healthy, ui_url_for
    from cutover.orchestration.follow import flow_run_parameters, start_run

    _quiet_logging()
    try:
        api_url = _api_url(api)
        require_healthy(api_url)
        runbook = flow_run_parameters(api_url, flow_run_id).get("runbook") or DEMO_RUNBOOK
        rollback_run = start_run(
            api_url,
            _deployment("rollback"),
            {"cutover_run": flow_run_id, "runbook": runbook, "acknowledge_writes_lost": acknowledge_writes_lost},
        )
    except OrchestrationError as exc:
        raise _fail("rollback", str(exc)) from None
    ui_url = ui_url_for(api_url)
    print(f"rollback of {flow_run_id}: flow run {rollback_run}: {flow_run_link(ui_url, rollback_run)}")
    if not wait:
        return
    outcome = _follow("rollback", api_url, rollback_run)
    print(f"flow run {rollback_run}: {outcome.state_name}" + (f" ({outcome.message})" if outcome.message else ""))
    if outcome.state_type != "COMPLETED":
        raise typer.Exit(1)


def decide(
    flow_run_id: Annotated[str, typer.Argument(help="the id of the paused cutover flow run", show_default=False)],
    by: Annotated[
        str, typer.Option("--by", help="who decides (recorded in the run, the audit log and the report)", show_default=False)
    ],
    gate: Annotated[
        str | None, typer.Option("--gate", help="answer this go/no-go gate (with --go or --no-go)", show_default=False)
    ] = None,
    go: Annotated[
        bool | None,
        typer.Option("--go/--no-go", help="at a gate: switch DNS, or roll back every application", show_default=False),
    ] = None,
    roll_back: Annotated[
        bool | None,
        typer.Option(
            "--roll-back/--roll-forward",
            help="past the point of no return: roll back, or roll forward (the run ends Failed; fix the cause and rerun it)",
            show_default=False,
        ),
    ] = None,
    acknowledge_writes_lost: Annotated[
        bool,
        typer.Option(
            "--acknowledge-writes-lost", help="required with --roll-back: the writes since the switch will not be on the source"
        ),
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="why")] = "",
    api: ApiOption = None,
) -> None:
    """Answer a paused run, as the form in the Prefect UI does: a go/no-go gate
    (``--gate NAME --go|--no-go``) or the question past the point of no return
    (``--roll-forward`` | ``--roll-back --acknowledge-writes-lost``). There is no default answer."""
    from cutover.orchestration import OrchestrationError
    from cutover.orchestration.follow import answer_gate, answer_point_of_no_return

    _quiet_logging()
    if not by.strip():
        raise _fail("decide", "--by needs the name of the person who decides", 2)
    if gate is not None or go is not None:
        if roll_back is not None or acknowledge_writes_lost:
            raise _fail(
                "decide", "a gate is answered with --go or --no-go; --roll-back/--roll-forward answer the point of no return", 2
            )
        if gate is None or go is None:
            raise _fail("decide", "answer a gate with both --gate NAME and --go or --no-go", 2)
    elif roll_back is None:
        raise _fail(
            "decide",
            "say what you decide: --gate NAME --go|--no-go, or --roll-forward, or --roll-back --acknowledge-writes-lost",
            2,
        )
    elif roll_back and not acknowledge_writes_lost:
        raise _fail(
            "decide",
            "--roll-back needs --acknowledge-writes-lost: the writes the new site took since the switch will not be on the source",
            2,
        )
    try:
        api_url = _api_url(api)
        if gate is not None:
            answer_gate(api_url, flow_run_id, bool(go), by, reason, gate=gate)
            what = f"gate {gate}: {'go' if go else 'no-go (rolls back)'}"
        else:
            answer_point_of_no_return(api_url, flow_run_id, bool(roll_back), acknowledge_writes_lost, by, reason)
            what = "roll back" if roll_back else "roll forward"
    except OrchestrationError as exc:
        raise _fail("decide", str(exc)) from None
    print(f"flow run {flow_run_id}: answered {what} as {by}")


def preflight(
    runbook: Annotated[
        Path, typer.Argument(help="the runbook YAML file (relative to the project directory, or absolute)", show_default=False)
    ],
    lower_ttl: Annotated[
        bool,
        typer.Option(
            "--lower-ttl",
            help="once every check is green: lower the TTL of every record the cutover will switch to the runbook's value",
        ),
    ] = False,
    live: Annotated[bool, typer.Option("--live", help="judge the window as a cutover run does: outside it is red")] = False,
    outside_window: Annotated[bool, typer.Option("--outside-window", help="with --live: allow a run outside the window")] = False,
    api: ApiOption = None,
) -> None:
    """Check, on the worker where the steps will run, everything the cutover needs (secrets,
    PostgreSQL endpoints and privileges, tool versions, SSH with the pinned host key, disk,
    DNS, HTTP endpoints, window, TTLs); print the table. Exit 1 on any red item. Changes
    nothing, unless --lower-ttl."""
    from cutover.cli.runbook_commands import load_or_exit
    from cutover.orchestration import OrchestrationError
    from cutover.orchestration.api import flow_run_link, require_healthy, ui_url_for
    from cutover.orchestration.follow import start_run
    from cutover.preflight import Report

    _quiet_logging()
    if runbook.exists():
        load_or_exit(runbook)
        parameter = runbook_parameter(runbook, _project_dir())
    else:
        parameter = str(runbook)
    try:
        api_url = _api_url(api)
        require_healthy(api_url)
        run_id = start_run(
            api_url,
            _deployment("preflight"),
            {"runbook": parameter, "lower_ttl": lower_ttl, "live": live, "outside_window": outside_window},
        )
    except OrchestrationError as exc:
        raise _fail("preflight", str(exc)) from None
    ui_url = ui_url_for(api_url)
    print(f"preflight {run_id}: {flow_run_link(ui_url, run_id)}")
    outcome = _follow("preflight", api_url, run_id, out=lambda line: None)
    result = outcome.result if isinstance(outcome.result, dict) else None
    if result is None or "items" not in result:
        raise _fail("preflight", f"the preflight run ended {outcome.state_name} without a report: {outcome.message}")
    report = Report.from_dict(result)
    print(report.text())
    for entry in result.get("lowered") or []:
        if entry.get("lowered"):
            print(f"TTL of {entry['record']} lowered from {entry['old_ttl']} to {entry['ttl']} s")
    if not report.ok:
        raise typer.Exit(1)


def _stop_demo(directory: Path) -> None:
    from cutover.orchestration.server import stop_server
    from cutover.orchestration.worker import stop_worker
    from cutover.sandbox import lifecycle
    from cutover.statuspage.process import stop_status_page

    home = directory.absolute() / "prefect"
    stopped = len(stop_status_page(home)) + len(stop_worker(home)) + len(stop_server(home))
    stopped += len(lifecycle.down(directory))
    print(f"demo in {directory} stopped ({stopped} processes)")


def _start_demo_stack(directory: Path, scale: int) -> PrefectServer:
    """Sandbox (reset when an earlier demo moved it), Prefect server, deployments, and a
    worker with the sandbox's environment; each step printed with its duration."""
    from cutover.orchestration.deployments import apply_deployments
    from cutover.orchestration.server import start_server
    from cutover.orchestration.stack import team_token
    from cutover.orchestration.worker import start_worker
    from cutover.redaction import is_sensitive_key, register_secrets
    from cutover.sandbox import lifecycle
    from cutover.sandbox.info import INFO_FILE
    from cutover.sandbox.reset import reset
    from cutover.statuspage.process import start_status_page

    started = time.monotonic()
    reused = (directory / INFO_FILE).exists()
    info = lifecycle.up(directory, scale)
    environment = info.environment()
    register_secrets(value for name, value in environment.items() if is_sensitive_key(name))
    if reused:
        reset(info)
    print(
        f"sandbox up in {info.dir} (scale {info.scale}){', reset to before the cutover' if reused else ''}: {time.monotonic() - started:.1f}s"
    )
    server = start_server(directory.absolute() / "prefect")
    print(f"Prefect server {server.api_url} (pid {server.pid}): {server.started_s:.1f}s; UI {server.ui_url}")
    applied = apply_deployments(server.api_url, project_dir=_project_dir(), home=server.home)
    print(f"deployments applied: {', '.join(applied.deployments)}: {applied.seconds:.1f}s")
    worker = start_worker(server.home, server.api_url, env=environment, project_dir=_project_dir())
    print(f"worker {worker.name} on pool {worker.pool} (pid {worker.pid}): {worker.started_s:.1f}s")
    token, token_file = team_token(server.home, environment)
    register_secrets([token])
    page = start_status_page(
        server.home, server.api_url, runbook=_project_dir() / DEMO_RUNBOOK, team_token=token, ui_url=server.ui_url
    )
    print(f"status page {page.url} (public); team view {page.team_url} (token in {token_file})")
    return server


def demo(
    scale: Annotated[int, typer.Option("--scale", min=0, help="estate size: 1 is about 50 MB")] = 1,
    directory: Annotated[
        Path, typer.Option("--dir", help="the sandbox directory; the Prefect server lives in DIR/prefect")
    ] = Path(".sandbox"),
    keep: Annotated[
        bool, typer.Option("--keep", help="leave the sandbox, the Prefect server, its UI and the worker running")
    ] = False,
    approve: Annotated[
        bool,
        typer.Option(
            "--approve/--no-approve", help="answer the go/no-go gate as operator cutover-demo, or wait for a human in the UI"
        ),
    ] = True,
    down: Annotated[bool, typer.Option("--down", help="stop what `cutover demo --keep` left running, and exit")] = False,
) -> None:
    """A full cutover of the sandbox estate from its Prefect deployment: sandbox, Prefect
    server and UI, deployment, worker, the run to the end, the summary."""
    from cutover.decisions import is_gate_pause
    from cutover.orchestration.api import flow_run_link
    from cutover.orchestration.follow import answer_gate, follow_run, start_run

    _quiet_logging()
    if down:
        try:
            _stop_demo(directory)
        except CutoverError as exc:
            raise _fail("demo", str(exc)) from None
        return

    outcome = None
    return_code = 1
    try:
        server = _start_demo_stack(directory, scale)
        # the demo is a rehearsal: its runbook's window is the real weekend's
        flow_run_id = start_run(server.api_url, _deployment("cutover"), {"runbook": DEMO_RUNBOOK, "outside_window": True})
        print(f"flow run {flow_run_id}: {flow_run_link(server.ui_url, flow_run_id)}")

        def on_pause(run_id: str, key: str) -> None:
            if approve and is_gate_pause(key):
                print(f"operator {DEMO_OPERATOR} approves {key} through the API (as the form in the UI would)")
                answer_gate(server.api_url, run_id, True, DEMO_OPERATOR, "demo: verification and smoke tests passed")

        outcome = follow_run(server.api_url, flow_run_id, on_pause=on_pause)
        _report(outcome, server.ui_url)
        if outcome.result is None:
            from cutover.orchestration.follow import summary_artifact

            markdown = summary_artifact(server.api_url, flow_run_id)
            if markdown:
                print(markdown)
        print(f"Prefect UI: {server.ui_url}")
    except CutoverError as exc:
        print(f"cutover demo: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("cutover demo: interrupted", file=sys.stderr)
        return_code = 130
    finally:
        if keep:
            print(
                f"still running (--keep): `source {directory / 'prefect' / 'env'}` points prefect and cutover "
                f"commands at this server; stop everything with `cutover demo --down --dir {directory}` "
                f"(or `cutover sandbox down --dir {directory}` for the sandbox alone)"
            )
        else:
            if outcome is None or not outcome.ok:
                print(
                    "cutover demo: stopping everything; `cutover demo --keep` leaves it running to look around", file=sys.stderr
                )
            try:
                _stop_demo(directory)
            except CutoverError as exc:
                print(f"cutover demo: stopping failed: {exc}", file=sys.stderr)
    if outcome is None or not outcome.ok:
        raise typer.Exit(return_code)


def register(app: typer.Typer) -> None:
    """Add ``run``, ``rerun`` and ``demo`` to the ``cutover`` command."""
    app.command()(run)
    app.command()(rerun)
    app.command()(rollback)
    app.command()(decide)
    app.command()(preflight)
    app.command()(demo)
