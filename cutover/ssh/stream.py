"""Piping a local byte stream into a remote command, with a sha256 taken on both ends.

Used as ``pg_dump -Fc | ssh | pg_restore``: no intermediate file on either side. On the
remote host the bytes pass through a hashing copy on their way into the command: Python's
(one process, 1 MiB buffers) where ``python3`` is installed, else ``tee`` into two FIFOs,
one read by the command and one by the hasher (``openssl dgst`` or ``sha256sum``; see
:mod:`cutover.ssh.remote_sha256` for the figures behind the choice). The hash comes back as
the last stderr line (``cutover-sha256 HEX``), so the command's own stdout and stderr pass
untouched. Only POSIX sh, ``mktemp``, ``mkfifo``, ``tee`` and ``sha256sum`` are required
there (coreutils; no bash, no python).

On this side the source is read and hashed in a thread of its own, ahead of the thread that
sends (:class:`cutover.ssh.read_ahead.HashingReadAhead`), so the two overlap; the bytes go
through an ``ssh`` process where one can carry them (:mod:`cutover.ssh.openssh`), else over
paramiko's channel.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

import paramiko
import structlog

from cutover.errors import PermanentStepError
from cutover.ssh import remote_process
from cutover.ssh.openssh import MIN_BYTES, Carrier
from cutover.ssh.read_ahead import HashingReadAhead
from cutover.ssh.remote_sha256 import PASS_THROUGH, SHA256_STDIN, mark_in

log = structlog.get_logger()

PROGRESS_INTERVAL_S = 1.0

# $1: the command, $2: 1 to take python3 where there is one, $3: the Python copy. With
# Python the pipeline's status is the command's, and the copy prints the hash itself.
# Without, the FIFOs are opened by the shell before tee runs, so neither reader
# blocks forever; when the command stops reading early, tee dies of SIGPIPE, sha256sum
# sees EOF, and the hash covers only what the command was given: a command that exits 0
# without reading everything shows up as a hash mismatch.
_STREAM = r"""if [ "$2" = 1 ] && command -v python3 >/dev/null 2>&1; then
  python3 -c "$3" | sh -c "$1"
  exit
fi
d=$(mktemp -d) || exit 125
trap 'rm -rf "$d"' EXIT
trap 'exit 143' HUP INT TERM
mkfifo "$d/hash" "$d/data" || exit 125
{ @@HASHER@@; } < "$d/hash" > "$d/sum" &
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
""".replace("@@HASHER@@", SHA256_STDIN)


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
    secret_files: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    remote_python: bool = True,
    openssh: bool | None = None,
    expected_bytes: int | None = None,
) -> StreamResult:
    """Send everything readable from ``source`` to ``remote_command``'s stdin, then EOF.

    ``source`` is any readable binary file object (a pipe from a local program, a file).
    ``env`` and ``secret_files`` reach the command as in :func:`cutover.ssh.remote_process.execute`.
    ``progress(bytes_sent_so_far)`` is called from a worker thread at most about once a
    second while bytes go out, and once more with the total at the end.
    ``remote_python=False`` makes the remote side use the coreutils copy (``tee`` and two
    FIFOs) even where ``python3`` is installed. The bytes go through an OpenSSH carrier
    (:mod:`cutover.ssh.openssh`) where one works and either ``openssh`` is True or it is
    None and ``expected_bytes`` (what the caller expects to send, e.g. the database size) is
    at least :data:`cutover.ssh.openssh.MIN_BYTES`; else over paramiko's channel.
    The remote command runs in its own process group, killed on timeout, cancel or a
    broken connection (see :func:`cutover.ssh.remote.run_remote` for the exceptions).

    When the command exits 0 the two sha256s must agree, or PermanentStepError is raised
    (the data was altered or cut short on the way). A non-zero exit status is returned for
    the caller to judge; the hashes are then not compared, since a failing command stops
    reading early. Closing ``source``, and the program behind it, is the caller's job.
    """
    label = remote_process.describe(remote_command)
    address = remote_process.address_of(client)
    sent = 0
    reported_at = time.monotonic()
    remote_hash: list[str] = []

    def on_chunk(chunk: bytes) -> None:
        nonlocal sent, reported_at
        sent += len(chunk)
        if progress is not None and time.monotonic() - reported_at >= PROGRESS_INTERVAL_S:
            reported_at = time.monotonic()
            progress(sent)

    def on_stderr_line(line: str) -> None:
        line, mark = mark_in(line)
        if mark is not None:
            remote_hash.append(mark)
            if not line:
                return
        log.info("remote_output", address=address, program=label, stream="stderr", line=line)

    def on_stdout(data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            log.info("remote_output", address=address, program=label, stream="stdout", line=line)

    command = "sh -c " + shlex.join([_STREAM, "cutover-stream", remote_command, "1" if remote_python else "0", PASS_THROUGH])
    big = expected_bytes is not None and expected_bytes >= MIN_BYTES
    carrier = Carrier.for_client(client) if openssh or (openssh is None and big) else None
    with HashingReadAhead(source) as reader, carrier or contextlib.nullcontext():
        outcome = remote_process.execute(
            client,
            command,
            env=env,
            secret_files=secret_files,
            stdin=reader,  # type: ignore[arg-type]  # a file object in all but name
            timeout_s=timeout_s,
            cancel=cancel,
            on_stdout=on_stdout,
            on_stderr_line=on_stderr_line,
            on_chunk=on_chunk,
            label=label,
            carrier=carrier,
        )
        # Everything read from the source, sent or not: a remote side that got less differs.
        local_hash = reader.sha256()
    if progress is not None:
        progress(sent)
    received = remote_hash[-1] if remote_hash and remote_hash[-1] != "-" else None
    result = StreamResult(bytes=sent, sha256_local=local_hash, sha256_remote=received, exit_status=outcome.exit_status)
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
