"""The runbook as the run read it, kept beside the run: the report must not read the runbook
again, because its plain values come from the environment of whoever loads it (a
``${CUTOVER_ONPREM_PG_HOST:-...}`` resolves differently on the worker and on a laptop),
and the file may have changed or be gone.

The facts are the loaded model (values resolved, secrets only as their references; the
redactor blanks anything under a credential's name besides), the file's path and sha256.
The end of every run keeps them in the run's journal (``report-runbook``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cutover.journal import Journal
from cutover.redaction import redact_value
from cutover.report.record import RunbookFacts
from cutover.runbook.model import Runbook

KEY = "report-runbook"
AT_RUN_END = "at the end of the run"
AT_REPORT = "when this report was made, from the file as it is now"


def file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def runbook_facts(runbook: Runbook, path: str | Path, read: str) -> RunbookFacts:
    data: dict[str, Any] = redact_value(runbook.model_dump(mode="json", by_alias=True))
    return RunbookFacts(path=str(path), sha256=file_sha256(path), read=read, data=data)


def remember(journal: Journal, facts: RunbookFacts) -> None:
    journal.write(KEY, {"path": facts.path, "sha256": facts.sha256, "read": facts.read, "data": facts.data})


def recall(journal: Journal) -> RunbookFacts | None:
    entry = journal.read(KEY)
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict):
        return None
    return RunbookFacts(
        path=str(entry.get("path", "")), sha256=entry.get("sha256"), read=str(entry.get("read", "")), data=entry["data"]
    )
