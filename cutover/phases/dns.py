"""Switch an application's DNS records, confirm with the authoritative server, and check
that a user resolving the name now reaches the new site."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from cutover.dns.provider import RecordChange
from cutover.dns.query import query
from cutover.errors import PermanentStepError, TransientStepError, UnsafeChange
from cutover.journal import TtlRecord
from cutover.phases import endpoints
from cutover.phases.actions import http_request
from cutover.phases.ttl import refuse_unexpired
from cutover.results import CompensationResult, DnsChange, DnsSwitchResult, PostSwitchResult, RecordSwitched
from cutover.runbook.model import Application, Runbook

log = structlog.get_logger()


class SwitchRecord(Protocol):
    """Where a switch keeps what a revert will need (the old values), outside the step's
    result so that it survives a crash halfway through the switch
    (:class:`cutover.journal.DnsSwitchRecord`)."""

    def get(self) -> dict[str, Any] | None: ...

    def put(self, entry: dict[str, Any]) -> None: ...


def switch_records(
    runbook: Runbook,
    app: Application,
    journal: SwitchRecord,
    writes_baseline: Callable[[], dict[str, int]] | None = None,
    approved: list[DnsChange] | None = None,
    ttl_journal: TtlRecord | None = None,
) -> DnsSwitchResult:
    """Point every record of ``app`` at its new value.

    Before changing anything, the old values (and ``writes_baseline()``, the target
    databases' write counters) go into ``journal``; each record switched is added to it
    as it happens. A rerun finds the journal and keeps its old values, so a record
    already switched by a crashed attempt is recognised, not taken for the old value.

    ``approved``: the change set a gate showed when it was approved
    (:func:`planned_changes`); a record that holds another value now than the one the
    approver saw is refused, before anything changes; so is a record whose TTL was lowered
    less than its old TTL ago (``ttl_journal``, see :mod:`cutover.phases.ttl`)."""
    provider = endpoints.dns_provider(runbook)
    host, port = endpoints.nameserver(runbook)
    entry = journal.get()
    if not entry:
        refuse_unexpired(app, ttl_journal)
        seen = {(c.name, c.type): c.old for c in approved or [] if c.old is not None}
        old = {}
        for record in app.dns:
            current = provider.get(record.name, record.type)
            values = list(current.values) if current else []
            shown = seen.get((record.name, record.type))
            if shown is not None and sorted(shown) != sorted(values) and values != [record.to]:
                raise PermanentStepError(
                    f"DNS switch of {record.name} {record.type}: it holds {values or 'nothing'} now, not {shown or 'nothing'} "
                    "as when the gate was approved; nothing was switched"
                )
            old[record.name] = {"values": values, "ttl": current.ttl if current else record.ttl}
        entry = {"old": old, "switched": [], "writes_baseline": writes_baseline() if writes_baseline else {}}
        journal.put(entry)
    switched = []
    for record in app.dns:
        old_values = tuple(entry["old"].get(record.name, {}).get("values", ()))
        try:
            provider.apply(
                RecordChange(name=record.name, rtype=record.type, ttl=record.ttl, values=(record.to,), expect_current=old_values)
            )
        except UnsafeChange as exc:
            raise PermanentStepError(f"DNS switch of {record.name} {record.type}: {exc}") from exc
        switched_at = _now()
        if record.name not in entry["switched"]:
            entry["switched"].append(record.name)
            journal.put(entry)
        answered = _await_answer(record.name, record.type, record.to, host, port, timeout_s=runbook.defaults.check_timeout_s)
        change = RecordSwitched(
            name=record.name,
            type=record.type,
            old=list(old_values),
            new=record.to,
            answered=answered,
            old_ttl=entry["old"].get(record.name, {}).get("ttl"),
            ttl=record.ttl,
            switched_at=switched_at,
            confirmed_at=_now(),
        )
        log.info("dns_switched", name=change.name, type=change.type, old=change.old, new=change.new, answered=answered)
        switched.append(change)
    return DnsSwitchResult(records=switched)


def planned_changes(runbook: Runbook, apps: list[Application]) -> list[DnsChange]:
    """The change set the DNS switch of ``apps`` would make now, record by record, as an
    octoDNS-style plan: name, type, current values and TTL, new value and TTL, and what
    the switch will do (``update``, ``create``, or ``none`` when already at the new value).
    Read-only. A record whose current value cannot be read says why, and the plan goes on."""
    records = [(app, record) for app in apps for record in app.dns]
    if not records:
        return []
    changes = []
    try:
        provider = endpoints.dns_provider(runbook)
    except Exception as exc:  # an unresolvable API key must not hide the rest of the evidence
        return [_unknown_change(app, record, exc) for app, record in records]
    with provider:
        for app, record in records:
            try:
                current = provider.get(record.name, record.type)
            except Exception as exc:
                changes.append(_unknown_change(app, record, exc))
                continue
            values = list(current.values) if current else []
            action = (
                "create" if current is None else ("none" if values == [record.to] and current.ttl == record.ttl else "update")
            )
            changes.append(
                DnsChange(
                    application=app.name,
                    name=record.name,
                    type=record.type,
                    old=values,
                    old_ttl=current.ttl if current else None,
                    new=record.to,
                    ttl=record.ttl,
                    action=action,
                )
            )
    return changes


def _unknown_change(app: Application, record: Any, exc: BaseException) -> DnsChange:
    return DnsChange(
        application=app.name,
        name=record.name,
        type=record.type,
        old=None,
        old_ttl=None,
        new=record.to,
        ttl=record.ttl,
        action=f"unknown: {type(exc).__name__}: {str(exc)[:120]}",
    )


def revert_records(runbook: Runbook, app: Application, entry: dict[str, Any] | None) -> CompensationResult:
    """Put every record the switch recorded back to its old values and TTL.

    A record already at its old value is fine (nothing to do). A record at neither the new
    nor the old value was changed by somebody else since: it is left alone and the revert
    fails, saying what to set by hand."""
    if not entry:
        return CompensationResult("nothing to revert: the switch recorded nothing, so it changed nothing", {"records": []})
    provider = endpoints.dns_provider(runbook)
    host, port = endpoints.nameserver(runbook)
    reverted = []
    for record in app.dns:
        old = entry["old"].get(record.name)
        if old is None:
            continue
        old_values = tuple(old["values"])
        if not old_values:
            current = provider.get(record.name, record.type)
            if current is None:
                continue
            raise PermanentStepError(
                f"DNS {record.name} {record.type} did not exist before the switch; delete it by hand (the revert does not delete records)"
            )
        try:
            wrote = provider.apply(
                RecordChange(name=record.name, rtype=record.type, ttl=old["ttl"], values=old_values, expect_current=(record.to,))
            )
        except UnsafeChange as exc:
            raise PermanentStepError(
                f"DNS revert of {record.name} {record.type}: {exc}; set it to {', '.join(old_values)} by hand if that is still right"
            ) from exc
        reverted_at = _now()
        _await_answer(record.name, record.type, old_values[0], host, port, timeout_s=runbook.defaults.check_timeout_s)
        change = {
            "name": record.name,
            "type": record.type,
            "values": list(old_values),
            "ttl": old["ttl"],
            "changed": wrote,
            "reverted_at": reverted_at,
            "confirmed_at": _now(),
        }
        log.info("dns_reverted", **change)
        reverted.append(change)
    return CompensationResult(f"{len(reverted)} record(s) back at their old values", {"records": reverted})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _await_answer(name: str, rtype: str, want: str, host: str, port: int, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = query(name, rtype, server_host=host, server_port=port)
        if want in answer.values:
            return list(answer.values)
        if time.monotonic() > deadline:
            raise TransientStepError(
                f"DNS {name} {rtype} still answers {list(answer.values)} from {host}:{port}, expected {want}"
            )
        time.sleep(0.2)


def check_after_switch(runbook: Runbook, app: Application) -> PostSwitchResult:
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
            http_request(
                record.check,
                label=label,
                timeout_s=record.check.timeout_s or runbook.defaults.check_timeout_s,
                resolver=resolve,
                verify=endpoints.tls_verify(runbook, label),
            )
        )
    return PostSwitchResult(checks=results)
