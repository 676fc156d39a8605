"""The libcurl path (``kithara_io.net.curl``) against hostile or broken servers: never a
wrong byte, never a wait the timeouts do not bound, the server never decides how much memory
we hold, errors are StreamErrors naming the URL. A raw-socket server (tests/hostile_raw.py)
answers the open's requests correctly and misbehaves on the far random read that goes over
libcurl."""

from __future__ import annotations

import random
import socket
import struct
import time
import tracemalloc
from typing import List

import pytest

import kithara_io
from kithara_io import ConnectionFailedError, Retry, StreamError, Timeout
from kithara_io.errors import TruncatedBodyError
from kithara_io.net import curl
from tests.hostile_raw import HostileServer, send_all, send_until_stopped

pytestmark = pytest.mark.skipif(not curl.usable, reason="pycurl is not installed")

KiB = 1024
DATA = random.Random(1).randbytes(4 << 20)
FAR = 2 << 20  # ranges from here on misbehave: the random read's, over libcurl
QUICK = Retry(attempts=2, backoff=0.01, max_backoff=0.05, jitter=0)


@pytest.fixture
def transfers(monkeypatch) -> List[tuple]:
    """(header lines, body bytes kept, error) of every libcurl transfer run to its end."""
    seen: List[tuple] = []
    original = curl.CurlConnection._end

    def end(self, error):
        if self._running:
            seen.append((len(self._lines), self._kept, error))
        original(self, error)

    monkeypatch.setattr(curl.CurlConnection, "_end", end)
    return seen


def _head(start: int, end: int, length: int = 0) -> bytes:
    return (
        f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end - 1}/{len(DATA)}\r\n"
        f'ETag: "v1"\r\nContent-Length: {length or end - start}\r\n\r\n'
    ).encode()


def _far_read(url: str, timeout: Timeout, retry: Retry = QUICK, n: int = 8 * KiB, pos: int = FAR + 100_000) -> bytes:
    with kithara_io.open(url, tail=0, timeout=timeout, retry=retry) as f:
        f.seek(pos)
        return f.read(n)


def _fails_by_the_speed_limit(misbehave) -> None:
    """The far read against ``misbehave`` fails by the speed limit (1 KB/s over 1 s; read
    timeout 1 s), naming the URL, within 5 s."""
    slow = Timeout(connect=2, read=1, speed_limit=1024, speed_time=1)
    with HostileServer(DATA, FAR, misbehave) as srv:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="slower than") as failed:
            _far_read(srv.url(), slow)
        took = time.monotonic() - started
    assert srv.url() in str(failed.value) and took < 5, took


# -- 1. interim heads ---------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_an_endless_stream_of_interim_heads_ends_at_once(no_leaks, transfers) -> None:
    """103 heads back to back, never the answer: libcurl stops at its 300 KB of head
    (~5,000 heads, parsed in ~10 ms in all: no re-parse of what came before), and the read
    fails at once with a StreamError naming the URL."""

    def misbehave(sock, start, end, data, stop):
        send_until_stopped(sock, b"HTTP/1.1 103 Early Hints\r\nLink: </a.flac>; rel=preload\r\n\r\n", stop, 20)

    with HostileServer(DATA, FAR, misbehave) as srv:
        started = time.monotonic()
        with pytest.raises(StreamError) as failed:
            _far_read(srv.url(), Timeout(connect=2, read=1))
        took = time.monotonic() - started
    assert srv.url() in str(failed.value) and took < 3, (took, failed.value)
    assert transfers and max(lines for lines, _, _ in transfers) <= 20_000, transfers


@pytest.mark.timeout(30)
def test_a_small_range_after_an_interim_head_reads_its_own_bytes(no_leaks, transfers) -> None:
    def misbehave(sock, start, end, data, stop):
        return send_all(
            sock, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + _head(start, end) + data[start:end], stop
        )

    with HostileServer(DATA, FAR, misbehave) as srv:
        assert _far_read(srv.url(), Timeout(connect=2, read=2)) == DATA[FAR + 100_000 : FAR + 100_000 + 8 * KiB]
    assert any(error is None and kept > 0 for _, kept, error in transfers), transfers  # over libcurl


# -- 2. heads that never end --------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["endless header block", "huge header line"])
def test_a_head_without_end_is_refused_in_bounded_memory(no_leaks, kind) -> None:
    """Header lines one after another, or one line of many MB, as fast as the server can
    send: refused at once (libcurl's 300 KB of head, 100 KB a line; http.client's 64 KiB
    line when libcurl hands the answer over), the memory held stays small."""

    def misbehave(sock, start, end, data, stop):
        if kind == "endless header block":
            send_all(sock, b"HTTP/1.1 206 Partial Content\r\n", stop)
            send_until_stopped(sock, b"X-Filler: " + b"a" * 50 + b"\r\n", stop, 20)
        else:
            send_all(sock, b"HTTP/1.1 206 Partial Content\r\nX-Huge: ", stop)
            send_until_stopped(sock, b"a" * 65536, stop, 20)

    with HostileServer(DATA, FAR, misbehave) as srv:
        tracemalloc.start()
        try:
            started = time.monotonic()
            with pytest.raises(StreamError) as failed:
                _far_read(srv.url(), Timeout(connect=2, read=1))
            took = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert srv.url() in str(failed.value) and took < 3, (took, failed.value)
    assert peak < 4 << 20, peak


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["interim heads", "header lines"])
def test_a_drip_fed_head_fails_by_the_speed_limit(no_leaks, kind) -> None:
    """A head that comes a few bytes every 0.2 s never trips the read timeout (1 s) and
    would take hours to reach libcurl's 300 KB: it is held to the speed limit, as a body
    is (here 1 KB/s over 1 s), and fails within attempts x (speed_time + a gap)."""

    def misbehave(sock, start, end, data, stop):
        if kind == "header lines":
            send_all(sock, b"HTTP/1.1 206 Partial Content\r\n", stop)
        piece = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" if kind == "interim heads" else b"X-A: b\r\n"
        began = time.monotonic()
        while time.monotonic() - began < 10 and send_all(sock, piece, stop):
            stop.wait(0.2)

    _fails_by_the_speed_limit(misbehave)


