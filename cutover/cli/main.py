"""The ``cutover`` command. Sub-commands live one module per group and import heavy
libraries (Prefect, paramiko) inside the command, so ``validate`` and ``plan`` start fast."""

from __future__ import annotations

import typer

from cutover.cli import report_commands, run_commands, runbook_commands, sandbox_commands, stack_commands, status_page_commands

app = typer.Typer(
    name="cutover",
    help="Plan, run and verify a one-shot migration weekend on Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runbook_commands.register(app)
run_commands.register(app)
stack_commands.register(app)
status_page_commands.register(app)
report_commands.register(app)
app.add_typer(sandbox_commands.app, name="sandbox", help="A real estate on this machine: PostgreSQL, OpenSSH, PowerDNS, apps.")


def main() -> None:
    app()
