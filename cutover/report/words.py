"""How the report's values read, the same in every format: times, sizes, durations, and
"not recorded" for what nobody wrote down."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cutover import units

NOT_RECORDED = "not recorded"

OUTCOME_CLASS = {
    "completed": "good",
    "rolled_back": "rolled-back",
    "needs_attention": "bad",
    "in_progress": "neutral",
    "not_started": "neutral",
}


def when(value: str | None) -> str:
    """``2027-07-16 18:04:05 UTC`` from an ISO 8601 time."""
    if not value:
        return NOT_RECORDED
    return value.replace("T", " ").replace("+00:00", " UTC")


def seconds(value: float | None) -> str:
    return units.duration(value) if value is not None else "-"


def size(value: int | None) -> str:
    return f"{units.size(value)} ({value:,} bytes)" if value is not None else NOT_RECORDED


def count(value: int | None) -> str:
    return f"{value:,}" if value is not None else "-"


def or_not_recorded(value: Any) -> str:
    if value is None or value == "" or value == []:
        return NOT_RECORDED
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def listing(values: Iterable[str] | None, empty: str = "none") -> str:
    items = list(values or [])
    return ", ".join(items) if items else empty


def attempt(key: str | None) -> str:
    """An attempt key short enough for a table column: the flow run id's first part, and
    the generation (``f2289179….g1``); the run's section shows them whole."""
    if not key:
        return "-"
    run, _, generation = key.partition(".")
    return run[:8] + "…" + (f".{generation}" if generation else "")
