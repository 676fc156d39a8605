"""Self-test of tests/servers/faults.py: every fault does what it says, seen from real clients."""

from __future__ import annotations

import gzip
import http.client
import math
import socket
import struct
import threading
import time

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.servers.faults import (
    UNSATISFIABLE,
    BadContentRange,
    CapRange,
    ChangedETag,
    ChangedLength,
    Chunked,
    Disconnect,
    FaultServer,
    Gzip,
    HtmlPage,
    IgnoreRange,
    Latency,
    NoContentLength,
    NoContentRange,
    Normal,
    Redirect,
    Reset,
    Stall,
    StallForever,
    Status,
    Throttle,
    Truncate,
    WrongContentRange,
    parse_range,
)

pytestmark = pytest.mark.timeout(20)

DATA = bytes((i * 7 + i // 256) % 256 for i in range(100_000))
T = 5.0  # client timeout for anything that should answer promptly


@pytest.fixture
def srv():
    server = FaultServer()
    server.add("/f", DATA)
    try:
        yield server
    finally:
        server.stop()
        assert server.alive_threads() == []
        assert server.errors == []


def get(srv, path="/f", headers=None, method="GET", timeout=T):
    """One request on a fresh http.client connection -> (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def raw_exchange(srv, path="/f", extra=b"", timeout=T):
    """Send one request on a raw socket, read until EOF or error -> (bytes, error or None)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError as exc:
                return got, exc
            if not chunk:
                return got, None
            got += chunk
    finally:
        s.close()


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


# -- normal behaviour -------------------------------------------------------------------------


def test_whole_body_and_headers(srv):
    status, h, body = get(srv)
    assert status == 200 and body == DATA
    assert h["Content-Length"] == str(len(DATA))
    assert h["Accept-Ranges"] == "bytes"
    assert h["ETag"] == srv.etag("/f") and h["ETag"].startswith('"')
    assert h["Last-Modified"] == srv.last_modified("/f")
    assert h["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "spec, first, last",
    [
        ("0-0", 0, 0),
        ("10-19", 10, 19),
        ("99990-", 99990, 99999),
        ("99990-200000", 99990, 99999),
        ("-10", 99990, 99999),
        ("-200000", 0, 99999),
        ("0-", 0, 99999),
    ],
)
def test_single_ranges(srv, spec, first, last):
    status, h, body = get(srv, headers={"Range": f"bytes={spec}"})
    assert status == 206
    assert h["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert body == DATA[first : last + 1]
    assert h["Content-Length"] == str(last - first + 1)


@pytest.mark.parametrize("spec", ["100000-", "100000-100005", "-0"])
def test_unsatisfiable_range_is_416(srv, spec):
    status, h, body = get(srv, headers={"Range": f"bytes={spec}"})
    assert status == 416 and body == b""
    assert h["Content-Range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("value", ["bytes=5-1", "bytes=a-b", "bytes=0-1,5-9", "items=0-1", "bytes"])
def test_invalid_or_multi_range_ignored(srv, value):
    status, h, body = get(srv, headers={"Range": value})
    assert status == 200 and body == DATA


def test_head(srv):
    status, h, body = get(srv, method="HEAD", headers={"Range": "bytes=0-9"})
    assert status == 200 and body == b""
    assert h["Content-Length"] == str(len(DATA))
    assert h["Accept-Ranges"] == "bytes" and h["ETag"] == srv.etag("/f")
    assert srv.last("/f").method == "HEAD"


def test_unknown_path_is_404(srv):
    status, _, body = get(srv, "/missing")
    assert status == 404 and body


def test_if_range(srv):
    etag, lm = srv.etag("/f"), srv.last_modified("/f")
    for validator, expect in [(etag, 206), (lm, 206), ('"other"', 200), ("W/" + etag, 200)]:
        status, h, body = get(srv, headers={"Range": "bytes=5-9", "If-Range": validator})
        assert status == expect, validator
        assert body == (DATA[5:10] if expect == 206 else DATA)
    rec = srv.last("/f")
    assert rec.range == "bytes=5-9" and rec.if_range == "W/" + etag
    assert rec.headers.get("if-range") == "W/" + etag


def test_replace_changes_validators_and_if_range_gets_200(srv):
    old_etag, old_lm = srv.etag("/f"), srv.last_modified("/f")
    new = DATA[::-1]
    srv.replace("/f", new)
    assert srv.etag("/f") != old_etag and srv.last_modified("/f") != old_lm
    status, h, body = get(srv, headers={"Range": "bytes=0-9", "If-Range": old_etag})
    assert status == 200 and body == new and h["ETag"] == srv.etag("/f")
    status, _, body = get(srv, headers={"Range": "bytes=0-9", "If-Range": old_lm})
    assert status == 200 and body == new
    status, _, body = get(srv, headers={"Range": "bytes=0-9", "If-Range": srv.etag("/f")})
    assert status == 206 and body == new[:10]
    # same bytes again: still a new version
    e = srv.etag("/f")
    srv.replace("/f", new)
    assert srv.etag("/f") != e


def test_explicit_and_absent_validators(srv):
    srv.add("/plain", b"abc", etag=None, last_modified=None, content_type="audio/wav")
    _, h, _ = get(srv, "/plain")
    assert "ETag" not in h and "Last-Modified" not in h and h["Content-Type"] == "audio/wav"
    srv.replace("/plain", b"abcd")
    _, h, body = get(srv, "/plain")
    assert "ETag" not in h and body == b"abcd"
    srv.add("/tagged", b"x", etag='"v1"')
    assert get(srv, "/tagged")[1]["ETag"] == '"v1"'


def test_keep_alive_reuses_connection(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=T)
    try:
        for spec in ("0-9", "10-19", "-5"):
            conn.request("GET", "/f", headers={"Range": f"bytes={spec}"})
            resp = conn.getresponse()
            assert resp.status == 206
            resp.read()
    finally:
        conn.close()
    assert srv.wait_idle()
    recs = srv.requests
    assert len(recs) == 3 and len({r.connection for r in recs}) == 1
    assert srv.connections == 1
    assert [r.outcome for r in recs] == ["ok"] * 3


def test_empty_resource(srv):
    srv.add("/empty", b"")
    assert get(srv, "/empty")[0] == 200
    status, h, _ = get(srv, "/empty", headers={"Range": "bytes=0-"})
    assert status == 416 and h["Content-Range"] == "bytes */0"


# -- scripting ----------------------------------------------------------------------------------


def test_script_consumed_in_order_then_normal(srv):
    srv.script("/f", [Status(503, retry_after="1"), None, Status(404), Normal()])
    assert srv.pending("/f") == 4
    statuses = [get(srv)[0] for _ in range(5)]
    assert statuses == [503, 200, 404, 200, 200]
    assert srv.pending("/f") == 0
    assert srv.count("/f") == 5
    faults = [r.fault for r in srv.requests]
    assert faults == [Status(503, retry_after="1"), None, Status(404), Normal(), None]


def test_always_and_clear(srv):
    srv.always("/f", Status(500))
    assert [get(srv)[0] for _ in range(3)] == [500, 500, 500]
    srv.script("/f", [Status(404)])  # a script wins over always
    assert get(srv)[0] == 404
    assert get(srv)[0] == 500
    srv.always("/f", None)
    assert get(srv)[0] == 200


def test_method_specific_faults(srv):
    srv.always("/f", Status(405), method="HEAD")
    srv.script("/f", [Status(503)], method="GET")
    assert get(srv, method="HEAD")[0] == 405
    assert get(srv)[0] == 503
    assert get(srv)[0] == 200
    assert get(srv, method="HEAD")[0] == 405
    assert srv.count("/f", method="HEAD") == 2 and srv.count("/f", method="GET") == 2


def test_combined_faults_in_one_request(srv):
    srv.script("/f", [(Latency(0.2), Reset(after_bytes=5))])
    t0 = time.monotonic()
    raw, err = raw_exchange(srv)
    assert time.monotonic() - t0 >= 0.2
    assert isinstance(err, ConnectionResetError)
    assert split_response(raw)[2] == DATA[:5]


def test_invalid_fault_rejected(srv):
    with pytest.raises(TypeError):
        srv.script("/f", ["reset"])


# -- body faults --------------------------------------------------------------------------------


def test_reset_raw_socket_sees_rst_after_n_bytes(srv):
    srv.script("/f", [Reset(after_bytes=1000)])
    raw, err = raw_exchange(srv)
    assert isinstance(err, ConnectionResetError)  # RST, not a clean FIN
    status, h, body = split_response(raw)
    assert status == 200 and h["content-length"] == str(len(DATA))
    assert body == DATA[:1000]
    assert srv.wait_idle()
    rec = srv.last("/f")
    assert rec.outcome == "reset" and rec.bytes_sent == 1000 and rec.fault == Reset(1000)


def test_reset_seen_by_requests_and_http_client(srv):
    srv.script("/f", [Reset(after_bytes=500), Reset(after_bytes=700)])
    broken = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    with pytest.raises(broken):
        requests.get(srv.url("/f"), timeout=T)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=T)
    try:
        conn.request("GET", "/f", headers={"Range": "bytes=100-"})
        resp = conn.getresponse()
        assert resp.status == 206
        assert resp.read(700) == DATA[100:800]
        with pytest.raises(ConnectionResetError):
            resp.read(1)
    finally:
        conn.close()


def test_reset_right_after_headers(srv):
    srv.script("/f", [Reset(0)])
    raw, err = raw_exchange(srv)
    assert isinstance(err, ConnectionResetError)
    assert split_response(raw)[2] == b""


def test_truncate_clean_close_with_short_body(srv):
    srv.script("/f", [Truncate(after_bytes=1234), Truncate(after_bytes=10)])
    raw, err = raw_exchange(srv)
    assert err is None  # clean FIN
    status, h, body = split_response(raw)
    assert int(h["content-length"]) == len(DATA) and body == DATA[:1234]
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=T)
    try:
        conn.request("GET", "/f", headers={"Range": "bytes=50-99"})
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == DATA[50:60]
    finally:
        conn.close()
    assert srv.wait_idle()
    assert [r.outcome for r in srv.requests] == ["truncated", "truncated"]


def test_stall_longer_than_read_timeout(srv):
    srv.script("/f", [Stall(30, after_bytes=10)])
    r = requests.get(srv.url("/f"), stream=True, timeout=(T, 0.3))
    assert r.status_code == 200
    it = r.iter_content(10)
    assert next(it) == DATA[:10]
    with pytest.raises(requests.exceptions.ConnectionError):
        next(it)
    r.close()
    t0 = time.monotonic()
    srv.stop()  # interrupts the 30 s stall
    assert time.monotonic() - t0 < 2
    assert srv.last("/f").outcome == "stopped"


def test_short_stall_then_complete(srv):
    srv.script("/f", [Stall(0.3, after_bytes=100)])
    t0 = time.monotonic()
    status, _, body = get(srv)
    assert time.monotonic() - t0 >= 0.3
    assert status == 200 and body == DATA


def test_stall_forever_until_stop(srv):
    srv.script("/f", [StallForever(after_bytes=20)])
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=0.3)
    try:
        conn.request("GET", "/f")
        resp = conn.getresponse()
        assert resp.read(20) == DATA[:20]
        with pytest.raises(TimeoutError):
            resp.read(1)
        names = [t.name for t in threading.enumerate()]
        assert sum(n.startswith("test-server-") for n in names) >= 2  # acceptor + connection
        t0 = time.monotonic()
        srv.stop()
        srv.stop()  # idempotent
        assert time.monotonic() - t0 < 2
        assert srv.alive_threads() == []
    finally:
        conn.close()
    assert srv.last("/f").outcome == "stopped"


def test_latency_delays_headers_and_infinite_latency_is_interruptible(srv):
    srv.script("/f", [Latency(0.25), Latency(math.inf)])
    t0 = time.monotonic()
    assert get(srv)[2] == DATA
    assert time.monotonic() - t0 >= 0.25
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=0.3)
    try:
        conn.request("GET", "/f")
        with pytest.raises(TimeoutError):
            conn.getresponse()
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 2
    finally:
        conn.close()


