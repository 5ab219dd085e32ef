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
    what_if: Annotated[
        list[str] | None,
        typer.Option(
            "--what-if",
            help="an application that fails for good (repeat for several): what the run would roll back",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show the steps a cutover will run, their order and the critical path."""
    from cutover.plan import build_plan, render

    loaded = load_or_exit(runbook)
    if what_if:
        raise typer.Exit(print_what_if(loaded, what_if))
    if timeline:
        from cutover.cli.status_page_commands import print_timeline

        raise typer.Exit(print_timeline(loaded, api))
    built = build_plan(loaded)
    out = {"text": render.as_text, "json": render.as_json, "mermaid": render.as_mermaid}[format.value](built)
    sys.stdout.write(out + "\n")


def print_what_if(runbook: Runbook, failing: list[str]) -> int:
    """Print what a failure of ``failing`` before the point of no return rolls back under the
    runbook's on_failure, and what goes on; 2 for an application the runbook does not have."""
    from cutover.plan.affected import affected_by, groups_of
    from cutover.runbook.suggest import did_you_mean

    names = [app.name for app in runbook.applications]
    unknown = [name for name in failing if name not in names]
    if unknown:
        print(f"cutover plan: --what-if {unknown[0]}: no such application" + did_you_mean(unknown[0], names), file=sys.stderr)
        return 2
    back = affected_by(runbook, failing)
    print(f"on_failure: {runbook.on_failure}; if {', '.join(failing)} failed for good before the point of no return:")
    print(f"\nrolled back to the old site ({len(back)}):")
    for name, why in back.items():
        print(f"  {name}: {why}")
    going = [name for name in names if name not in back]
    print(f"\ngo on to their gate and switch ({len(going)}): {', '.join(going) or 'none'}")
    together = {name: others for name, others in groups_of(runbook).items() if others}
    if together:
        print("\nmove together: " + "; ".join(f"{name} with {', '.join(others)}" for name, others in together.items()))
    return 0


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
