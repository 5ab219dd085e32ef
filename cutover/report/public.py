"""The public variant: the team's report without a host name in it.

The report is built with every host-naming field left empty (``public=True``); then, as a
second line of defence, every remaining text (an error message quoting a URL, a check's
label) is scrubbed of every name and address the run's record knows (sites, DNS, the
applications' URLs, the values the DNS records held) and of anything that looks like a URL
or an IP address. :func:`leaks` says what of those a rendered text still holds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cutover.report.record import RunRecord
from cutover.results import ActionOutcome, ActionsResult, DnsSwitchResult, GateResult, PostSwitchResult

WITHHELD = "[withheld]"
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)\]\"'<>|]+", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\d.])")
_HOST_KEYS = ("host", "address", "api", "nameserver", "url", "zone", "name", "to")

T = TypeVar("T")


def _host(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if "://" in value:
        return urlsplit(value).hostname
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _from_facts(data: Any, into: set[str], key: str = "") -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            _from_facts(v, into, str(k))
    elif isinstance(data, list):
        for item in data:
            _from_facts(item, into, key)
    elif isinstance(data, str) and key in _HOST_KEYS and ("." in data or ":" in data):
        host = _host(data)
        if host:
            into.add(host)


def _from_outcome(outcome: ActionOutcome, into: set[str]) -> None:
    for value in (outcome.url, outcome.address):
        if value:
            host = _host(value)
            if host:
                into.add(host)


def hostnames(record: RunRecord) -> set[str]:
    """Every host name and address the record knows, with and without a DNS name's final dot."""
    found: set[str] = set()
    if record.runbook is not None:
        _from_facts(record.runbook.data.get("sites"), found)
        _from_facts(record.runbook.data.get("dns"), found)
        for app in record.runbook.data.get("applications") or []:
            _from_facts({k: app.get(k) for k in ("freeze", "unfreeze", "start", "stop", "smoke", "dns", "finalize")}, found)
    for run in record.task_runs:
        result = run.result
        if isinstance(result, ActionsResult):
            for outcome in result.results:
                _from_outcome(outcome, found)
        elif isinstance(result, PostSwitchResult):
            for outcome in result.checks:
                _from_outcome(outcome, found)
        elif isinstance(result, DnsSwitchResult):
            for record_ in result.records:
                found.update([record_.name, record_.new, *record_.old, *record_.answered])
        elif isinstance(result, GateResult):
            for change in result.dns_changes:
                found.update([change.name, change.new, *(change.old or [])])
    for key, entry in record.journal.items():
        if key.startswith("dns-") and isinstance(entry, dict):
            for name, old in (entry.get("old") or {}).items():
                found.add(name)
                found.update((old or {}).get("values") or [])
    names = {n for n in found if n and len(n) >= 3}
    return names | {n.rstrip(".") for n in names if n.endswith(".") and len(n) > 4}


def scrub_text(value: str, names: Iterable[str]) -> str:
    """``value`` with every name of ``names``, URL and IPv4 address replaced by ``[withheld]``."""
    value = _URL.sub(WITHHELD, value)
    for name in sorted(names, key=len, reverse=True):
        value = re.sub(r"(?<![\w.-])" + re.escape(name) + r"(?![\w-])", WITHHELD, value, flags=re.IGNORECASE)
    return _IPV4.sub(WITHHELD, value)


def map_strings(value: T, change: Callable[[str], str]) -> T:
    """``value`` (dataclasses, lists, dicts) with every string in it passed through ``change``."""
    if isinstance(value, str):
        return change(value)  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        updates = {f.name: map_strings(getattr(value, f.name), change) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **updates)
    if isinstance(value, list):
        return [map_strings(item, change) for item in value]  # type: ignore[return-value]
    if isinstance(value, dict):
        return {map_strings(k, change): map_strings(v, change) for k, v in value.items()}  # type: ignore[return-value]
    return value


def leaks(rendered: str, names: Iterable[str]) -> list[str]:
    """The names of ``names`` (and URLs, IPv4 addresses) that ``rendered`` still holds."""
    found = [name for name in names if re.search(r"(?<![\w.-])" + re.escape(name) + r"(?![\w-])", rendered, re.IGNORECASE)]
    return sorted(set(found) | set(_URL.findall(rendered)) | set(_IPV4.findall(rendered)))
