"""Moving an application's files: a resumable SFTP upload to the target host, checked
by sha256 on both ends. The source path is read where the orchestrator runs (for example
the old site's file share, mounted)."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from cutover.errors import PermanentStepError
from cutover.phases import endpoints
from cutover.results import FilesResult
from cutover.runbook.model import Application, Runbook

log = structlog.get_logger()


def move_files(runbook: Runbook, app: Application, name: str) -> FilesResult:
    from cutover.ssh.target import connect
    from cutover.ssh.upload import upload_file, upload_tree

    moved = app.files_entry(name)
    source = Path(moved.source_path)
    if not source.exists():
        raise PermanentStepError(f"{app.name}/files/{name}: {source} does not exist on the orchestrator")
    start = time.perf_counter()
    client = connect(endpoints.ssh(runbook, moved.to))
    try:
        if source.is_dir():
            tree = upload_tree(client, str(source), moved.target_path)
            outcome = FilesResult(size=tree.size, bytes_sent=tree.bytes_sent, files=len(tree.files))
        else:
            one = upload_file(client, str(source), moved.target_path)
            outcome = FilesResult(size=one.size, bytes_sent=one.bytes_sent, files=1)
    finally:
        client.close()
    outcome = FilesResult(
        size=outcome.size, bytes_sent=outcome.bytes_sent, files=outcome.files, duration_s=round(time.perf_counter() - start, 2)
    )
    log.info(
        "files_moved",
        files=f"{app.name}/{name}",
        size=outcome.size,
        bytes_sent=outcome.bytes_sent,
        count=outcome.files,
        duration_s=outcome.duration_s,
    )
    return outcome
