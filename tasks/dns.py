"""dns / post-switch: switch the records, then reach the new site through the name."""

from __future__ import annotations

from typing import Any

from prefect import task

from cutover.phases import dns
from cutover.step_run import run_step
from tasks.common import parts, runbook_at


@task(name="dns")
def dns_switch(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(parts(step_id)[0])
    return run_step(runbook.cutover, step_id, "dns_switch", lambda: dns.switch_records(runbook, app))


@task(name="post-switch")
def post_switch(runbook_path: str, step_id: str, run_key: str) -> dict[str, Any]:
    runbook = runbook_at(runbook_path)
    app = runbook.application(parts(step_id)[0])
    return run_step(runbook.cutover, step_id, "post_switch", lambda: dns.check_after_switch(runbook, app))
