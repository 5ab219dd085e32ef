"""preflight/sizes: how big each source database is, to choose stream or file for
``method: auto``. Cached for the run, so a retry plans exactly the same steps."""

from __future__ import annotations

from prefect import task

from cutover.phases import endpoints
from cutover.postgres import dump
from cutover.postgres.endpoint import connect
from tasks.common import runbook_at


@task(name="preflight-sizes")
def measure_sizes(runbook_path: str) -> dict[str, int]:
    runbook = runbook_at(runbook_path)
    sizes: dict[str, int] = {}
    for site_name in {db.from_ for app in runbook.applications for db in app.databases if db.method == "auto"}:
        with connect(endpoints.postgres(runbook, site_name), "postgres", autocommit=True) as admin:
            for app in runbook.applications:
                for db in app.databases:
                    if db.method == "auto" and db.from_ == site_name:
                        sizes[f"{app.name}/{db.name}"] = dump.database_size(admin, db.name)
    return sizes
