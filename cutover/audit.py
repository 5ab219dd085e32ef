"""The audit log kept in Prefect.

A run's audit file (JSON lines, :mod:`cutover.log`) lives on the worker's disk, which may
be gone by the time an auditor asks. At the end of every run (a cutover attempt, a
rollback) the file is copied into the cutover run's journal, whose Prefect store keeps a
big entry in the result storage: from then on the report needs nothing but the Prefect
API. The copy carries the file's sha256, so it can be compared with the file where that
still exists.

Entries in the cutover run's journal: ``audit-<name>`` (``name``: the attempt key, or
``rollback-<flow run id>``) and ``audit-kept``, the names in the order they were first
kept (the journal cannot list its keys). Keeping again replaces the copy: the file only
grows (a retry of the same attempt appends to it).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cutover.journal import Journal

INDEX = "audit-kept"


@dataclass(frozen=True)
class KeptAudit:
    """One audit file as it was kept: its name on the worker, digest, size and text."""

    name: str
    file: str
    sha256: str
    bytes: int
    lines: int
    kept_at: str
    text: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeptAudit:
        return cls(**{k: data[k] for k in ("name", "file", "sha256", "bytes", "lines", "kept_at", "text")})


def entry_key(name: str) -> str:
    return f"audit-{name}"


def keep(journal: Journal, name: str, path: Path) -> KeptAudit | None:
    """Copy the audit file at ``path`` into ``journal`` as ``name``; None when there is no such file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    kept_ = KeptAudit(
        name=name,
        file=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        lines=data.count(b"\n"),
        kept_at=datetime.now(UTC).isoformat(timespec="seconds"),
        text=data.decode("utf-8", errors="replace"),
    )
    journal.write(entry_key(name), asdict(kept_))
    names = list(journal.read(INDEX) or [])
    if name not in names:
        journal.write(INDEX, [*names, name])
    return kept_


def kept(journal: Journal) -> list[KeptAudit]:
    """Every audit file kept for the run, in the order first kept."""
    found = []
    for name in journal.read(INDEX) or []:
        entry = journal.read(entry_key(name))
        if isinstance(entry, dict):
            found.append(KeptAudit.from_dict(entry))
    return found
