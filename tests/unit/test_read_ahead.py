"""The read-ahead hashing reader: the bytes and the hash of a real file and a real pipe."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from cutover.ssh.read_ahead import HashingReadAhead


def test_hands_out_every_byte_in_order_and_hashes_them(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    got = []
    with path.open("rb") as source, HashingReadAhead(source, read_size=256 * 1024) as reader:
        while chunk := reader.read(100_000):
            assert len(chunk) <= 100_000
            got.append(chunk)
        assert reader.read(10) == b""
        assert reader.sha256() == hashlib.sha256(data).hexdigest()
        assert reader.bytes_read == len(data)
    assert b"".join(got) == data


def test_continues_a_given_hash() -> None:
    """An upload resumed at an offset goes on from the hash of the bytes before it."""
    prefix, rest = b"a" * 1000, os.urandom(5000)
    with HashingReadAhead(io.BytesIO(rest), digest=hashlib.sha256(prefix)) as reader:
        assert b"".join(iter(lambda: reader.read(), b"")) == rest
        assert reader.sha256() == hashlib.sha256(prefix + rest).hexdigest()


class _FailingSource(io.RawIOBase):
    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > 2:
            raise OSError("disk gone")
        buffer[:10] = b"0123456789"
        return 10


def test_a_failing_source_fails_the_reader_after_the_bytes_before_it() -> None:
    with HashingReadAhead(_FailingSource(), read_size=10) as reader:  # type: ignore[arg-type]
        assert reader.read() + reader.read() == b"01234567890123456789"
        with pytest.raises(OSError, match="disk gone"):
            reader.read()
        assert reader.read() == b""


def test_close_stops_a_worker_that_waits_for_a_slow_reader() -> None:
    producer = subprocess.Popen(["head", "-c", str(64 * 1024 * 1024), "/dev/zero"], stdout=subprocess.PIPE)
    assert producer.stdout is not None
    try:
        reader = HashingReadAhead(producer.stdout, read_size=64 * 1024, depth=2)
        assert reader.read(10) == b"\0" * 10
        start = time.monotonic()
        reader.close()
        assert time.monotonic() - start < 2
        assert not reader._thread.is_alive()
    finally:
        producer.kill()
        producer.wait()