def test_throttle_limits_rate(srv):
    srv.script("/f", [Throttle(40_000)])
    t0 = time.monotonic()
    status, _, body = get(srv, headers={"Range": "bytes=0-19999"})
    elapsed = time.monotonic() - t0
    assert status == 206 and body == DATA[:20000]
    # 20000 B at 40 kB/s with a 2000 B burst: >= 0.45 s
    assert 0.4 <= elapsed < 5


# -- status / header faults ---------------------------------------------------------------------


def test_status_with_retry_after_body_and_headers(srv):
    srv.script(
        "/f",
        [
            Status(429, retry_after="2", body=b"slow down", headers={"X-Why": "quota"}),
            Status(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
            Status(408, close=True),
            Status(403),
        ],
    )
    status, h, body = get(srv)
    assert (status, h["Retry-After"], body, h["X-Why"]) == (429, "2", b"slow down", "quota")
    status, h, _ = get(srv)
    assert status == 503 and h["Retry-After"].startswith("Wed,")
    status, h, _ = get(srv)
    assert status == 408 and h["Connection"] == "close"
    assert get(srv)[0] == 403


def test_wrong_content_range_lies_but_sends_requested_bytes(srv):
    srv.script("/f", [WrongContentRange(5), WrongContentRange(-3)])
    status, h, body = get(srv, headers={"Range": "bytes=100-199"})
    assert status == 206 and h["Content-Range"] == f"bytes 105-204/{len(DATA)}"
    assert body == DATA[100:200]
    status, h, body = get(srv)  # no Range: treated as bytes=0-
    assert status == 206 and h["Content-Range"] == f"bytes -3-{len(DATA) - 4}/{len(DATA)}"
    assert body == DATA


def test_bad_and_missing_content_range(srv):
    srv.script(
        "/f", [BadContentRange("bytes garbage"), BadContentRange("bytes 0-9/*"), NoContentRange()]
    )
    status, h, body = get(srv, headers={"Range": "bytes=0-9"})
    assert status == 206 and h["Content-Range"] == "bytes garbage" and body == DATA[:10]
    assert get(srv, headers={"Range": "bytes=0-9"})[1]["Content-Range"] == "bytes 0-9/*"
    status, h, body = get(srv, headers={"Range": "bytes=0-9"})
    assert status == 206 and "Content-Range" not in h and body == DATA[:10]


def test_ignore_range(srv):
    srv.always("/f", IgnoreRange())
    status, h, body = get(srv, headers={"Range": "bytes=10-19"})
    assert status == 200 and body == DATA and "Accept-Ranges" not in h and "Content-Range" not in h


def test_cap_range(srv):
    srv.always("/f", CapRange(1000))
    status, h, body = get(srv, headers={"Range": "bytes=500-"})
    assert status == 206 and h["Content-Range"] == f"bytes 500-1499/{len(DATA)}"
    assert body == DATA[500:1500]
    assert get(srv, headers={"Range": "bytes=0-9"})[2] == DATA[:10]
    assert get(srv)[2] == DATA


def test_changed_etag(srv):
    srv.script("/f", [ChangedETag(), ChangedETag('"fixed"')])
    status, h, body = get(srv, headers={"Range": "bytes=0-9", "If-Range": srv.etag("/f")})
    assert status == 206 and body == DATA[:10]
    assert h["ETag"] != srv.etag("/f") and h["ETag"].startswith('"')
    assert get(srv)[1]["ETag"] == '"fixed"'
    assert get(srv)[1]["ETag"] == srv.etag("/f")


def test_changed_length(srv):
    srv.script("/f", [ChangedLength(5000), ChangedLength(5000), ChangedLength(7)])
    status, h, body = get(srv, headers={"Range": "bytes=10-19"})
    assert status == 206 and h["Content-Range"] == "bytes 10-19/5000" and body == DATA[10:20]
    _, h, _ = get(srv, method="HEAD")
    assert h["Content-Length"] == "5000"
    status, h, _ = get(srv, headers={"Range": "bytes=200000-"})
    assert status == 416 and h["Content-Range"] == "bytes */7"


def test_html_page(srv):
    srv.script("/f", [HtmlPage(), HtmlPage(status=511)])
    status, h, body = get(srv, headers={"Range": "bytes=0-9"})
    assert status == 200 and h["Content-Type"].startswith("text/html")
    assert body.lstrip().lower().startswith(b"<!doctype html") and "Content-Range" not in h
    assert get(srv)[0] == 511


def test_gzip_regardless_of_accept_encoding(srv):
    srv.script("/f", [Gzip(), Gzip()])
    status, h, body = get(srv, headers={"Range": "bytes=0-999", "Accept-Encoding": "identity"})
    assert status == 206 and h["Content-Encoding"] == "gzip"
    assert h["Content-Range"] == f"bytes 0-999/{len(DATA)}"
    assert gzip.decompress(body) == DATA[:1000] and int(h["Content-Length"]) == len(body)
    r = requests.get(srv.url("/f"), headers={"Accept-Encoding": "identity"}, timeout=T)
    assert r.headers["Content-Encoding"] == "gzip" and r.content == DATA  # requests decodes


def test_redirect_chain_absolute_and_loop(srv):
    srv.always("/a", Redirect("/b"))
    srv.always("/b", Redirect(srv.url("/f"), code=301))
    r = requests.get(srv.url("/a"), timeout=T)
    assert r.status_code == 200 and r.content == DATA
    assert [h.status_code for h in r.history] == [302, 301]
    status, h, _ = get(srv, "/a")
    assert status == 302 and h["Location"] == "/b"
    srv.always("/loop", Redirect("/loop", code=307))
    with pytest.raises(requests.exceptions.TooManyRedirects):
        requests.get(srv.url("/loop"), timeout=T)
    assert srv.count("/loop") > 10


def test_disconnect_without_response(srv):
    srv.script("/f", [Disconnect(), Disconnect(rst=True)])
    with pytest.raises(http.client.RemoteDisconnected):
        get(srv)
    raw, err = raw_exchange(srv)
    assert raw == b"" and isinstance(err, ConnectionResetError)
    assert srv.wait_idle()
    assert [r.outcome for r in srv.requests] == ["disconnected", "disconnected"]


def test_chunked_and_no_content_length(srv):
    srv.script("/f", [Chunked(), NoContentLength(), (Chunked(), Truncate(100))])
    status, h, body = get(srv, headers={"Range": "bytes=0-99999"})
    assert status == 206 and h["Transfer-Encoding"] == "chunked" and "Content-Length" not in h
    assert body == DATA
    raw, err = raw_exchange(srv)
    status, hh, body = split_response(raw)
    assert err is None and "content-length" not in hh and hh["connection"] == "close"
    assert body == DATA
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=T)
    try:
        conn.request("GET", "/f")
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
    finally:
        conn.close()


