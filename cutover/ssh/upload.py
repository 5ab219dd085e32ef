"""Resumable upload of a file, or of a directory (a ``pg_dump -Fd`` dump), checked by sha256.

A file is written to ``REMOTE.part`` and renamed to ``REMOTE`` only after the remote sha256
of the whole ``.part`` equals the local one, so ``REMOTE`` is either absent or complete and
correct. A later call after a broken connection finds the ``.part``, checks that its bytes
are a prefix of the local file (sha256 of the remote prefix, computed on the remote host,
against the local prefix) and continues from its end; a ``.part`` that is not a prefix
(changed local file, damaged remote bytes) is thrown away and the upload starts over.
A ``REMOTE`` already there with the local sha256 is not sent again.

The bytes go over an exec channel (an OpenSSH one where it can carry them, see
:mod:`cutover.ssh.openssh`) into a small appending program on the remote host
(:func:`cutover.ssh.remote_sha256.append_command`), which hashes the whole ``.part`` as it
writes it; file operations (stat, mkdir, rename, remove) go over SFTP. Why not SFTP writes:
paramiko's SFTP client sends 32 KiB requests that each take two SSH packets and queues
their acknowledgements in Python, at about a third of scp's speed here, where a plain
channel runs near it (docs/benchmarks.md). Locally the file is read and hashed in a thread
of its own while the sending thread encrypts, and the local and remote hashes of an
existing file are taken at the same time.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paramiko
import structlog

from cutover.errors import PermanentStepError, TransientStepError
from cutover.ssh import remote_process
from cutover.ssh.openssh import MIN_BYTES, Carrier
from cutover.ssh.read_ahead import HashingReadAhead
from cutover.ssh.remote_sha256 import append_command, file_sha256, mark_in

log = structlog.get_logger()

CHUNK_SIZE = 1024 * 1024
PART_SUFFIX = ".part"
MANIFEST = ".cutover-sha256sums"
SFTP_TIMEOUT_S = 60.0
SEND_TIMEOUT_S = 6 * 3600.0  # one file's bytes; a silent peer is caught by keepalives well before

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
    remote_python: bool = True,
    openssh: bool | None = None,
    private: bool = False,
    confine_to: str | None = None,
) -> UploadResult:
    """Upload ``local_path`` to ``remote_path`` (parent directories are created), resuming
    a partial earlier attempt. ``progress(offset)`` is called after each chunk with the
    number of bytes of the remote file written so far. ``remote_python=False`` makes the
    remote side append with ``cat`` and hash the file afterwards even where ``python3`` is
    installed (which appends and hashes in one pass). The bytes go through an OpenSSH
    carrier (:mod:`cutover.ssh.openssh`) where one works and ``openssh`` is True, or None and
    the file has at least :data:`cutover.ssh.openssh.MIN_BYTES` to send; else over
    paramiko's channel.

    ``private``: the file is made 0600 and the directories created for it 0700 (a dump:
    the estate's data). ``confine_to``: a root directory on the remote host that
    ``remote_path`` must be under, and no symbolic link may be met on the way from it to the
    file (or its ``.part``): a link planted there would carry the write out of the root.

    Raises TransientStepError when the connection breaks (call again: it resumes) or when
    the remote bytes do not hash to the local sha256 after the upload (the ``.part`` is then
    removed; call again: it sends the file again), PermanentStepError when a path cannot be
    read or written, or leaves ``confine_to``.
    """
    address = remote_process.address_of(client)
    options = _Options(private, confine_to)
    with _sftp(client, address, remote_path) as sftp, _LazyCarrier(client, openssh) as carrier:
        return _upload(
            client, sftp, Path(local_path), remote_path, address, progress, chunk_size, remote_python, carrier, options
        )


def upload_tree(
    client: paramiko.SSHClient,
    local_dir: str | os.PathLike[str],
    remote_dir: str,
    *,
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
    remote_python: bool = True,
    openssh: bool | None = None,
    private: bool = False,
    confine_to: str | None = None,
) -> TreeUploadResult:
    """Upload every regular file under ``local_dir`` to the same relative path under
    ``remote_dir``, each with resume and sha256 as in :func:`upload_file` (``private`` and
    ``confine_to`` too), then write the manifest ``remote_dir/.cutover-sha256sums``.
    ``progress(total)`` gets the running byte count over the whole tree. Calling it again
    after a failure sends only what is missing.
    """
    options = _Options(private, confine_to)
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
    with _sftp(client, address, remote_dir) as sftp, _LazyCarrier(client, openssh) as carrier:
        for rel in relative:

            def tree_progress(offset: int, _base: int = done) -> None:
                if progress is not None:
                    progress(_base + offset)

            one = _upload(
                client,
                sftp,
                root / rel,
                posixpath.join(remote_dir, rel),
                address,
                tree_progress,
                chunk_size,
                remote_python,
                carrier,
                options,
            )
            files[rel] = one
            done += one.size
        manifest = posixpath.join(remote_dir, MANIFEST)
        body = "".join(f"{files[rel].sha256}  {rel}\n" for rel in relative).encode()
        if confine_to is not None:
            _guard(client, address, manifest, lambda: _check_confined(sftp, confine_to, manifest))
        _guard(client, address, manifest, lambda: _write_small(sftp, manifest, body, private))
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
    remote_python: bool,
    carrier: _LazyCarrier,
    options: _Options,
) -> UploadResult:
    try:
        size = local.stat().st_size
    except OSError as exc:
        raise PermanentStepError(f"cannot read {local}: {exc.strerror or exc}") from exc
    part = remote_path + PART_SUFFIX

    def attempt() -> UploadResult:
        if options.confine_to is not None:
            _check_confined(sftp, options.confine_to, remote_path)
        _makedirs(sftp, posixpath.dirname(remote_path), 0o700 if options.private else 0o777)
        final = _size_of(sftp, remote_path)
        if final == size:
            local_hash, remote_hash = _both_hashes(client, local, remote_path, None)
            if local_hash.hexdigest() == remote_hash:
                log.info("upload_already_complete", address=address, path=remote_path, size=size)
                return UploadResult(bytes_sent=0, resumed_from=size, size=size, sha256=remote_hash)
        partial = _size_of(sftp, part)
        offset, digest = 0, hashlib.sha256()
        if partial is not None and 0 < partial <= size:
            # A .part may be resumed if its bytes are the local file's first bytes.
            prefix_hash, remote_prefix = _both_hashes(client, local, part, partial)
            if prefix_hash.hexdigest() == remote_prefix:
                offset, digest = partial, prefix_hash
                log.info("upload_resumed", address=address, path=remote_path, offset=offset, total=size)
        if partial is not None and offset == 0:
            log.warning("upload_restarted", address=address, path=remote_path, partial=partial, total=size)
        sent, sent_hash, received_hash = _send(
            client, local, part, offset, size, digest, chunk_size, progress, address, remote_path, remote_python, carrier,
            options.private,
        )  # fmt: skip
        if received_hash != sent_hash:
            _remove(sftp, part)
            # damaged on the way: the next attempt sends the file again from the start
            raise TransientStepError(
                f"{remote_path} on {address}: uploaded bytes hash to {received_hash}, the local file to {sent_hash}; "
                "the partial file was removed"
            )
        if options.private:
            sftp.chmod(part, 0o600)  # a .part left by an older attempt may have been made otherwise
        sftp.posix_rename(part, remote_path)
        log.info("upload_finished", address=address, path=remote_path, bytes_sent=sent, resumed_from=offset, size=size)
        return UploadResult(bytes_sent=sent, resumed_from=offset, size=size, sha256=sent_hash)

    return _guard(client, address, remote_path, attempt)


def _send(
    client: paramiko.SSHClient,
    local: Path,
    part: str,
    offset: int,
    size: int,
    digest: hashlib._Hash,
    chunk_size: int,
    progress: Progress | None,
    address: str,
    remote_path: str,
    remote_python: bool,
    carrier: _LazyCarrier,
    private: bool = False,
) -> tuple[int, str, str | None]:
    """Send ``local`` from ``offset`` on into ``part`` (kept up to ``offset``); ``digest``
    holds the hash of the local bytes before ``offset``. Returns the bytes sent, the local
    sha256 and the one the remote side computed of the whole ``.part`` (None: none came)."""
    sent = 0

    def on_chunk(chunk: bytes) -> None:
        nonlocal sent
        sent += len(chunk)
        if progress is not None:
            progress(offset + sent)

    with local.open("rb") as source:
        source.seek(offset)
        with HashingReadAhead(source, read_size=chunk_size, digest=digest) as reader:
            try:
                outcome = remote_process.execute(
                    client,
                    ("umask 077; " if private else "") + append_command(part, offset, prefer_python=remote_python),
                    stdin=reader,  # type: ignore[arg-type]  # a file object in all but name
                    timeout_s=SEND_TIMEOUT_S,
                    on_chunk=on_chunk,
                    label="upload",
                    carrier=carrier.get(size - offset),
                )
            except TransientStepError as exc:
                raise TransientStepError(f"SSH connection to {address} broke while uploading {remote_path}: {exc}") from exc
            local_hash, read = reader.sha256(), reader.bytes_read
    if outcome.exit_status == 3:
        # The .part got shorter than the offset checked a moment ago: look again on retry.
        raise TransientStepError(f"{part} on {address} changed while the upload resumed; it is looked at again on retry")
    if outcome.exit_status != 0:
        raise PermanentStepError(
            f"upload of {remote_path} to {address} failed (exit status {outcome.exit_status}): {outcome.stderr_tail.strip()[-300:]}"
        )
    if read != size - offset:
        raise PermanentStepError(f"{local} changed size while it was being uploaded")
    remote_hash = None
    for line in outcome.stdout_tail.splitlines():
        _, mark = mark_in(line)
        if mark is not None and mark != "-":
            remote_hash = mark
    return sent, local_hash, remote_hash


class _LazyCarrier:
    """The OpenSSH carrier of one upload call, set up (and probed) when the first bytes are
    to go: an upload that finds everything in place needs none."""

    def __init__(self, client: paramiko.SSHClient, wanted: bool | None) -> None:
        self.client, self.wanted = client, wanted
        self.carrier: Carrier | None = None
        self.tried = False

    def get(self, size: int) -> Carrier | None:
        """The carrier for ``size`` bytes to send: set up for the first big enough file,
        then used for every file after it."""
        if not self.tried and (self.wanted or (self.wanted is None and size >= MIN_BYTES)):
            self.tried = True
            self.carrier = Carrier.for_client(self.client)
        return self.carrier

    def __enter__(self) -> _LazyCarrier:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.carrier is not None:
            self.carrier.close()


def _both_hashes(client: paramiko.SSHClient, local: Path, remote: str, limit: int | None) -> tuple[hashlib._Hash, str | None]:
    """The sha256 of ``local`` (or of its first ``limit`` bytes), as a hash object that can
    go on, and the remote one, taken at the same time (one on each host)."""
    remote_hash: list[str | None] = [None]
    failure: list[BaseException] = []

    def ask() -> None:
        try:
            remote_hash[0] = file_sha256(client, remote, limit=limit)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    asking = threading.Thread(target=ask, name="cutover-remote-sha256", daemon=True)
    asking.start()
    try:
        local_hash = _local_hash(local, limit)
    finally:
        asking.join()
    if failure:
        raise failure[0]
    return local_hash, remote_hash[0]


def _local_hash(path: Path, limit: int | None) -> hashlib._Hash:
    digest = hashlib.sha256()
    remaining = path.stat().st_size if limit is None else limit
    with path.open("rb") as source:
        while remaining > 0:
            chunk = source.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


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


@dataclass(frozen=True)
class _Options:
    private: bool = False
    confine_to: str | None = None


def _check_confined(sftp: paramiko.SFTPClient, root: str, path: str) -> None:
    """PermanentStepError unless ``path`` is under ``root`` and no symbolic link lies on the
    way from ``root`` to it or its ``.part`` (what does not exist yet is created by us, as
    directories and files, never as links). ``root`` itself may be a link: the site
    declared it."""
    root = root.rstrip("/") or "/"
    relative = posixpath.relpath(path, root)
    if path != posixpath.normpath(path) or relative == "." or relative.startswith("../") or relative == "..":
        raise PermanentStepError(f"{path} is not under the declared root {root}")
    current = root
    parts = relative.split("/")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        for name in (part, part + PART_SUFFIX) if last else (part,):
            candidate = posixpath.join(current, name)
            try:
                mode = sftp.lstat(candidate).st_mode or 0
            except FileNotFoundError:
                if not last:
                    return  # the rest does not exist yet: we create it
                continue
            if stat.S_ISLNK(mode):
                raise PermanentStepError(
                    f"{candidate} on the remote host is a symbolic link: refusing to follow it out of the declared root {root}"
                )
        current = posixpath.join(current, part)


def _makedirs(sftp: paramiko.SFTPClient, directory: str, mode: int = 0o777) -> None:
    if directory in ("", "/", "."):
        return
    try:
        if stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
            return
        raise PermanentStepError(f"{directory} exists on the remote host and is not a directory")
    except FileNotFoundError:
        pass
    _makedirs(sftp, posixpath.dirname(directory.rstrip("/")), mode)
    try:
        sftp.mkdir(directory, mode)
        if mode != 0o777:
            sftp.chmod(directory, mode)  # mkdir's mode passes through the server's umask; ours is exact
    except OSError:
        # Created meanwhile by a parallel upload is fine; anything else shows up on use.
        if not stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
            raise


def _remove(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except FileNotFoundError:
        pass


def _write_small(sftp: paramiko.SFTPClient, path: str, body: bytes, private: bool = False) -> None:
    with sftp.open(path + PART_SUFFIX, "wb") as target:
        if private:
            target.chmod(0o600)
        target.write(body)
    sftp.posix_rename(path + PART_SUFFIX, path)
