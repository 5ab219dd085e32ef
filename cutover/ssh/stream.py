"""Piping a local byte stream into a remote command, with a sha256 taken on both ends.

Used as ``pg_dump -Fc | ssh | pg_restore``: no intermediate file on either side. On the
remote host the bytes go through ``tee`` into two FIFOs, one read by the command and one
by ``sha256sum``; the hash comes back as the last stderr line (``cutover-sha256 HEX``),
so the command's own stdout and stderr pass untouched. Only POSIX sh, ``mktemp``,
``mkfifo``, ``tee`` and ``sha256sum`` are needed there (coreutils; no bash, no python).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import paramiko
import structlog

from cutover.errors import PermanentStepError
from cutover.ssh import remote_process

log = structlog.get_logger()

_HASH_MARK = re.compile(r"cutover-sha256 ([0-9a-f]{64}|-)$")

# $1: the command. The FIFOs are opened by the shell before tee runs, so neither reader
# blocks forever; when the command stops reading early, tee dies of SIGPIPE, sha256sum
# sees EOF, and the hash covers only what the command was given: a command that exits 0
# without reading everything shows up as a hash mismatch.
_STREAM = r"""d=$(mktemp -d) || exit 125
trap 'rm -rf "$d"' EXIT
trap 'exit 143' HUP INT TERM
mkfifo "$d/hash" "$d/data" || exit 125
sha256sum < "$d/hash" > "$d/sum" &
h=$!
sh -c "$1" < "$d/data" &
c=$!
tee "$d/hash" > "$d/data"
wait "$c"
rc=$?
wait "$h"
s=$(cut -d' ' -f1 "$d/sum")
printf 'cutover-sha256 %s\n' "${s:--}" >&2
exit "$rc"
"""


@dataclass(frozen=True)
class StreamResult:
    """What went through: byte count, the sha256 of what we sent and of what the remote
    side received (None when it reported none), and the remote command's exit status."""

    bytes: int
    sha256_local: str
    sha256_remote: str | None
    exit_status: int


def stream_to_remote(
    client: paramiko.SSHClient,
    source: BinaryIO,
    remote_command: str,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> StreamResult:
    """Send everything readable from ``source`` to ``remote_command``'s stdin, then EOF.

    ``source`` is any readable binary file object (a pipe from a local program, a file).
    ``progress(bytes_sent_so_far)`` is called from a worker thread after each chunk.
    The remote command runs in its own process group, killed on timeout, cancel or a
    broken connection (see :func:`cutover.ssh.remote.run_remote` for the exceptions).

    When the command exits 0 the two sha256s must agree, or PermanentStepError is raised
    (the data was altered or cut short on the way). A non-zero exit status is returned for
    the caller to judge; the hashes are then not compared, since a failing command stops
    reading early. Closing ``source``, and the program behind it, is the caller's job.
    """
    label = remote_process.describe(remote_command)
    address = remote_process.address_of(client)
    digest = hashlib.sha256()
    sent = 0
    remote_hash: list[str] = []

    def on_chunk(chunk: bytes) -> None:
        nonlocal sent
        digest.update(chunk)
        sent += len(chunk)
        if progress is not None:
            progress(sent)

    def on_stderr_line(line: str) -> None:
        match = _HASH_MARK.search(line)
        if match is not None:
            remote_hash.append(match.group(1))
            line = line[: match.start()]
            if not line:
                return
        log.info("remote_output", address=address, program=label, stream="stderr", line=line)

    def on_stdout(data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            log.info("remote_output", address=address, program=label, stream="stdout", line=line)

    command = "sh -c " + shlex.join([_STREAM, "cutover-stream", remote_command])
    outcome = remote_process.execute(
        client,
        command,
        env=env,
        stdin=source,
        timeout_s=timeout_s,
        cancel=cancel,
        on_stdout=on_stdout,
        on_stderr_line=on_stderr_line,
        on_chunk=on_chunk,
        label=label,
    )
    received = remote_hash[-1] if remote_hash and remote_hash[-1] != "-" else None
    result = StreamResult(bytes=sent, sha256_local=digest.hexdigest(), sha256_remote=received, exit_status=outcome.exit_status)
    log.info(
        "stream_finished",
        address=address,
        program=label,
        bytes=sent,
        sha256_local=result.sha256_local,
        sha256_remote=received,
        exit_status=outcome.exit_status,
        duration_s=outcome.duration_s,
    )
    if outcome.exit_status == 0:
        if received is None:
            raise PermanentStepError(f"{label} on {address} reported no sha256 of what it received")
        if received != result.sha256_local:
            raise PermanentStepError(
                f"{label} on {address} received data with sha256 {received}, but {result.sha256_local} was sent ({sent} bytes)"
            )
    return result
