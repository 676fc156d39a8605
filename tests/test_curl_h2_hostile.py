"""The libcurl path over HTTP/2 (``kithara_io.net.curl``, ALPN ``h2``) against a hostile
HTTP/2 server (tests/hostile_h2.py, the ``h2`` library over TLS): never a wrong byte, never a
wait the timeouts do not bound, errors are StreamErrors naming the URL, nothing left after
``close()``. The server answers the open's requests (HTTP/1.1: ``http.client`` offers no
ALPN) and every range before ``FAR`` correctly; the far random reads, which go over libcurl
and so over HTTP/2, meet the misbehaviour. That they did is checked on the server's side:
it counts the HTTP/2 streams it was asked on."""

from __future__ import annotations

import random
import time
import tracemalloc
from typing import List, Optional

import h2.errors
import pytest
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame

import kithara_io
from kithara_io import ConnectionFailedError, InvalidResponseError, Retry, StreamError, Timeout
from kithara_io.net import curl
from tests.hostile_h2 import H2Link, HostileH2Server

pytestmark = pytest.mark.skipif(not curl.usable, reason="pycurl is not installed")

KiB = 1024
DATA = random.Random(2).randbytes(4 << 20)
FAR = 2 << 20  # ranges from here on misbehave: the random reads', over libcurl (HTTP/2)
POS = FAR + 100_000
QUICK = Retry(attempts=2, backoff=0.01, max_backoff=0.05, jitter=0)
SLOW = Timeout(connect=2, read=1, speed_limit=1024, speed_time=1)  # as test_curl_hostile's
RESET = h2.errors.ErrorCodes.INTERNAL_ERROR
SPREAD = (POS, POS + 1_000_000, FAR + 1_800_000)  # each > 512 KiB past the others' ends: random reads


def _far_reads(srv: HostileH2Server, tls_files, positions=(POS,), n: int = 64 * KiB, timeout: Timeout = SLOW) -> None:
    """Open over https trusting the session's CA, read the first bytes (over http.client),
    then each of ``positions`` (far from the stream: over libcurl); every read's bytes must
    equal the served data's."""
    with kithara_io.open(srv.url(), verify=str(tls_files.ca), tail=0, timeout=timeout, retry=QUICK) as f:
        assert f.read(1000) == DATA[:1000]
        for pos in positions:
            f.seek(pos)
            assert f.read(n) == DATA[pos : pos + n], f"wrong bytes at {pos}"


def _fails(srv: HostileH2Server, tls_files, error=StreamError, match: Optional[str] = None, **kw) -> float:
    """The far read fails with ``error`` naming the URL; how long it took."""
    started = time.monotonic()
    with pytest.raises(error, match=match) as failed:
        _far_reads(srv, tls_files, **kw)
    assert srv.url() in str(failed.value), failed.value
    return time.monotonic() - started


def _once(misbehave):
    """``misbehave`` on the first far request, right answers after it."""
    calls: List[int] = []

    def first_only(link: H2Link, sid: int, start: int, end: int, data: bytes):
        calls.append(start)
        if len(calls) == 1:
            return misbehave(link, sid, start, end, data)
        return link.answer(sid, start, end)

    return first_only


def _over_h2(srv: HostileH2Server, at_least: int = 1) -> None:
    far = [r for r in srv.h2_requests if r[2] >= FAR]
    assert len(far) >= at_least and srv.errors == [], (srv.h2_requests, srv.errors)


