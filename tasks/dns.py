"""dns / post-switch: switch the records, then reach the new site through the name."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import database, dns
from cutover.plan.build import Step
from cutover.step_run import run_step
from tasks import journal
from tasks.common import runbook_at


class DnsJournal:
    """The switch's write-ahead record of one application, as a Prefect variable."""

    def __init__(self, attempt_key: str, application: str) -> None:
        self.attempt_key, self.key = attempt_key, f"dns-{application}"

    def get(self) -> dict[str, Any] | None:
        return journal.read(self.attempt_key, self.key)

    def put(self, entry: dict[str, Any]) -> None:
        journal.write(self.attempt_key, self.key, entry)


@task(name="dns")
def dns_switch(runbook_path: str, step: Step, attempt_key: str, approved: dict[str, Any] | None = None) -> dict[str, Any]:
    """``approved``: the result of the gate that held this switch back, if one did."""
    runbook = runbook_at(runbook_path)
    app = runbook.application(step.application or "")
    return run_step(
        runbook.cutover,
        step.id,
        step.phase,
        lambda: dns.switch_records(
            runbook,
            app,
            DnsJournal(attempt_key, app.name),
            writes_baseline=lambda: database.target_write_counts(runbook, app, attempt_key),
            approved=(approved or {}).get("dns_changes"),
            ttl_journal=journal.TtlJournal(runbook.cutover),
        ),
    )


@task(name="post-switch")
def post_switch(runbook_path: str, step: Step, attempt_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(step.application or "")
    return run_step(runbook.cutover, step.id, step.phase, lambda: dns.check_after_switch(runbook, app))
