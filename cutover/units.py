"""Sizes and durations, written one way everywhere: the terminal, artifacts, forms, reports."""

from __future__ import annotations


def size(value: float | int | None) -> str:
    """``1.5 GiB``, ``12.0 MiB``, ``512 B``; ``-`` for nothing known."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | int | None) -> str:
    """``45 s``, ``2.5 min``, ``4 h``: the largest unit that keeps a number of at least one."""
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h" if seconds % 360 == 0 else f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min" if seconds % 6 == 0 else f"{seconds / 60:.1f} min"
    return f"{seconds:g} s" if seconds == int(seconds) else f"{seconds:.1f} s"
