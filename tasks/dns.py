"""dns / post-switch: switch the records, then reach the new site through the name."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import database, dns
from cutover.step_run import run_step
from tasks import journal
from tasks.common import parts, runbook_at


class DnsJournal:
    """The switch's write-ahead record of one application, as a Prefect variable."""

    def __init__(self, run_key: str, application: str) -> None:
        self.run_key, self.key = run_key, f"dns-{application}"

    def get(self) -> dict[str, Any] | None:
        return journal.read(self.run_key, self.key)

    def put(self, entry: dict[str, Any]) -> None:
        journal.write(self.run_key, self.key, entry)


@task(name="dns")
def dns_switch(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(parts(step_id)[0])
    return run_step(
        runbook.cutover,
        step_id,
        "dns_switch",
        lambda: dns.switch_records(
            runbook, app, DnsJournal(run_key, app.name), writes_baseline=lambda: database.target_write_counts(runbook, app, run_key)
        ),
    )


@task(name="post-switch")
def post_switch(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(parts(step_id)[0])
    return run_step(runbook.cutover, step_id, "post_switch", lambda: dns.check_after_switch(runbook, app))
