"""Per DNS record: the value and TTL before the switch (the switch's own write-ahead
journal entry), the new value, when it was switched and when the authoritative server
confirmed it, and, after a rollback, the value it was put back to."""

from __future__ import annotations

from typing import Any

from cutover.plan.build import Plan
from cutover.plan.rollback import rollback_id
from cutover.report.lookup import Recorded
from cutover.report.model import DnsRecordReport
from cutover.results import CompensationResult, DnsSwitchResult, GateResult, RecordSwitched


def _configured(facts: dict[str, Any], app: str) -> list[dict[str, Any]]:
    for application in facts.get("applications") or []:
        if application.get("name") == app:
            return list(application.get("dns") or [])
    return []


def dns_records(rec: Recorded, attempt: str, plan: Plan, *, public: bool) -> list[DnsRecordReport]:
    facts = rec.record.runbook.data if rec.record.runbook is not None else {}
    shown: dict[tuple[str, str], Any] = {}
    for step in plan.steps.values():
        if step.phase == "gate":
            gate = rec.result(step.id, attempt)
            if isinstance(gate, GateResult):
                shown.update({(c.name, c.type): c for c in gate.dns_changes})
    reports = []
    for step in plan.steps.values():
        if step.phase != "dns_switch" or step.application is None:
            continue
        app = step.application
        journal = rec.record.journal.get(f"dns-{rec.key_of_application(app, attempt)}-{app}") or {}
        old = journal.get("old") or {}
        switched_names = set(journal.get("switched") or [])
        result = rec.result(step.id, attempt)
        done: dict[str, RecordSwitched] = {r.name: r for r in result.records} if isinstance(result, DnsSwitchResult) else {}
        restored: dict[str, dict[str, Any]] = {}
        put_back = [
            r for r in rec.compensations(attempt) if r.name == rollback_id(step.id) and isinstance(r.result, CompensationResult)
        ]
        if put_back:
            restored = {str(item.get("name")): item for item in put_back[-1].result.details.get("records", [])}
        configured = _configured(facts, app) or [{"name": n, "type": r.type, "to": r.new, "ttl": r.ttl} for n, r in done.items()]
        for record in configured:
            name, rtype = str(record.get("name")), str(record.get("type", "A"))
            switch = done.get(name)
            before = old.get(name) or {}
            gate_change = shown.get((name, rtype))
            old_values = before.get("values") if before else (gate_change.old if gate_change is not None else None)
            old_ttl = before.get("ttl") if before else (gate_change.old_ttl if gate_change is not None else None)
            back = restored.get(name)
            if back is not None:
                state = (
                    "switched, then put back to its old value"
                    if name in switched_names or switch
                    else "put back (it had not changed)"
                )
            elif switch is not None:
                state = "switched and confirmed by the authoritative server"
            elif name in switched_names:
                state = "switched (the switch did not finish: not confirmed)"
            else:
                state = "not switched"
            reports.append(
                DnsRecordReport(
                    application=app,
                    name=None if public else name,
                    type=rtype,
                    old_values=None if public else (list(old_values) if old_values is not None else None),
                    old_ttl=old_ttl,
                    new_value=None if public else str(record.get("to")),
                    ttl=switch.ttl if switch is not None and getattr(switch, "ttl", None) else record.get("ttl"),
                    switched_at=getattr(switch, "switched_at", None),
                    confirmed_at=getattr(switch, "confirmed_at", None),
                    answered=None if public or switch is None else list(switch.answered),
                    restored_values=None if public or back is None else list(back.get("values") or []),
                    restored_at=None if back is None else back.get("confirmed_at") or back.get("reverted_at"),
                    state=state,
                )
            )
    return reports