# -- robustness ---------------------------------------------------------------------------------


def test_client_disconnects_are_quiet(capfd):
    big = bytes(64 * 1024 * 1024)  # more than the socket buffers hold
    with FaultServer() as server:
        server.add("/big", big)
        server.script("/big", [Normal(), Throttle(1_000_000), Stall(0.1, after_bytes=10)])
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=T)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST with the body half sent
        # an unsupported method and an idle keep-alive connection left open
        raw_sock = socket.create_connection(("127.0.0.1", server.port), timeout=T)
        raw_sock.sendall(b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw_sock.recv(100).startswith(b"HTTP/1.1 501")
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=T)
        assert server.wait_idle()
        assert {r.outcome for r in server.requests} == {"client-gone"}
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 3
        idle.close()
        raw_sock.close()
    assert server.alive_threads() == [] and server.errors == []
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_stop_idempotent_and_threads_named():
    server = FaultServer()
    server.add("/x", b"hello")
    assert requests.get(server.url("/x"), timeout=T).content == b"hello"
    names = {t.name for t in server.alive_threads()}
    assert names and all(n.startswith("test-server-") for n in names)
    server.stop()
    server.stop()
    assert server.stopped and server.alive_threads() == []
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url("/x"), timeout=T)


def test_concurrent_requests(srv):
    results = []

    def worker(i):
        s = requests.Session()
        for j in range(10):
            a = (i * 1000 + j * 97) % len(DATA)
            r = s.get(srv.url("/f"), headers={"Range": f"bytes={a}-{a + 999}"}, timeout=T)
            results.append(r.content == DATA[a : a + 1000])
        s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 80 and all(results)


# -- parse_range --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.integers(0, 10_000))
def test_parse_range_never_raises_and_stays_in_bounds(text, total):
    for value in (text, "bytes=" + text):
        r = parse_range(value, total)
        if isinstance(r, tuple):
            first, last = r
            assert 0 <= first <= last < total
        else:
            assert r is None or r == UNSATISFIABLE


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1000), st.integers(0, 1200), st.one_of(st.none(), st.integers(0, 1200)))
def test_parse_range_matches_python_slicing(total, a, b):
    data = bytes(range(256)) * 4
    data = data[:total]
    r = parse_range(f"bytes={a}-{'' if b is None else b}", total)
    if b is not None and b < a:
        assert r is None
    elif a >= total:
        assert r == UNSATISFIABLE
    else:
        first, last = r
        assert data[first : last + 1] == data[a : (None if b is None else b + 1)]
    s = parse_range(f"bytes=-{a}", total)
    if a == 0 or total == 0:
        assert s == UNSATISFIABLE
    else:
        assert data[s[0] : s[1] + 1] == data[-a:]