# -- 3. a trickling body ------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_trickling_small_range_fails_by_the_speed_limit(no_leaks, transfers) -> None:
    """1 byte every 0.2 s: never silent for the read timeout (1 s), far below the speed
    limit (1 KB/s over 1 s). The fetch loop's check runs between pieces, and a piece over
    libcurl is one blocking read of the whole range once the link's rate is known: the
    transfer loop holds the body to the limit itself."""

    def misbehave(sock, start, end, data, stop):
        if not send_all(sock, _head(start, end), stop):
            return
        began = time.monotonic()
        for i in range(start, end):
            if time.monotonic() - began > 10 or not send_all(sock, data[i : i + 1], stop):
                return
            stop.wait(0.2)

    _fails_by_the_speed_limit(misbehave)
    assert transfers and all(kept <= 64 * KiB for _, kept, _ in transfers)


# -- 4. more bytes than asked -------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("when", ["with the body", "50 ms later"])
def test_bytes_after_an_answer_are_never_read_as_the_next_one(no_leaks, transfers, when) -> None:
    """A 206 of the right length followed by more bytes (here a whole stale answer, of
    another range), the connection kept: libcurl stops at Content-Length, and the next
    request does not reuse a connection with bytes waiting (it read them as its answer)."""

    def misbehave(sock, start, end, data, stop):
        junk = _head(start, end) + b"J" * (end - start)
        if when == "with the body":
            return send_all(sock, _head(start, end) + data[start:end] + junk, stop)
        if not send_all(sock, _head(start, end) + data[start:end], stop):
            return False
        stop.wait(0.05)
        return send_all(sock, junk, stop)

    rng = random.Random(3)
    with HostileServer(DATA, FAR, misbehave) as srv:
        with kithara_io.open(srv.url(), tail=0, timeout=Timeout(connect=2, read=2), retry=QUICK) as f:
            for _ in range(6):
                pos = FAR + rng.randrange(0, 1 << 20)
                f.seek(pos)
                time.sleep(0.1)  # (the late bytes are in before the next request)
                assert f.read(8 * KiB) == DATA[pos : pos + 8 * KiB]
    assert len(transfers) >= 2 and all(kept <= 64 * KiB and error is None for _, kept, error in transfers), transfers


@pytest.mark.timeout(30)
def test_a_content_length_past_the_range_is_cut_and_refused(no_leaks, transfers) -> None:
    def misbehave(sock, start, end, data, stop):
        return send_all(sock, _head(start, end, end - start + 1000) + data[start:end] + b"J" * 1000, stop)

    with HostileServer(DATA, FAR, misbehave) as srv:
        with pytest.raises(StreamError) as failed:
            _far_read(srv.url(), Timeout(connect=2, read=2))
    assert srv.url() in str(failed.value)
    assert transfers and all(kept <= 64 * KiB for _, kept, _ in transfers), transfers


# -- 5. a short body ----------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["fin once", "rst once", "fin always"])
def test_a_short_small_range_is_resumed_or_fails_never_short(no_leaks, transfers, how) -> None:
    """Content-Length right, half the body, then a close (FIN) or a reset: the bytes that
    came are kept, the rest asked again; a server that always cuts fails naming the URL."""
    calls = []

    def misbehave(sock, start, end, data, stop):
        calls.append(start)
        if how == "fin always" or len(calls) == 1:
            send_all(sock, _head(start, end) + data[start : start + (end - start) // 2], stop)
            if how == "rst once":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        return send_all(sock, _head(start, end) + data[start:end], stop)

    with HostileServer(DATA, FAR, misbehave) as srv:
        if how == "fin always":
            with pytest.raises(TruncatedBodyError) as failed:  # (the read needs the whole range)
                _far_read(srv.url(), Timeout(connect=2, read=2), n=64 * KiB)
            assert srv.url() in str(failed.value)
        else:
            assert _far_read(srv.url(), Timeout(connect=2, read=2)) == DATA[FAR + 100_000 : FAR + 100_000 + 8 * KiB]
    assert transfers and transfers[0][1] == 32 * KiB, transfers  # half of the 64 KiB asked


@pytest.mark.timeout(30)
def test_a_silent_head_fails_saying_it_timed_out(no_leaks) -> None:
    """No answer to the random read: the read timeout ends it, and the error says so (not
    'connection reset by the server': the head's error was forgotten before it was raised)."""

    def misbehave(sock, start, end, data, stop):
        stop.wait(10)

    with HostileServer(DATA, FAR, misbehave) as srv:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="timed out") as failed:
            _far_read(srv.url(), Timeout(connect=2, read=0.5))
        took = time.monotonic() - started
    assert srv.url() in str(failed.value) and took < 3, took