def _head_and_half(link: H2Link, sid: int, start: int, end: int, data: bytes) -> bool:
    return link.send_headers(sid, 206, link.range_headers(start, end)) and link.send_data(
        sid, data[start : start + (end - start) // 2]
    )


# -- 1. RST_STREAM ------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_stream_reset_mid_body_is_resumed(no_leaks, tls_files) -> None:
    """Half the body, then RST_STREAM: the half is kept, the rest asked again (from where
    the half ended), the bytes are the file's. (A regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        return _head_and_half(link, sid, start, end, data) and link.reset(sid, RESET)

    with HostileH2Server(DATA, FAR, _once(misbehave), tls_files) as srv:
        _far_reads(srv, tls_files)
    _over_h2(srv, 2)
    first, second = [r for r in srv.h2_requests if r[2] >= FAR][:2]
    assert second[2] == first[2] + 32 * KiB, srv.h2_requests  # resumed past the half


@pytest.mark.timeout(30)
def test_a_stream_reset_every_time_fails_naming_the_url(no_leaks, tls_files) -> None:
    """Every far answer reset half-way: the read fails at once with the reset in its
    message. (A regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        return _head_and_half(link, sid, start, end, data) and link.reset(sid, RESET)

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        took = _fails(srv, tls_files, ConnectionFailedError, match="reset by server")
    assert took < 3, took
    _over_h2(srv, 2)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "after", ["RST_STREAM INTERNAL_ERROR", "RST_STREAM NO_ERROR", "GOAWAY then close", "close without GOAWAY"]
)
def test_an_answer_broken_after_its_last_byte_keeps_the_stream(no_leaks, tls_files, after) -> None:
    """Every byte of the range (its Content-Length), then the stream or the connection
    ends without END_STREAM. The reader has all it asked for: it gets it, and the stream
    goes on. Before the fix (all but "RST_STREAM NO_ERROR", which libcurl takes as the
    end), the check that the answer was read to its end (to keep the connection) read on,
    libcurl raised the stream's error from there, out of the body's close: the whole
    stream failed ("fetch failed unexpectedly") at the next read, and the libcurl
    connection was left open after ``close()``."""

    def misbehave(link, sid, start, end, data):
        if not (link.send_headers(sid, 206, link.range_headers(start, end)) and link.send_data(sid, data[start:end])):
            return False
        link.wait(0.05)  # (the reader has its bytes before the end comes)
        if after.startswith("RST_STREAM"):
            return link.reset(sid, RESET if "INTERNAL" in after else h2.errors.ErrorCodes.NO_ERROR)
        if after.startswith("GOAWAY"):
            link.goaway(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        return False

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        _far_reads(srv, tls_files, positions=SPREAD)
    _over_h2(srv, 3)


# -- 2. GOAWAY ----------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("when", ["before the head", "mid-body"])
def test_goaway_below_the_stream_in_flight_is_retried_on_a_new_connection(no_leaks, tls_files, when) -> None:
    """GOAWAY with a last stream id below the far request's (it was not processed), then
    the connection closes: the request goes again on a new connection, the bytes are the
    file's. (A regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        if when == "mid-body" and not _head_and_half(link, sid, start, end, data):
            return False
        link.goaway(sid - 2)
        return False

    with HostileH2Server(DATA, FAR, _once(misbehave), tls_files) as srv:
        _far_reads(srv, tls_files)
    _over_h2(srv, 2)
    assert srv.h2_connections >= 2, srv.h2_requests


@pytest.mark.timeout(30)
def test_goaway_below_the_stream_in_flight_on_a_connection_left_open_costs_one_read_timeout(
    no_leaks, tls_files
) -> None:
    """The same GOAWAY, but the server keeps the connection open (and silent). libcurl
    retries a stream a GOAWAY refused only once the connection closes: the request waits
    out the read timeout (1 s), then goes again on a new connection and gets the file's
    bytes. What this costs is bounded by the read timeout, not more. (A regression guard:
    passed before any fix; see the report of the HTTP/2 audit.)"""

    def misbehave(link, sid, start, end, data):
        goaway = GoAwayFrame(0)  # (past h2's state machine, which would end the connection)
        goaway.last_stream_id, goaway.error_code = sid - 2, 0
        link.write_frame(goaway)
        link.wait(10)
        return False

    with HostileH2Server(DATA, FAR, _once(misbehave), tls_files) as srv:
        started = time.monotonic()
        _far_reads(srv, tls_files)
        took = time.monotonic() - started
    assert took < 3, took  # (measured: ~1.05 s, the read timeout and the retry)
    _over_h2(srv, 2)
    assert srv.h2_connections >= 2


# -- 3. more DATA than Content-Length ------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["in a frame of its own", "in the last frame", "without Content-Length"])
def test_data_beyond_the_content_length_is_never_read_as_the_answer(no_leaks, tls_files, how) -> None:
    """The range's bytes, then 1,000 junk bytes on the same stream (as a DATA frame of its
    own 50 ms after the range's bytes, or sharing the last frame with the range's last
    bytes, or with no Content-Length for nghttp2 to check against): each of three reads
    gets the file's bytes, never the junk, and the stream goes on. Failed before the fix
    ("in a frame of its own": nghttp2 resets the stream once the range's bytes were read,
    and the check that the answer had ended raised that error out of the body's close; see
    test_an_answer_broken_after_its_last_byte_keeps_the_stream); the other two are
    regression guards."""

    def misbehave(link, sid, start, end, data):
        fields = link.range_headers(start, end)
        if how == "without Content-Length":
            fields = [f for f in fields if f[0] != "content-length"]
        if not link.send_headers(sid, 206, fields):
            return False
        if how == "in the last frame":  # (nghttp2 sees it with the range's last bytes)
            return link.send_data(sid, data[start:end] + b"J" * 1000, end=True, frame=10_000)
        if not link.send_data(sid, data[start:end]):
            return False
        link.wait(0.05)  # (the reader has its bytes before the junk comes)
        return link.send_data(sid, b"J" * 1000, end=True)

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        _far_reads(srv, tls_files, positions=SPREAD)
    _over_h2(srv, 3)


# -- 4. a trickle --------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_data_trickling_in_small_frames_fails_by_the_speed_limit(no_leaks, tls_files) -> None:
    """One byte a DATA frame every 0.2 s: never silent for the read timeout (1 s), far below
    the speed limit (1 KB/s over 1 s): fails by the limit within a few seconds. (A
    regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        if not link.send_headers(sid, 206, link.range_headers(start, end)):
            return False
        began = time.monotonic()
        for i in range(start, end):
            if time.monotonic() - began > 10 or not link.send_data(sid, data[i : i + 1]) or not link.wait(0.2):
                return False
        return False

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        took = _fails(srv, tls_files, ConnectionFailedError, match="slower than")
    assert took < 5, took
    _over_h2(srv)


# -- 5. stalls ------------------------------------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("stall", ["no HEADERS", "no DATA after HEADERS", "only PINGs after HEADERS"])
def test_a_stalled_stream_fails_by_the_read_timeout(no_leaks, tls_files, stall) -> None:
    """The far answer never comes, or its HEADERS come and no DATA after them, or only
    PING frames every 0.2 s (the connection is busy, the answer silent): fails with "timed
    out" within read timeout (1 s) x attempts (2) and a margin. (A regression guard:
    passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        if stall != "no HEADERS" and not link.send_headers(sid, 206, link.range_headers(start, end)):
            return False
        began = time.monotonic()
        while time.monotonic() - began < 10:
            if stall.startswith("only PINGs"):
                link.h2.ping(b"kithara!")
                if not link.flush():
                    return False
            if not link.wait(0.2):
                return False
        return False

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        took = _fails(srv, tls_files, ConnectionFailedError, match="timed out", timeout=Timeout(connect=2, read=1))
    assert took < 4, took
    _over_h2(srv, 2)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pace", ["flooded", "drip-fed"])
def test_a_header_block_without_end_fails_in_bounded_time_and_memory(no_leaks, tls_files, pace) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames of header fields that never
    end: as fast as the server can send them (nghttp2 and libcurl stop the block at their
    limits), or one field every 0.2 s (never silent for the read timeout: the head is held
    to the speed limit). Fails naming the URL within a few seconds, the memory held stays
    small. (A regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        head = HeadersFrame(sid)
        head.data = link.h2.encoder.encode([(":status", "206")])
        if not link.write_frame(head):
            return False
        filler = link.h2.encoder.encode([("x-filler", "a" * 50)])
        began = time.monotonic()
        while time.monotonic() - began < 10:
            more = ContinuationFrame(sid)
            more.data = filler * (50 if pace == "flooded" else 1)
            if not link.write_frame(more) or (pace == "drip-fed" and not link.wait(0.2)):
                return False
        return False

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        tracemalloc.start()
        try:
            took = _fails(srv, tls_files, ConnectionFailedError)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert took < (5 if pace == "drip-fed" else 3) and peak < 4 << 20, (took, peak)
    _over_h2(srv, 2)


@pytest.mark.timeout(30)
def test_data_before_headers_is_asked_again_over_http_client(no_leaks, tls_files) -> None:
    """A DATA frame before any HEADERS (a protocol error: nghttp2 ends the connection):
    libcurl has no answer to read, the request goes again over http.client (HTTP/1.1 here),
    the bytes are the file's. (A regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        early = DataFrame(sid)
        early.data = b"J" * 1000
        link.write_frame(early)
        link.wait(1)
        return False

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        _far_reads(srv, tls_files)
    _over_h2(srv)
    assert (POS, POS + 64 * KiB) in srv.h1_requests, srv.h1_requests


# -- 6. a Content-Range that is not the range asked -----------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("shift", [1, -1])
def test_a_content_range_off_the_request_is_refused(no_leaks, tls_files, shift) -> None:
    """A 206 for the range shifted by a byte (its Content-Range honest about it, its bytes
    those of the shifted range): refused, never read as the asked range's bytes. (A
    regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        s, e = start + shift, end + shift
        return link.send_headers(sid, 206, link.range_headers(s, e)) and link.send_data(sid, data[s:e], end=True)

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        took = _fails(srv, tls_files, InvalidResponseError, match="does not match the requested range")
    assert took < 3, took
    _over_h2(srv)


# -- 7. interim answers ---------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_interim_heads_before_the_206_read_as_the_answer_after_them(no_leaks, tls_files) -> None:
    """Two 103 (Early Hints) HEADERS before the 206: the answer is the 206's, its bytes
    the file's. (A regression guard: passed before any fix.)"""

    def misbehave(link, sid, start, end, data):
        for _ in range(2):
            if not link.send_headers(sid, 103, [("link", "</a.flac>; rel=preload")]):
                return False
        return link.answer(sid, start, end)

    with HostileH2Server(DATA, FAR, misbehave, tls_files) as srv:
        _far_reads(srv, tls_files, positions=(POS, POS + 1_000_000))
    _over_h2(srv, 2)


# -- 8. a close mid-body ---------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_end_stream_before_the_content_length_is_resumed(no_leaks, tls_files) -> None:
    """Half the body with END_STREAM, Content-Length saying the whole range: nghttp2
    refuses the frame that ends the stream short, the bytes before it are kept and the
    rest asked again; the bytes are the file's. (A regression guard: passed before any
    fix.)"""

    def misbehave(link, sid, start, end, data):
        return link.send_headers(sid, 206, link.range_headers(start, end)) and link.send_data(
            sid, data[start : start + (end - start) // 2], end=True
        )

    with HostileH2Server(DATA, FAR, _once(misbehave), tls_files) as srv:
        _far_reads(srv, tls_files)
    _over_h2(srv, 2)


@pytest.mark.timeout(30)
def test_a_connection_closed_mid_body_is_resumed(no_leaks, tls_files) -> None:
    """Half the body, then the TCP connection closes (no GOAWAY, no close_notify): the rest
    comes on a new connection, the bytes are the file's. (A regression guard: passed
    before any fix.)"""
    with HostileH2Server(DATA, FAR, _once(lambda *a: _head_and_half(*a) and False), tls_files) as srv:
        _far_reads(srv, tls_files)
    _over_h2(srv, 2)
    assert srv.h2_connections >= 2


@pytest.mark.timeout(30)
def test_a_connection_closed_mid_body_every_time_fails_naming_the_url(no_leaks, tls_files) -> None:
    """(A regression guard: passed before any fix.)"""
    with HostileH2Server(DATA, FAR, lambda *a: _head_and_half(*a) and False, tls_files) as srv:
        took = _fails(srv, tls_files, ConnectionFailedError)
    assert took < 3, took
    _over_h2(srv, 2)


# -- 9. the control -----------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_random_reads_go_over_one_http2_connection(no_leaks, tls_files) -> None:
    """A well-behaved server: 50 random reads (1 byte to 64 KiB) all over HTTP/2, on a few
    kept connections, the bytes the file's; only the
    open's requests over HTTP/1.1. (A regression guard: passed before any fix.)"""
    rng = random.Random(7)
    data = rng.randbytes(64 << 20)
    slots = rng.sample(range(1, 64), 50)  # a MiB apart: every read is a random one
    with HostileH2Server(data, len(data), lambda *a: False, tls_files) as srv:
        with kithara_io.open(srv.url(), verify=str(tls_files.ca), tail=0, timeout=SLOW, retry=QUICK) as f:
            assert f.read(1000) == data[:1000]
            for slot in slots:
                size = rng.choice([1, 4 * KiB, 64 * KiB])
                pos = (slot << 20) + rng.randrange(0, 256 * KiB)
                f.seek(pos)
                assert f.read(size) == data[pos : pos + size], f"wrong bytes at {pos}"
    assert len(srv.h2_requests) >= 50 and srv.errors == [], (srv.h2_requests, srv.errors)
    # kept and used again (a few of them: each of the stream's fetchers keeps its own)
    assert srv.h2_connections <= 8 and len(srv.h1_requests) <= 2, (srv.h2_requests, srv.h1_requests)
    for conn in range(1, srv.h2_connections + 1):  # one stream a request, in order
        streams = [sid for c, sid, _, _ in srv.h2_requests if c == conn]
        assert streams == list(range(1, 2 * len(streams), 2)), streams
