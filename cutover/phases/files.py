"""Moving an application's files: a resumable SFTP upload to the target host, checked
by sha256 on both ends. The source path is read where the orchestrator runs (for example
the old site's file share, mounted)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog

from cutover.errors import PermanentStepError
from cutover.phases import endpoints
from cutover.runbook.model import Application, Runbook

log = structlog.get_logger()


def move_files(runbook: Runbook, app: Application, name: str) -> dict[str, Any]:
    from cutover.ssh.target import connect
    from cutover.ssh.upload import upload_file, upload_tree

    moved = app.files_entry(name)
    source = Path(moved.source_path)
    if not source.exists():
        raise PermanentStepError(f"{app.name}/files/{name}: {source} does not exist on the orchestrator")
    start = time.perf_counter()
    client = connect(endpoints.ssh(runbook, moved.to))
    try:
        upload = upload_tree if source.is_dir() else upload_file
        result = upload(client, str(source), moved.target_path)
    finally:
        client.close()
    from dataclasses import asdict, is_dataclass

    outcome = asdict(result) if is_dataclass(result) else dict(result)
    outcome["duration_s"] = round(time.perf_counter() - start, 2)
    log.info("files_moved", files=f"{app.name}/{name}", **{k: v for k, v in outcome.items() if k != "files"})
    return outcome
