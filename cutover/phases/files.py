"""Moving an application's files: a resumable SFTP upload to the target host, checked
by sha256 on both ends. The source path is read where the orchestrator runs (for example
the old site's file share, mounted).

Both ends are confined to the roots the runbook declares (``sites.X.files_root`` where the
orchestrator reads, ``sites.Y.ssh.files_root`` on the target host): the runbook's paths are
relative and without ``..`` (the loader), and here no symbolic link may lead out: locally
every file read must resolve under the source root, and on the target host no link may lie
between the root and what is written (:func:`cutover.ssh.upload.upload_file`,
``confine_to``). The roots themselves must be writable only by the cutover's users: a
user of the target host who can write into the root could still race a link in between
the check and the write.
"""

from __future__ import annotations

import os
import posixpath
import time
from pathlib import Path

import structlog

from cutover.errors import PermanentStepError
from cutover.phases import endpoints
from cutover.results import FilesResult
from cutover.runbook.model import Application, FileMove, Runbook

log = structlog.get_logger()


def source_path(runbook: Runbook, moved: FileMove, where: str) -> Path:
    """The files entry's source, resolved, after proving that it and everything under it
    stays inside the source site's ``files_root`` (symbolic links followed)."""
    declared = runbook.sites[moved.from_].files_root
    if declared is None:
        raise PermanentStepError(f"{where}: site {moved.from_} declares no files_root")
    root = Path(declared).resolve()
    source = (root / moved.source_path).resolve()
    if not source.is_relative_to(root):
        raise PermanentStepError(f"{where}: {moved.source_path} leads out of {declared} (a symbolic link): refused")
    if not source.exists():
        raise PermanentStepError(f"{where}: {moved.source_path} does not exist under {declared} on the orchestrator")
    if source.is_dir():
        for directory, subdirs, names in os.walk(source):
            for name in [*subdirs, *names]:
                inside = Path(directory, name)
                if not inside.resolve().is_relative_to(root):
                    raise PermanentStepError(f"{where}: {inside.relative_to(root)} is a symbolic link out of {declared}: refused")
    return source


def target_path(runbook: Runbook, moved: FileMove, where: str) -> tuple[str, str]:
    """(root, path) on the target host for the files entry."""
    ssh = runbook.sites[moved.to].ssh
    if ssh is None or ssh.files_root is None:
        raise PermanentStepError(f"{where}: site {moved.to} declares no ssh.files_root")
    root = ssh.files_root.rstrip("/") or "/"
    return root, posixpath.join(root, moved.target_path)


def move_files(runbook: Runbook, app: Application, name: str) -> FilesResult:
    from cutover.ssh.target import connect
    from cutover.ssh.upload import upload_file, upload_tree

    moved = app.files_entry(name)
    where = f"{app.name}/files/{name}"
    source = source_path(runbook, moved, where)
    root, target = target_path(runbook, moved, where)
    start = time.perf_counter()
    client = connect(endpoints.ssh(runbook, moved.to))
    try:
        if source.is_dir():
            tree = upload_tree(client, str(source), target, confine_to=root)
            outcome = FilesResult(size=tree.size, bytes_sent=tree.bytes_sent, files=len(tree.files))
        else:
            one = upload_file(client, str(source), target, confine_to=root)
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
