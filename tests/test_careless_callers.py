"""Careless callers and lying servers (issue #18): one stream read from several threads,
``read()`` on a server that claims 2 GiB, absurd lengths, and paths that are not files."""

from __future__ import annotations

import io
import os
import random
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

import kithara_io
from kithara_io import InvalidResponseError, Retry, StreamError
from tests.servers import THREAD_PREFIX
from tests.servers.faults import BadContentRange

REPO = Path(__file__).resolve().parent.parent
SIZE = 8 * 1024 * 1024
BLOCK = 8  # every 8-byte block of the test file holds its own offset


def numbered(size: int) -> bytes:
    return b"".join(struct.pack("<Q", off) for off in range(0, size, BLOCK))


@pytest.fixture(scope="module")
def numbered_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("numbered") / "numbered.bin"
    path.write_bytes(numbered(SIZE))
    return path


def read_from_threads(f, threads: int = 4) -> List[bytes]:
    """Every chunk that ``threads`` threads got reading ``f`` to its end, each with its own
    sequence of read sizes (multiples of BLOCK, so chunks start on block boundaries)."""
    chunks: List[bytes] = []
    lock = threading.Lock()
    failures: List[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(SIZE // BLOCK + 1):  # bounded: at least one byte per read until EOF
                data = f.read(BLOCK * rng.choice([1, 3, 64, 512, 8192]))
                if not data:
                    return
                with lock:
                    chunks.append(data)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not failures, failures
    return chunks


def offsets(chunks: List[bytes]) -> List[int]:
    found = []
    for chunk in chunks:
        assert len(chunk) % BLOCK == 0, len(chunk)  # a read never splits a block: atomic
        found.extend(off for (off,) in struct.iter_unpack("<Q", chunk))
    return sorted(found)


@pytest.mark.timeout(60)
def test_four_threads_reading_one_file_get_every_byte_once_like_io_fileio(numbered_file, fault_server, no_leaks):
    expected = list(range(0, SIZE, BLOCK))
    with io.FileIO(numbered_file, "r") as reference:
        assert offsets(read_from_threads(reference)) == expected  # what a real file does
    url = fault_server.add("/numbered.bin", numbered_file.read_bytes())
    for source in (str(numbered_file), url):
        with kithara_io.open(source) as f:
            chunks = read_from_threads(f)
            assert sum(map(len, chunks)) == SIZE, source
            assert offsets(chunks) == expected, source
            assert f.tell() == SIZE


def test_seek_and_read_from_two_threads_stay_consistent(numbered_file, no_leaks):
    """A seek never lands in the middle of another thread's read: each read returns whole
    blocks starting at a position some call set."""
    with kithara_io.open(str(numbered_file)) as f:
        stop = threading.Event()

        def seeker() -> None:
            rng = random.Random(7)
            while not stop.is_set():
                f.seek(rng.randrange(0, SIZE // BLOCK) * BLOCK)

        t = threading.Thread(target=seeker)
        t.start()
        try:
            for _ in range(2000):
                got = [off for (off,) in struct.iter_unpack("<Q", f.read(BLOCK * 16))]
                if got:  # contiguous blocks from where some seek put the cursor
                    assert got == list(range(got[0], got[0] + BLOCK * len(got), BLOCK))
        finally:
            stop.set()
            t.join(10)


# -- a server that claims 2 GiB -------------------------------------------------------------

CLAIMED = 2 << 30
HONEST = 64 * 1024  # the first 64 KiB are served; anything else gets 100 bytes and a cut


class _LyingHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = sock.recv(4096)
            if not data:
                return
            head += data
        spec = ""
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("range:"):
                spec = line.split("=", 1)[1].strip()
        first_text, _, last_text = spec.partition("-")
        if not first_text:  # suffix: bytes=-N
            first, last = CLAIMED - int(last_text), CLAIMED - 1
        else:
            first = int(first_text)
            last = int(last_text) if last_text else CLAIMED - 1
        length = last - first + 1
        sock.sendall(
            f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{CLAIMED}\r\n"
            f"Content-Length: {length}\r\nETag: \"big\"\r\nConnection: close\r\n\r\n".encode()
        )
        sock.sendall(bytes(length if first == 0 and last < HONEST else 100))


class _LyingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def lying_server() -> Iterator[str]:
    server = _LyingServer(("127.0.0.1", 0), _LyingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=THREAD_PREFIX + "lying")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/big.bin"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


_RSS_SCRIPT = """
import sys, kithara_io
from kithara_io import Retry, StreamError

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

f = kithara_io.open(sys.argv[1], retry=Retry(attempts=2, backoff=0.01))
before = hwm()
try:
    data = f.read()
    outcome = f"read {len(data)} bytes"
except StreamError as exc:
    outcome = type(exc).__name__
try:
    f.close()
except StreamError:
    pass
print(before, hwm(), outcome)
"""


@pytest.mark.timeout(60)
def test_read_all_of_a_server_claiming_2_gib_uses_memory_for_what_arrived(lying_server) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, lying_server],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    before, after, outcome = proc.stdout.split(maxsplit=2)
    grown = int(after) - int(before)
    assert outcome.strip() in ("TruncatedBodyError", "ConnectionFailedError"), proc.stdout
    assert grown < 200 * 1024 * 1024, f"peak RSS grew by {grown / 2**20:.0f} MiB"


def test_absurd_content_range_total_is_refused_at_open(fault_server, no_leaks) -> None:
    url = fault_server.add("/a.bin", bytes(100_000))
    fault_server.always("/a.bin", BadContentRange("bytes 0-65535/99999999999999999999"))
    with pytest.raises(InvalidResponseError, match="absurd length"):
        kithara_io.open(url, retry=Retry(attempts=1))


# -- local paths that are not regular files --------------------------------------------------


def test_a_directory_is_refused_naming_the_path(tmp_path) -> None:
    with pytest.raises(StreamError, match="is a directory") as info:
        kithara_io.open(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_a_character_device_reads_as_a_pipe_not_as_an_empty_file(no_leaks) -> None:
    """/dev/zero said size 0 yet returned bytes: it now reads like a pipe (no size, not
    seekable), as a FIFO or stdin does (tests/test_live_local.py)."""
    with kithara_io.open("/dev/zero") as f:
        assert f.size is None and not f.seekable()
        assert f.read(10) == b"\0" * 10


def test_dev_null_is_an_empty_stream_once_its_end_is_read(no_leaks) -> None:
    with kithara_io.open("/dev/null") as f:
        assert f.read() == b""
        assert f.size == 0
