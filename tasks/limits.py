"""Per-host caps on heavy work (dumps on a source host, restores on a target host),
as Prefect global concurrency limits, so they hold across flow runs and workers."""

from __future__ import annotations

import re

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.exceptions import ObjectNotFound

from cutover.runbook.model import Runbook


def limit_name(kind: str, host: str) -> str:
    return f"cutover-{kind}-" + re.sub(r"[^A-Za-z0-9.-]", "-", host)


def ensure_limits(runbook: Runbook) -> dict[str, int]:
    """Create or update one limit per source host (dumps) and per target host (restores)."""
    wanted: dict[str, int] = {}
    for app in runbook.applications:
        for db in app.databases:
            source = runbook.sites[db.from_].postgres
            target = runbook.sites[db.to].postgres
            if source is not None:
                wanted[limit_name("dump", source.host)] = runbook.defaults.concurrency.dumps_per_host
            if target is not None:
                wanted[limit_name("restore", target.host)] = runbook.defaults.concurrency.restores_per_host
    with get_client(sync_client=True) as client:
        for name, limit in wanted.items():
            try:
                current = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
                continue
            if current.limit != limit or not current.active:
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=limit, active=True))
    return wanted
