"""Small range requests over libcurl (``kithara_io.net.curl``): a later range of at most 256 KiB
of a server that answers ranges goes over pycurl (HTTP/2 where a TLS server offers it); everything else through
http.client. Against the fault server on loopback: the bytes equal the file, a connection is
kept, a slow body hands its first bytes over at once, an abort or a silence longer than the
read timeout ends a request at once, a whole file sent to a range is cut at the range's
length, a close-delimited answer leaves no socket, and without pycurl nothing changes."""

from __future__ import annotations

import random
import threading
import time
from typing import Iterator, List

import pytest

import kithara_io
from kithara_io import Retry, Timeout
from kithara_io.errors import ConnectionFailedError, InvalidResponseError
from kithara_io.net import curl, curl_fork
from kithara_io.sources.http import HttpSource
from kithara_io.sources.transport import AbortHandle
from tests.conftest import open_resources
from tests.servers import Http2NginxServer
from tests.servers.faults import CapRange, IgnoreRange, Latency, NoContentLength, StallForever

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not curl.usable, reason="pycurl is not installed"),
]

KiB = 1024
QUICK = dict(retry=Retry(attempts=2, backoff=0.01, max_backoff=0.05), timeout=Timeout(connect=2, read=5))


@pytest.fixture
def answered(monkeypatch) -> Iterator[List[int]]:
    """The body bytes libcurl received for each request it ran to its end (or gave up)."""
    kept: List[int] = []
    original = curl.CurlConnection._end

    def counted(self, error):
        if self._running:
            kept.append(self._kept)
        original(self, error)

    monkeypatch.setattr(curl.CurlConnection, "_end", counted)
    yield kept


