"""Switch an application's DNS records, confirm with the authoritative server, and check
that a user resolving the name now reaches the new site."""

from __future__ import annotations

import time
from typing import Any

import structlog

from cutover.dns.provider import RecordChange
from cutover.dns.query import query
from cutover.errors import TransientStepError
from cutover.phases import endpoints
from cutover.phases.actions import http_request
from cutover.runbook.model import Application, Runbook

log = structlog.get_logger()


def switch_records(runbook: Runbook, app: Application, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point every record of ``app`` at its new value. The old values are recorded (for
    rollback); a record already at the new value counts as switched, and its old value is
    taken from ``previous`` (an earlier attempt's record) when there is one."""
    provider = endpoints.dns_provider(runbook)
    host, port = endpoints.nameserver(runbook)
    switched = []
    for record in app.dns:
        current = provider.get(record.name, record.type)
        old_values = tuple(current.values) if current else ()
        if old_values == (record.to,) and previous:
            old_values = tuple(previous.get(record.name, {}).get("old", old_values))
        provider.apply(
            RecordChange(name=record.name, rtype=record.type, ttl=record.ttl, values=(record.to,), expect_current=old_values or None)
        )
        answered = _await_answer(record.name, record.type, record.to, host, port, timeout_s=runbook.defaults.check_timeout_s)
        entry = {"name": record.name, "type": record.type, "old": list(old_values), "new": record.to, "answered": answered}
        log.info("dns_switched", **entry)
        switched.append(entry)
    return {"records": switched}


def _await_answer(name: str, rtype: str, want: str, host: str, port: int, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = query(name, rtype, server_host=host, server_port=port)
        if want in answer.values:
            return list(answer.values)
        if time.monotonic() > deadline:
            raise TransientStepError(f"DNS {name} {rtype} still answers {list(answer.values)} from {host}:{port}, expected {want}")
        time.sleep(0.2)


def check_after_switch(runbook: Runbook, app: Application) -> dict[str, Any]:
    """For each record with a ``check``: resolve the name through the authoritative server
    and request the address it gives, as a user would after the switch."""
    host, port = endpoints.nameserver(runbook)

    def resolve(name: str) -> str:
        fqdn = name if name.endswith(".") else name + "."
        values = query(fqdn, "A", server_host=host, server_port=port).values
        if not values:
            raise TransientStepError(f"{fqdn} does not resolve at {host}:{port}")
        return values[0]

    results = []
    for index, record in enumerate(app.dns):
        if record.check is None:
            continue
        label = f"{app.name}.dns[{index}].check"
        results.append(
            http_request(record.check, label=label, timeout_s=record.check.timeout_s or runbook.defaults.check_timeout_s, resolver=resolve)
        )
    return {"checks": results}
