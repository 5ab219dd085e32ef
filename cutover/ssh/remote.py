"""Running one command on a remote host and waiting for its exit status."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

import paramiko
import structlog

from cutover.ssh import remote_process

log = structlog.get_logger()


@dataclass(frozen=True)
class RemoteResult:
    """How a remote command ended: its exit status and the last few KB of its output."""

    exit_status: int
    stdout_tail: str
    stderr_tail: str
    duration_s: float


def run_remote(
    client: paramiko.SSHClient,
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    secret_files: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
) -> RemoteResult:
    """Run ``command`` (a shell command line) on the host ``client`` is connected to.

    The command runs in a process group of its own; the whole group is killed when
    ``timeout_s`` passes (TransientStepError), when ``cancel`` is set (PermanentStepError)
    or when the connection breaks (TransientStepError; a watchdog on the remote host kills
    it). ``env`` values reach the command's environment without appearing on any command
    line or log line; ``secret_files`` (e.g. ``{"PGPASSFILE": line}``) become 0600 files
    that live as long as the command, named by those variables. ``stdin``, when given, is sent to the command followed by EOF;
    otherwise the command's stdin is empty. Each stderr line is logged (``remote_output``).

    A non-zero exit status is returned, not raised: the caller knows what it expects.
    """
    label = remote_process.describe(command)
    address = remote_process.address_of(client)

    def stderr_line(line: str) -> None:
        log.info("remote_output", address=address, program=label, stream="stderr", line=line)

    outcome = remote_process.execute(
        client,
        command,
        env=env,
        secret_files=secret_files,
        stdin=stdin,
        timeout_s=timeout_s,
        cancel=cancel,
        on_stderr_line=stderr_line,
    )
    log.info("remote_finished", address=address, program=label, exit_status=outcome.exit_status, duration_s=outcome.duration_s)
    return RemoteResult(
        exit_status=outcome.exit_status,
        stdout_tail=outcome.stdout_tail,
        stderr_tail=outcome.stderr_tail,
        duration_s=outcome.duration_s,
    )
