"""``cutover report RUN``: the cutover report of a run, made from what it recorded in
Prefect (nothing is asked of the estate), as HTML, Markdown or JSON; ``--public`` without
host names; ``--check FILE`` checks a saved JSON copy against its digest.

Every failure is one line on stderr and a non-zero exit: 2 for a bad argument or file,
1 when the Prefect API cannot say (unreachable, no such run).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cutover.errors import CutoverError

if TYPE_CHECKING:
    from cutover.report.record import RunbookFacts

FORMATS = ("html", "md", "json")


def _fail(message: str, code: int = 1) -> typer.Exit:
    print(f"cutover report: {message}", file=sys.stderr)
    return typer.Exit(code)


def _runbook_now(parameter: str) -> RunbookFacts | None:
    """The runbook's facts read now, for a run that kept none (it never reached its end)."""
    from cutover.report import facts
    from cutover.runbook import load_runbook

    if not parameter:
        return None
    path = Path(parameter)
    if not path.is_absolute():
        from cutover.orchestration.deployments import PROJECT_DIR

        path = Path(os.environ.get("CUTOVER_PROJECT_DIR") or PROJECT_DIR) / path
    try:
        return facts.runbook_facts(load_runbook(path), path, facts.AT_REPORT)
    except (CutoverError, OSError):
        return None


def _check(path: Path) -> None:
    from cutover.report import digest

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(f"{path}: not a JSON report ({exc})", 2) from None
    if not isinstance(data, dict) or not digest.check(data):
        raise _fail(f"{path}: its content does NOT match its digest", 1)
    print(f"{path}: matches its digest {data['digest']['value']}")


def _write(text: str, out: Path, public: bool) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # the team report names hosts and people: only for this user, like the audit file
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644 if public else 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise _fail(f"{out}: cannot write: {exc.strerror or exc}", 2) from None


def report(
    run: Annotated[
        str | None,
        typer.Argument(help="the id of a cutover flow run (or of a rollback run: its cutover run's report)", show_default=False),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="html, md or json")] = "md",
    public: Annotated[bool, typer.Option("--public", help="leave out every host name, address, URL, DNS name and path")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="write it to this file (default: standard output)", show_default=False)
    ] = None,
    check: Annotated[
        Path | None, typer.Option("--check", help="check a saved JSON report against its digest, and exit", show_default=False)
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api", help="Prefect API URL (default: PREFECT_API_URL or the active Prefect profile)", show_default=False
        ),
    ] = None,
) -> None:
    """The cutover report of a run: the verdict, per database the chain of custody
    (fingerprints at the freeze and after the import, dump sha256s, roles, dump files), DNS
    before and after, every decision, checks, timeline and rollbacks, with a sha256 digest.
    Made from what the run recorded in Prefect; the estate is not asked."""
    if check is not None:
        _check(check)
        return
    if run is None:
        raise _fail("say which run: cutover report RUN (its flow run id), or --check FILE", 2)
    if format not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, not {format!r}", 2)
    from cutover.cli.run_commands import _api_url, _quiet_logging
    from cutover.orchestration import OrchestrationError
    from cutover.orchestration.api import require_healthy
    from cutover.report import build_report, render
    from cutover.report.gather import gather
    from tasks.journal import run_journal

    _quiet_logging()
    try:
        api_url = _api_url(api)
        require_healthy(api_url)
        record = gather(api_url, run, run_journal, runbook_fallback=_runbook_now)
    except OrchestrationError as exc:
        raise _fail(str(exc)) from None
    text = render(build_report(record, public=public), format)
    if out is None:
        sys.stdout.write(text)
        return
    _write(text, out, public)
    print(f"report of flow run {record.run.id} ({record.run.name}) written to {out}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command()(report)
