"""Resumable SFTP upload of a file, or of a directory (a ``pg_dump -Fd`` dump), checked by sha256.

A file is written to ``REMOTE.part`` and renamed to ``REMOTE`` only after the remote sha256
of the whole ``.part`` equals the local one, so ``REMOTE`` is either absent or complete and
correct. A later call after a broken connection finds the ``.part``, checks that its bytes
are a prefix of the local file (sha256 of the remote prefix, computed on the remote host,
against the local prefix) and continues from its end; a ``.part`` that is not a prefix
(changed local file, damaged remote bytes) is thrown away and the upload starts over.
A ``REMOTE`` already there with the local sha256 is not sent again.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paramiko
import structlog

from cutover.errors import PermanentStepError, TransientStepError
from cutover.ssh import remote_process

log = structlog.get_logger()

CHUNK_SIZE = 1024 * 1024
PART_SUFFIX = ".part"
MANIFEST = ".cutover-sha256sums"
SFTP_TIMEOUT_S = 60.0
HASH_TIMEOUT_S = 3600.0

Progress = Callable[[int], None]
T = TypeVar("T")


@dataclass(frozen=True)
class UploadResult:
    """One uploaded file. ``bytes_sent`` is what this call sent (0 when the remote file was
    already complete), ``resumed_from`` the offset it started at (``size`` when nothing was
    sent), ``sha256`` the hash both ends agreed on."""

    bytes_sent: int
    resumed_from: int
    size: int
    sha256: str


@dataclass(frozen=True)
class TreeUploadResult:
    """A directory upload: per-file results by path relative to the directory (``/``
    separated), the totals, and the remote path of the manifest (``sha256sum -c`` format)."""

    files: dict[str, UploadResult] = field(default_factory=dict)
    bytes_sent: int = 0
    size: int = 0
    manifest: str = ""


def upload_file(
    client: paramiko.SSHClient,
    local_path: str | os.PathLike[str],
    remote_path: str,
    *,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> UploadResult:
    """Upload ``local_path`` to ``remote_path`` (parent directories are created), resuming
    a partial earlier attempt. ``progress(offset)`` is called after each chunk with the
    number of bytes of the remote file written so far.

    Raises TransientStepError when the connection breaks (call again: it resumes) or when
    the remote bytes do not hash to the local sha256 after the upload (the ``.part`` is then
    removed; call again: it sends the file again), PermanentStepError when a path cannot be
    read or written.
    """
    address = remote_process.address_of(client)
    with _sftp(client, address, remote_path) as sftp:
        return _upload(client, sftp, Path(local_path), remote_path, address, progress, chunk_size)


def upload_tree(
    client: paramiko.SSHClient,
    local_dir: str | os.PathLike[str],
    remote_dir: str,
    *,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> TreeUploadResult:
    """Upload every regular file under ``local_dir`` to the same relative path under
    ``remote_dir``, each with resume and sha256 as in :func:`upload_file`, then write the
    manifest ``remote_dir/.cutover-sha256sums``. ``progress(total)`` gets the running byte
    count over the whole tree. Calling it again after a failure sends only what is missing.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise PermanentStepError(f"{root} is not a directory")
    relative = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST
    )
    address = remote_process.address_of(client)
    files: dict[str, UploadResult] = {}
    done = 0
    with _sftp(client, address, remote_dir) as sftp:
        for rel in relative:

            def tree_progress(offset: int, _base: int = done) -> None:
                if progress is not None:
                    progress(_base + offset)

            result = _upload(client, sftp, root / rel, posixpath.join(remote_dir, rel), address, tree_progress, chunk_size)
            files[rel] = result
            done += result.size
        manifest = posixpath.join(remote_dir, MANIFEST)
        body = "".join(f"{files[rel].sha256}  {rel}\n" for rel in relative).encode()
        _guard(client, address, manifest, lambda: _write_small(sftp, manifest, body))
    result = TreeUploadResult(
        files=files,
        bytes_sent=sum(f.bytes_sent for f in files.values()),
        size=sum(f.size for f in files.values()),
        manifest=manifest,
    )
    log.info(
        "tree_uploaded", address=address, remote_dir=remote_dir, files=len(files), bytes_sent=result.bytes_sent, size=result.size
    )
    return result


# --- one file --------------------------------------------------------------------------


def _upload(
    client: paramiko.SSHClient,
    sftp: paramiko.SFTPClient,
    local: Path,
    remote_path: str,
    address: str,
    progress: Progress | None,
    chunk_size: int,
) -> UploadResult:
    try:
        size = local.stat().st_size
    except OSError as exc:
        raise PermanentStepError(f"cannot read {local}: {exc.strerror or exc}") from exc
    part = remote_path + PART_SUFFIX

    def attempt() -> UploadResult:
        _makedirs(sftp, posixpath.dirname(remote_path))
        final = _size_of(sftp, remote_path)
        partial = _size_of(sftp, part)
        # One local pass gives the full hash and, if a .part may be resumed, its prefix hash.
        prefix_at = partial if partial is not None and 0 < partial <= size else None
        local_hash, prefix_hash = _local_hashes(local, prefix_at)
        if final == size and _remote_sha256(client, remote_path) == local_hash:
            log.info("upload_already_complete", address=address, path=remote_path, size=size)
            return UploadResult(bytes_sent=0, resumed_from=size, size=size, sha256=local_hash)
        offset = 0
        if prefix_at is not None and _remote_sha256(client, part, limit=prefix_at) == prefix_hash:
            offset = prefix_at
            log.info("upload_resumed", address=address, path=remote_path, offset=offset, total=size)
        elif partial is not None:
            log.warning("upload_restarted", address=address, path=remote_path, partial=partial, total=size)
        sent = _send(sftp, local, part, offset, size, chunk_size, progress)
        remote_hash = _remote_sha256(client, part)
        if remote_hash != local_hash:
            sftp.remove(part)
            # damaged on the way: the next attempt sends the file again from the start
            raise TransientStepError(
                f"{remote_path} on {address}: uploaded bytes hash to {remote_hash}, the local file to {local_hash}; "
                "the partial file was removed"
            )
        sftp.posix_rename(part, remote_path)
        log.info("upload_finished", address=address, path=remote_path, bytes_sent=sent, resumed_from=offset, size=size)
        return UploadResult(bytes_sent=sent, resumed_from=offset, size=size, sha256=local_hash)

    return _guard(client, address, remote_path, attempt)


