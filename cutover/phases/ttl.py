"""Lowering DNS TTLs before the weekend, and the rule that the switch waits them out.

A resolver that cached a record with a TTL of an hour keeps sending users to the old site
for up to an hour after the switch. So days before, ``cutover preflight --lower-ttl``
lowers the TTL of every record the cutover will switch to the runbook's value (the value
stays), and writes down when and from what (:class:`cutover.journal.TtlRecord`). Until
the old TTL has passed since that moment, somebody may still hold the record for the old
TTL: the switch refuses such a record and says until when, and the preflight of a cutover
run says so before anything is frozen.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from cutover.dns.provider import RecordChange
from cutover.errors import PermanentStepError
from cutover.journal import TtlRecord
from cutover.phases import endpoints
from cutover.runbook.model import Application, DnsRecord, Runbook

log = structlog.get_logger()


def record_key(record: DnsRecord) -> str:
    return f"{record.name} {record.type}"


def lower_ttls(runbook: Runbook, journal: TtlRecord, now: datetime | None = None) -> list[dict[str, Any]]:
    """Lower every switched record whose TTL is above the runbook's to the runbook's value,
    keeping its values; journal each lowering before it is made. Records already at or
    below it, or not there yet, are left alone. Idempotent."""
    now = now or datetime.now(UTC)
    entries = journal.get()
    done = []
    with endpoints.dns_provider(runbook) as provider:
        for app in runbook.applications:
            for record in app.dns:
                current = provider.get(record.name, record.type)
                if current is None or current.ttl <= record.ttl:
                    done.append({"record": record_key(record), "ttl": current.ttl if current else None, "lowered": False})
                    continue
                key = record_key(record)
                entries[key] = {"old_ttl": current.ttl, "lowered_to": record.ttl, "at": now.isoformat(timespec="seconds")}
                journal.put(entries)
                provider.apply(
                    RecordChange(
                        name=record.name, rtype=record.type, ttl=record.ttl, values=current.values, expect_current=current.values
                    )
                )
                log.info("dns_ttl_lowered", record=key, old_ttl=current.ttl, ttl=record.ttl)
                done.append({"record": key, "ttl": record.ttl, "old_ttl": current.ttl, "lowered": True})
    return done


def switchable_from(entry: dict[str, Any] | None) -> datetime | None:
    """When a record lowered as ``entry`` says has outlived its old TTL everywhere."""
    if not entry:
        return None
    return datetime.fromisoformat(entry["at"]) + timedelta(seconds=int(entry["old_ttl"]))


def refuse_unexpired(app: Application, journal: TtlRecord | None, now: datetime | None = None) -> None:
    """PermanentStepError naming the first record of ``app`` whose old TTL has not yet
    passed since it was lowered, and until when; nothing otherwise."""
    if journal is None:
        return
    now = now or datetime.now(UTC)
    entries = journal.get()
    for record in app.dns:
        until = switchable_from(entries.get(record_key(record)))
        if until is not None and now < until:
            raise PermanentStepError(
                f"DNS switch of {record.name} {record.type}: its TTL was lowered at {entries[record_key(record)]['at']} from "
                f"{entries[record_key(record)]['old_ttl']} s; resolvers may hold the old TTL until {until.isoformat(timespec='seconds')}: "
                "switch after that; nothing was switched"
            )
