"""``cutover validate``, ``cutover plan`` and ``cutover schema``: pure Python, no Prefect,
so they start in a fraction of a second even on a 300-application runbook."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from cutover.runbook.model import Runbook

from cutover.errors import RunbookError

RunbookArg = Annotated[Path, typer.Argument(help="the runbook YAML file", show_default=False)]


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    mermaid = "mermaid"


def load_or_exit(path: Path) -> Runbook:
    """Load a runbook, or print every problem (one line each) and exit 2."""
    from cutover.runbook import load_runbook

    try:
        return load_runbook(path)
    except RunbookError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(2) from None


def validate(runbook: RunbookArg) -> None:
    """Check a runbook: syntax, keys, types, references, cycles, secrets. Exit 2 on problems."""
    loaded = load_or_exit(runbook)
    databases = sum(len(a.databases) for a in loaded.applications)
    print(f"{runbook}: ok ({len(loaded.applications)} applications, {databases} databases)")


def plan(
    runbook: RunbookArg,
    format: Annotated[PlanFormat, typer.Option("--format", "-f", help="text, json or mermaid")] = PlanFormat.text,
    timeline: Annotated[
        bool, typer.Option("--timeline", help="predict the finish (P50/P90) against the window from earlier runs")
    ] = False,
    api: Annotated[str | None, typer.Option("--api", help="Prefect API with the earlier runs (default: PREFECT_API_URL)")] = None,
) -> None:
    """Show the steps a cutover will run, their order and the critical path."""
    from cutover.plan import build_plan, render

    loaded = load_or_exit(runbook)
    if timeline:
        from cutover.cli.status_page_commands import print_timeline

        raise typer.Exit(print_timeline(loaded, api))
    built = build_plan(loaded)
    out = {"text": render.as_text, "json": render.as_json, "mermaid": render.as_mermaid}[format.value](built)
    sys.stdout.write(out + "\n")


class SchemaFormat(StrEnum):
    json = "json"
    markdown = "markdown"


def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
    format: Annotated[
        SchemaFormat, typer.Option("--format", "-f", help="json (the schema) or markdown (the reference)")
    ] = SchemaFormat.json,
) -> None:
    """Print the JSON Schema of runbooks (runbooks/runbook.schema.json) or the Markdown
    runbook reference (docs/runbook-reference.md)."""
    if format is SchemaFormat.json:
        from cutover.runbook.schema import runbook_schema_text

        text = runbook_schema_text()
    else:
        from cutover.runbook.reference import reference_markdown

        text = reference_markdown()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(plan)
    app.command()(schema)
