"""A file object that reads and hashes its source in a thread of its own, ahead of the reader.

Sending over SSH (encrypting, in paramiko) and sha256 both want a core; in one thread they
take turns. Here a worker thread reads the source in large chunks and hashes them (hashlib
releases the GIL on large buffers), keeping a few chunks queued, while the sending thread
takes them as they come. The hash covers exactly the bytes handed out, in order.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import BinaryIO

READ_SIZE = 1024 * 1024
DEPTH = 8  # chunks kept ready: 8 MiB at most in memory
_END = b""


class HashingReadAhead:
    """Wraps a readable binary file object: ``read``/``read1`` give its bytes, ``sha256()``
    the hash of everything handed out so far, ``bytes_read`` their count.

    An error while reading the source is raised by ``read`` once the chunks before it are
    handed out. ``close()`` stops the worker (it does not close the source). Use as a
    context manager, or call ``close()``: an abandoned worker would keep the source open.
    """

    def __init__(
        self, source: BinaryIO, *, read_size: int = READ_SIZE, depth: int = DEPTH, digest: hashlib._Hash | None = None
    ) -> None:
        self._source = source
        self._read_size = read_size
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._digest = digest if digest is not None else hashlib.sha256()
        self._stop = threading.Event()
        self._pending = b""
        self._done = False
        self.bytes_read = 0
        self._thread = threading.Thread(target=self._work, name="cutover-read-ahead", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        read = getattr(self._source, "read1", None) or self._source.read
        item: bytes | BaseException
        while not self._stop.is_set():
            try:
                item = read(self._read_size)
            except BaseException as exc:  # handed to the reader, who decides what it means
                item = exc
            else:
                if item:
                    self._digest.update(item)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes (one queued chunk or part of it); ``b""`` at the end."""
        if not self._pending:
            if self._done:
                return _END
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return _END
            self._pending = item
        if size is None or size < 0 or size >= len(self._pending):
            chunk, self._pending = self._pending, b""
        else:
            chunk, self._pending = self._pending[:size], self._pending[size:]
        self.bytes_read += len(chunk)
        return chunk

    read1 = read

    def sha256(self) -> str:
        """The hex sha256 of the bytes read from the source so far (all of them at the end)."""
        return self._digest.hexdigest()

    def close(self) -> None:
        self._stop.set()
        # A worker blocked reading a pipe ends when its writer does; the caller kills that one.
        self._thread.join(timeout=1)

    def __enter__(self) -> HashingReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