def _send(
    sftp: paramiko.SFTPClient,
    local: Path,
    part: str,
    offset: int,
    size: int,
    chunk_size: int,
    progress: Progress | None,
) -> int:
    sent = 0
    with local.open("rb") as source, sftp.open(part, "r+b" if offset else "wb") as target:
        # Pipelined writes do not wait for each ack; errors surface at close at the latest.
        target.set_pipelined(True)
        source.seek(offset)
        target.seek(offset)
        while offset + sent < size:
            chunk = source.read(min(chunk_size, size - offset - sent))
            if not chunk:
                raise PermanentStepError(f"{local} shrank while it was being uploaded")
            target.write(chunk)
            sent += len(chunk)
            if progress is not None:
                progress(offset + sent)
    return sent


def _local_hashes(path: Path, prefix: int | None) -> tuple[str, str | None]:
    """The sha256 of the whole file and, when ``prefix`` is given, of its first ``prefix`` bytes."""
    whole = hashlib.sha256()
    prefix_hash: str | None = None
    with path.open("rb") as source:
        if prefix is not None:
            remaining = prefix
            while remaining:
                chunk = source.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                whole.update(chunk)
                remaining -= len(chunk)
            prefix_hash = whole.copy().hexdigest() if remaining == 0 else None
        for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
            whole.update(chunk)
    return whole.hexdigest(), prefix_hash


def _remote_sha256(client: paramiko.SSHClient, path: str, limit: int | None = None) -> str | None:
    """The sha256 of the file (or of its first ``limit`` bytes) computed on the remote host;
    None when it cannot be read."""
    quoted = shlex.quote(path)
    command = f"head -c {int(limit)} < {quoted} | sha256sum" if limit is not None else f"sha256sum < {quoted}"
    outcome = remote_process.execute(client, command, timeout_s=HASH_TIMEOUT_S, label="sha256sum")
    words = outcome.stdout_tail.split()
    if outcome.exit_status != 0 or not words or len(words[0]) != 64:
        return None
    return words[0]


# --- SFTP plumbing -----------------------------------------------------------------------


class _sftp:
    """An SFTP session for the duration of a ``with``; opening failures translated."""

    def __init__(self, client: paramiko.SSHClient, address: str, path: str) -> None:
        self.client, self.address, self.path = client, address, path
        self.sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> paramiko.SFTPClient:
        try:
            self.sftp = _guard(self.client, self.address, self.path, self.client.open_sftp)
        except TransientStepError:
            transport = self.client.get_transport()
            if transport is not None and transport.is_active():
                # The connection is fine but the server closed the channel: no sftp subsystem.
                raise PermanentStepError(f"SFTP is not available on {self.address} (no sftp subsystem?)") from None
            raise
        channel = self.sftp.get_channel()
        if channel is not None:
            # A silent peer must end in an error (a retry), not in a hang.
            channel.settimeout(SFTP_TIMEOUT_S)
        return self.sftp

    def __exit__(self, *exc: object) -> None:
        if self.sftp is not None:
            try:
                self.sftp.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass


def _guard(client: paramiko.SSHClient, address: str, path: str, action: Callable[[], T]) -> T:
    """Run ``action``, translating paramiko/socket errors: transient when the connection
    is gone or timed out, permanent when the server refused the operation on ``path``."""
    try:
        return action()
    except (TransientStepError, PermanentStepError):
        raise
    except TimeoutError as exc:
        raise TransientStepError(f"upload of {path} to {address} timed out") from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:
        transport = client.get_transport()
        if (
            transport is None
            or not transport.is_active()
            or isinstance(exc, (EOFError, ConnectionError, paramiko.SSHException))
            or "closed" in str(exc).lower()
        ):
            raise TransientStepError(f"SSH connection to {address} broke while uploading {path}") from exc
        # What is left are SFTP status replies: the server refused this operation.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PermanentStepError(f"upload of {path} to {address} refused: {reason}") from exc


def _size_of(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        attrs = sftp.stat(path)
    except FileNotFoundError:
        return None
    if attrs.st_mode is not None and not stat.S_ISREG(attrs.st_mode):
        raise PermanentStepError(f"{path} exists on the remote host and is not a regular file")
    return attrs.st_size or 0


def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    if directory in ("", "/", "."):
        return
    try:
        if stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
            return
        raise PermanentStepError(f"{directory} exists on the remote host and is not a directory")
    except FileNotFoundError:
        pass
    _makedirs(sftp, posixpath.dirname(directory.rstrip("/")))
    try:
        sftp.mkdir(directory)
    except OSError:
        # Created meanwhile by a parallel upload is fine; anything else shows up on use.
        if not stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
            raise


def _write_small(sftp: paramiko.SFTPClient, path: str, body: bytes) -> None:
    with sftp.open(path + PART_SUFFIX, "wb") as target:
        target.write(body)
    sftp.posix_rename(path + PART_SUFFIX, path)