def _data(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def _pinned(url: str, **kw) -> HttpSource:
    """A source whose first answer (over http.client) said the server answers ranges; its
    later ranges far from that one (a random read) go over libcurl."""
    source = HttpSource(url, **kw)
    body = source.fetch(0, 100)
    body.read_piece(100)
    body.close()
    return source


def test_small_later_ranges_go_over_libcurl_on_one_connection(no_leaks, fault_server, answered) -> None:
    data = _data(32 << 20)
    url = fault_server.add("/f", data)
    rng = random.Random(5)
    with kithara_io.open(url, tail=0, **QUICK) as f:
        for _ in range(40):
            pos = rng.randrange(0, len(data) - 64 * KiB)
            f.seek(pos)
            assert f.read(64 * KiB) == data[pos : pos + 64 * KiB]
    # (a read within 512 KiB past a recent range's end continues it: http.client)
    assert len(answered) >= 30 and all(n <= curl.SMALL for n in answered), answered
    # kept: at most max_outstanding (2) connections over http.client (the open's requests)
    # and as many over libcurl, for 40 reads
    assert len({r.connection for r in fault_server.requests}) <= 4


def test_small_ranges_over_https_keep_the_trust_and_the_client_certificate(
    no_leaks, make_fault_server, tls_files, answered
) -> None:
    """The CA bundle and the client certificate given go to libcurl's connections too: a
    server that requires the certificate answers every range, and no handshake fails."""
    srv = make_fault_server(tls=tls_files.server_context(require_client_cert=True))
    data = _data(8 << 20)
    url = srv.add("/f", data)
    cert = (str(tls_files.client_cert), str(tls_files.client_key))
    rng = random.Random(9)
    with kithara_io.open(url, verify=str(tls_files.ca), cert=cert, tail=0, **QUICK) as f:
        for _ in range(30):
            pos = rng.randrange(0, len(data) - 16 * KiB)
            f.seek(pos)
            assert f.read(16 * KiB) == data[pos : pos + 16 * KiB]
    assert len(answered) >= 5 and srv.tls_failures == [], answered


def test_small_ranges_over_https_go_over_http2_where_the_server_offers_it(
    no_leaks, tls_files, tmp_path, answered
) -> None:
    """nginx offering ``h2`` (ALPN): libcurl's ranges go over HTTP/2, http.client's requests
    (the first answer, the sequential ones) stay on HTTP/1.1; every byte equals the file."""
    data = _data(16 << 20)
    (tmp_path / "f.bin").write_bytes(data)
    rng = random.Random(11)
    with Http2NginxServer(tmp_path, tls=tls_files) as srv:
        with kithara_io.open(srv.url("f.bin"), verify=str(tls_files.ca), tail=0, **QUICK) as f:
            for i in range(60):
                size = 64 * KiB if i % 2 else rng.randrange(1, 4 * KiB)
                pos = rng.randrange(0, len(data) - size)
                f.seek(pos)
                assert f.read(size) == data[pos : pos + size], f"wrong bytes at {pos}"
            f.seek(len(data) - 1000)
            assert f.read() == data[-1000:]
        protocols = [line.split('"')[1].rsplit(" ", 1)[1] for line in srv.access_log.read_text().splitlines()]
    assert len(answered) >= 40, answered
    assert protocols.count("HTTP/2.0") == len(answered), protocols
    assert protocols.count("HTTP/1.1") >= 1  # the open's request, over http.client


class _GoawayNginx(Http2NginxServer):
    """nginx ending each HTTP/2 connection after 3 requests (GOAWAY)."""

    config_template = Http2NginxServer.config_template.replace("keepalive_requests 100000;", "keepalive_requests 3;")


def test_http2_connections_the_server_ends_every_few_requests_are_replaced(
    no_leaks, tls_files, tmp_path, answered
) -> None:
    """A GOAWAY after every third request: libcurl opens the next connection, the bytes stay
    the file's, and no socket is left behind (the closed connections' copies are closed)."""
    data = _data(8 << 20)
    (tmp_path / "f.bin").write_bytes(data)
    rng = random.Random(12)
    with _GoawayNginx(tmp_path, tls=tls_files) as srv:
        assert "keepalive_requests 3;" in (srv.dir / "nginx.conf").read_text()
        with kithara_io.open(srv.url("f.bin"), verify=str(tls_files.ca), tail=0, **QUICK) as f:
            for _ in range(60):
                size = rng.choice([1, 4 * KiB, 64 * KiB])
                pos = rng.randrange(0, len(data) - size)
                f.seek(pos)
                assert f.read(size) == data[pos : pos + size], f"wrong bytes at {pos}"
        protocols = [line.split('"')[1].rsplit(" ", 1)[1] for line in srv.access_log.read_text().splitlines()]
    assert len(answered) >= 20 and protocols.count("HTTP/2.0") >= len(answered), (answered, protocols)


def test_a_slow_small_range_hands_its_first_bytes_over_at_once(no_leaks, make_ranged_server, media, answered) -> None:
    """At 100 KB/s a 64 KiB range takes ~0.65 s: its first 4 KiB come long before."""
    server = make_ranged_server(bandwidth=100_000, chunk_size=4096)
    data = media["random.bin"].read_bytes()
    source = _pinned(server.url("random.bin"), timeout=QUICK["timeout"])
    try:
        started = time.monotonic()
        body = source.fetch(1 << 20, (1 << 20) + 64 * KiB)
        buf = memoryview(bytearray(4 * KiB))
        n = body.readinto(buf)
        assert n > 0 and time.monotonic() - started < 0.4
        assert bytes(buf[:n]) == data[1 << 20 : (1 << 20) + n]
        body.close()
    finally:
        source.close()
    assert answered


def test_an_abort_breaks_a_stalled_small_range_at_once(no_leaks, fault_server) -> None:
    url = fault_server.add("/f", _data(1 << 20))
    source = _pinned(url, timeout=Timeout(connect=2, read=30))
    fault_server.script("/f", [StallForever()])
    abort = AbortHandle()
    failed: List[BaseException] = []

    def fetch() -> None:
        try:
            body = source.fetch(800_000, 804_000, abort)  # the headers come, then the body stalls
            try:
                body.read_piece(4000)
            finally:
                body.close()
        except BaseException as exc:  # noqa: BLE001 - what the test checks
            failed.append(exc)

    worker = threading.Thread(target=fetch)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while fault_server.count("/f") < 2 and time.monotonic() < deadline:  # bounded
            time.sleep(0.01)
        aborted_at = time.monotonic()
        abort.abort()
        worker.join(5)
        assert not worker.is_alive() and time.monotonic() - aborted_at < 1.0
        assert failed and isinstance(failed[0], ConnectionFailedError), failed
    finally:
        source.close()


def test_a_silent_server_fails_a_small_range_by_the_read_timeout(no_leaks, fault_server, answered) -> None:
    url = fault_server.add("/f", _data(1 << 20))
    source = _pinned(url, timeout=Timeout(connect=2, read=0.3))
    fault_server.script("/f", [StallForever()])
    try:
        body = source.fetch(800_000, 804_000)  # the headers come, then the body stalls
        started = time.monotonic()
        try:
            with pytest.raises(ConnectionFailedError, match="timed out"):
                body.read_piece(4000)
        finally:
            body.close()
        assert 0.25 <= time.monotonic() - started < 2.0
    finally:
        source.close()


def test_a_whole_file_to_a_small_range_is_refused_and_not_kept(no_leaks, fault_server, answered) -> None:
    """A server that ignores Range on a later request sends the whole file: refused, and no
    more than the range's length was kept of it."""
    url = fault_server.add("/f", _data(2 << 20))
    source = _pinned(url, timeout=QUICK["timeout"])
    fault_server.script("/f", [IgnoreRange()])
    try:
        with pytest.raises(InvalidResponseError):
            source.fetch(800_000, 804_000)
    finally:
        source.close()
    assert answered and max(answered) <= 4000


def test_a_close_delimited_small_range_leaves_no_socket(no_leaks, fault_server, answered) -> None:
    data = _data(1 << 20)
    url = fault_server.add("/f", data)
    source = _pinned(url, timeout=QUICK["timeout"])
    try:
        before = open_resources()
        fault_server.script("/f", [NoContentLength()])
        body = source.fetch(800_000, 804_000)
        assert body.read_piece(4000) == data[800_000:804_000]
        body.close()
        assert answered == [4000]
        assert not open_resources() - before
    finally:
        source.close()


def test_without_pycurl_small_ranges_go_over_http_client(no_leaks, fault_server, monkeypatch) -> None:
    made: List[object] = []
    monkeypatch.setattr(curl, "usable", False)
    monkeypatch.setattr(curl.CurlConnection, "__init__", lambda self, *a, **k: made.append(self))
    data = _data(1 << 20)
    url = fault_server.add("/f", data)
    with kithara_io.open(url, tail=0, **QUICK) as f:
        f.seek(300_000)
        assert f.read(64 * KiB) == data[300_000 : 300_000 + 64 * KiB]
    assert not made


def test_range_bound_takes_only_small_bounded_ranges() -> None:
    assert curl.range_bound({"Range": "bytes=0-65535"}) == 64 * KiB
    assert curl.range_bound({"Range": "bytes=-4096"}) == 4096
    assert curl.range_bound({"Range": f"bytes=0-{curl.SMALL}"}) is None  # one byte too many
    assert curl.range_bound({"Range": "bytes=100-"}) is None
    assert curl.range_bound({"Range": "bytes=0-1,5-9"}) is None
    assert curl.range_bound({}) is None
    assert curl.range_bound({"Range": "bytes=0-9", "X-Bad": "a\r\nInjected: 1"}) is None


def test_importing_kithara_io_loads_no_libcurl() -> None:
    """pycurl (libcurl and its libraries: ~6 MB of RSS) loads with the first small range,
    not with ``import kithara_io``: a process that only streams never pays for it."""
    import subprocess
    import sys

    code = "import sys, kithara_io; print('pycurl' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done


def test_a_stream_keeps_its_ranges_on_http_client(no_leaks, fault_server, answered) -> None:
    """Ranges that continue where earlier ones ended (a reader streaming on) stay on
    http.client's connections, small as they are: their bodies land straight in the cache."""
    data = _data(4 << 20)
    url = fault_server.add("/f", data)
    small = dict(tail=0, min_fetch=64 * KiB, max_fetch=256 * KiB, read_ahead=512 * KiB)
    with kithara_io.open(url, **small, **QUICK) as f:
        assert f.read() == data
    assert len(fault_server.requests) >= 16 and answered == []


def test_an_abort_after_the_body_was_read_spares_the_next_request(no_leaks, fault_server, answered) -> None:
    """An abort that lands once the body is in (an epoch cancel racing the fetch's end) marks
    the libcurl connection it reached; the next request takes a fresh one and succeeds."""
    data = _data(4 << 20)
    url = fault_server.add("/f", data)
    source = _pinned(url, timeout=QUICK["timeout"])
    try:
        late = AbortHandle()
        body = source.fetch(1_000_000, 1_004_000, late)
        assert body.read_piece(4000) == data[1_000_000:1_004_000]
        late.abort()
        body.close()
        body = source.fetch(3_000_000, 3_004_000)
        assert body.read_piece(4000) == data[3_000_000:3_004_000]
        body.close()
    finally:
        source.close()
    assert len(answered) == 2


def test_an_answer_after_an_interim_one_reads_as_its_own_head(no_leaks) -> None:
    """libcurl hands every header line over, an interim ``103``'s too: the answer is the
    head after the last status line, a folded line continues the field before it, and the
    body is the one asked for. (The head is parsed once its blank line has come.)"""
    import socket

    body = bytes(range(100))
    head = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.flac>; rel=preload\r\n\r\n"
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 1000-1099/5000\r\n"
        b"Content-Length: 100\r\nX-Folded: one\r\n\t two\r\nETag: \"v1\"\r\n\r\n"
    )
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    asked: List[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            asked.append(request)
            conn.sendall(head[:40])  # the interim head in two pieces, then the rest
            conn.sendall(head[40:] + body)
            conn.recv(1)  # until the client closes

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    conn = curl.CurlConnection("http", "127.0.0.1", listener.getsockname()[1], Timeout(connect=2, read=5))
    try:
        conn.request("GET", "/f", headers={"Range": "bytes=1000-1099"})
        answer = conn.getresponse()
        assert (answer.status, answer.reason) == (206, "Partial Content")
        assert answer.headers.items() == [
            ("Content-Range", "bytes 1000-1099/5000"),
            ("Content-Length", "100"),
            ("X-Folded", "one two"),
            ("ETag", '"v1"'),
        ]
        assert answer.read() == body
    finally:
        conn.close()
        server.join(10)
        listener.close()
    assert not server.is_alive() and asked and asked[0].startswith(b"GET /f HTTP/1.1\r\n")


def test_a_random_range_lands_in_memory_made_while_the_server_answers(no_leaks, fault_server, monkeypatch) -> None:
    """The body of a range over libcurl lands in memory of the range's length, allocated
    (and faulted in) once the request is out and before its answer comes: a cache keeps
    what a random read brings, and new memory costs a page fault per 4 KiB. The piece a
    read hands over is a view of that memory (no copy), and the connection lets go of it
    once all of it was read."""
    data = _data(1 << 20)
    url = fault_server.add("/f", data)
    source = _pinned(url, timeout=QUICK["timeout"])
    fault_server.script("/f", [Latency(0.3)])  # the answer comes 0.3 s after the request
    before_answer = []
    original = curl.CurlConnection._pump

    def pump(self, done):
        if not before_answer:  # the first wait for the answer
            before_answer.append((self._landing, bool(self._lines)))
        original(self, done)

    monkeypatch.setattr(curl.CurlConnection, "_pump", pump)
    try:
        body = source.fetch(800_000, 864_000)
        try:
            piece = body.read_piece(64_000)
        finally:
            body.close()
        landing, answered = before_answer[0]
        assert landing is not None and len(landing) == 64_000 and not answered
        assert isinstance(piece, memoryview) and piece.obj is landing
        assert bytes(piece) == data[800_000:864_000]
        assert all(conn._landing is None for conn in list(curl_fork.LIVE))
    finally:
        source.close()


def test_a_short_answer_keeps_only_its_own_bytes(no_leaks, fault_server) -> None:
    """A server that caps every range (a CDN's slice limit) answers a 64 KiB range with
    1,000 bytes: the piece read holds those bytes, not the 64 KiB landing made for the
    answer, or the server would decide how much memory each kept piece costs."""
    data = _data(1 << 20)
    url = fault_server.add("/f", data)
    source = _pinned(url, timeout=QUICK["timeout"])
    fault_server.always("/f", CapRange(1000))
    try:
        body = source.fetch(800_000, 864_000)
        try:
            assert body.end == 801_000  # the honest Content-Range of the capped answer
            piece = body.read_piece(64_000)
        finally:
            body.close()
        holder = piece.obj if isinstance(piece, memoryview) else piece
        assert bytes(piece) == data[800_000:801_000] and len(holder) == 1000
    finally:
        source.close()


def test_the_tail_probe_keeps_to_http_client(no_leaks, fault_server, answered) -> None:
    """The suffix request sent at open (the tail probe) is not a random read, even when the
    first answer has already said that the server answers ranges: every stream sends it, and
    a process that only streams must not load libcurl (~6 MB of RSS) for it."""
    url = fault_server.add("/f", _data(1 << 20))
    source = _pinned(url, timeout=QUICK["timeout"])
    try:
        body = source.fetch_suffix(64 * KiB)
        assert body is not None
        try:
            assert body.read_piece(64 * KiB) == _data(1 << 20)[-64 * KiB :]
        finally:
            body.close()
    finally:
        source.close()
    assert answered == []
