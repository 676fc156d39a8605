"""Local non-seekable sources follow the live rules (issue #14): a FIFO, ``-`` for stdin,
a character device."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kithara_io
from kithara_io import StreamClosedError

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = os.urandom(300_000)


class FifoWriter:
    """Writes to a FIFO from a thread: ``first`` bytes, then (once ``go`` is set) the rest."""

    def __init__(self, path: Path, data: bytes, first: int) -> None:
        self.go = threading.Event()
        self.error: "BaseException | None" = None
        self._thread = threading.Thread(target=self._run, args=(path, data, first))
        self._thread.start()

    def _run(self, path: Path, data: bytes, first: int) -> None:
        try:
            with open(path, "wb", buffering=0) as f:  # blocks until the reader opens
                f.write(data[:first])
                if not self.go.wait(10):
                    return
                for i in range(first, len(data), 7000):
                    f.write(data[i : i + 7000])
        except BrokenPipeError as exc:
            self.error = exc

    def join(self) -> None:
        self.go.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "audio.fifo"
    os.mkfifo(path)
    return path


def test_fifo_reads_like_a_pipe_then_becomes_a_file(fifo: Path, no_leaks):
    writer = FifoWriter(fifo, PAYLOAD, first=10_000)
    try:
        with kithara_io.open(str(fifo)) as f:
            assert f.size is None and not f.seekable()
            first = f.read(50_000)
            assert first == PAYLOAD[: len(first)] and 0 < len(first) <= 10_000  # what was written
            with pytest.raises(io.UnsupportedOperation):
                f.seek(0)
            writer.go.set()
            rest = f.read()  # to the end: the writer closes
            assert first + rest == PAYLOAD
            assert f.seekable() and f.size == len(PAYLOAD)  # the end is proven, all held
            f.seek(1234)
            assert f.read(100) == PAYLOAD[1234:1334]
    finally:
        writer.join()


def test_close_while_a_fifo_read_waits(fifo: Path, no_leaks):
    writer = FifoWriter(fifo, PAYLOAD, first=1000)
    f = kithara_io.open(str(fifo))
    assert f.read(1000) == PAYLOAD[:1000]
    failures: list = []

    def reader() -> None:
        try:
            f.read(1)  # the writer is silent: waits
        except (StreamClosedError, ValueError) as exc:
            failures.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    started = time.monotonic()
    f.close()
    assert time.monotonic() - started < 1.0
    t.join(5)
    assert failures and not t.is_alive()
    writer.join()  # the rest hits a closed pipe
    assert isinstance(writer.error, BrokenPipeError)


def test_stdin_dash(tmp_path: Path):
    code = (
        "import hashlib, os, kithara_io\n"
        "f = kithara_io.open('-')\n"
        "live = (f.size, f.seekable())\n"
        "data = f.read()\n"
        "print(live, hashlib.sha256(data).hexdigest(), f.seekable(), f.size)\n"
        "f.close()\n"
        "os.fstat(0)  # stdin itself is still open\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=PAYLOAD, capture_output=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == [
        "(None,", "False)", hashlib.sha256(PAYLOAD).hexdigest(), "True", str(len(PAYLOAD))
    ]


def test_character_device(no_leaks):
    with kithara_io.open("/dev/zero") as f:
        assert f.size is None and not f.seekable()
        got = bytearray()
        while len(got) < 1 << 20:
            got += f.read(1 << 16)
        assert got == bytes(len(got))
