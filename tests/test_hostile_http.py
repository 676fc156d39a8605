"""Hostile servers and careless URLs (issue #18, the HTTP rows): bounded waits, refused
framings, stored encodings, expired signed redirects, IPv6 literals, bad URLs."""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

import kithara_io
from kithara_io import ConnectionFailedError, InvalidResponseError, Retry, Timeout, TlsError
from tests.servers import RangedServer, StdlibServer
from tests.servers.faults import Header, Latency, Redirect, Status, Throttle

KiB = 1024
QUICK = Retry(attempts=2, backoff=0.05, max_backoff=0.1, jitter=0)


class _RawHandler(socketserver.BaseRequestHandler):
    """Reads one request head, answers with ``server.respond(head)`` bytes, closes."""

    def handle(self) -> None:
        self.request.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            piece = self.request.recv(4096)
            if not piece:
                return
            head += piece
        self.server.heads.append(head.decode("latin-1"))
        self.request.sendall(self.server.respond(head.decode("latin-1")))


@contextlib.contextmanager
def raw_server(respond: Callable[[str], bytes]) -> Iterator[socketserver.ThreadingTCPServer]:
    """A server answering every connection with ``respond(request head)``, for framings no
    well-behaved server sends."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _RawHandler)
    server.daemon_threads = False
    server.block_on_close = True
    server.respond = respond  # type: ignore[attr-defined]
    server.heads: List[str] = []  # type: ignore[misc]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="raw-server")
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _url(server: socketserver.TCPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.mark.parametrize("encoding", ["gzip, chunked", "identity, chunked"])
def test_a_transfer_encoding_other_than_chunked_is_refused(encoding: str, no_leaks) -> None:
    """http.client only decodes exactly ``chunked``: anything else would hand the chunk
    framing (or gzip bytes) to the caller as file data."""
    framed = b"a\r\n0123456789\r\n0\r\n\r\n"

    def respond(head: str) -> bytes:
        return (
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/10\r\n"
            + f"Transfer-Encoding: {encoding}\r\nConnection: close\r\n\r\n".encode()
            + framed
        )

    with raw_server(respond) as server:
        with pytest.raises(InvalidResponseError, match="Transfer-Encoding"):
            kithara_io.open(_url(server, "/f.bin"), retry=QUICK, tail=0)


def test_plain_chunked_framing_is_decoded(no_leaks) -> None:
    data = bytes(range(256)) * 64

    def respond(head: str) -> bytes:
        body = b"".join(b"%x\r\n%s\r\n" % (len(data[i : i + 1000]), data[i : i + 1000]) for i in range(0, len(data), 1000))
        return (
            b"HTTP/1.1 206 Partial Content\r\n"
            + f"Content-Range: bytes 0-{len(data) - 1}/{len(data)}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + body
            + b"0\r\n\r\n"
        )

    with raw_server(respond) as server:
        with kithara_io.open(_url(server, "/f.bin"), tail=0, first_fetch=len(data)) as f:
            assert f.read() == data


def test_a_416_without_content_range_means_an_empty_file(no_leaks) -> None:
    """RangeHTTPServer answers a range request for an empty file with a bare 416: the length
    is then learnt without Range."""

    def respond(head: str) -> bytes:
        if "\r\nrange:" in head.lower():
            return b"HTTP/1.1 416 Requested Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    with raw_server(respond) as server:
        with kithara_io.open(_url(server, "/empty.bin"), tail=0) as f:
            assert f.size == 0 and f.read() == b""
        assert sum("range:" not in h.lower() for h in server.heads) == 1


def test_a_stored_gz_labelled_content_encoding_is_served_as_its_bytes(fault_server, no_leaks) -> None:
    """werkzeug, Flask and twisted label a stored ``.gz`` with Content-Encoding: gzip while
    serving its stored bytes: those bytes are the file. A ``.flac`` compressed on the fly
    is still refused (test_reliability)."""
    stored = gzip.compress(bytes(range(256)) * 2000, mtime=0)
    url = fault_server.add("/archive.tar.gz", stored)
    fault_server.always("/archive.tar.gz", Header("Content-Encoding", "gzip"))
    with kithara_io.open(url, first_fetch=16 * KiB, min_fetch=16 * KiB) as f:
        f.seek(100_000)
        assert f.read(50_000) == stored[100_000:150_000]
        f.seek(0)
        assert f.read() == stored
        assert gzip.decompress(stored) == bytes(range(256)) * 2000


def test_a_stalled_server_is_bounded_by_timeout_open(fault_server, no_leaks) -> None:
    """The server accepts and never answers: open() fails after Timeout.open, whatever the
    read timeout and the retries would allow."""
    url = fault_server.add("/f", b"x" * 1000)
    fault_server.always("/f", Latency(float("inf")))
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match="Timeout.open"):
        kithara_io.open(url, timeout=Timeout(connect=1, read=30, open=1.5), retry=Retry(attempts=5))
    assert time.monotonic() - started < 5


def test_a_trickling_body_fails_by_the_speed_limit(fault_server, no_leaks) -> None:
    """Bytes every few ms never trip the read timeout: too slow for too long is a cut,
    retried, then a failure."""
    data = bytes(range(256)) * 1024
    url = fault_server.add("/f", data)
    fault_server.always("/f", Throttle(200))
    slow = Timeout(connect=2, read=30, speed_limit=5000, speed_time=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match="slower than"):
        with kithara_io.open(url, timeout=slow, retry=QUICK, tail=0) as f:
            f.read(100_000)
    assert time.monotonic() - started < 10
    assert fault_server.count("/f") >= 2  # retried before failing


def _trickle_bound(retry: Retry, timeout: Timeout, gap: float) -> float:
    """The longest a trickle may last before its failure: every attempt one ``speed_time``
    and the ``gap`` to the next byte (the check runs as bytes arrive), every backoff at its
    longest (jitter up)."""
    backoffs = sum(min(retry.max_backoff, retry.backoff * 2 ** (n - 1)) for n in range(1, retry.attempts))
    return retry.attempts * (timeout.speed_time + gap) + backoffs * (1 + retry.jitter)


def test_the_default_policy_gives_a_trickle_at_most_three_minutes() -> None:
    """The README's promise, from the defaults: 5 attempts x (30 s + 1 s to the next byte)
    plus backoff."""
    assert _trickle_bound(Retry(), Timeout(), gap=1.0) <= 180


@pytest.mark.timeout(300)
@pytest.mark.parametrize("speed_time", [1.0, 30.0] if os.environ.get("KITHARA_LONG") else [1.0])
def test_a_body_at_one_byte_per_second_fails_within_the_policys_bound(fault_server, no_leaks, speed_time) -> None:
    """A body at 1 byte/s under the default retry policy fails within attempts x speed_time
    plus backoff, as measured (``KITHARA_LONG=1`` also runs the defaults themselves: ~156 s)."""
    url = fault_server.add("/f", bytes(range(256)) * 1024)
    fault_server.always("/f", Throttle(1))
    timeout = Timeout(speed_time=speed_time)
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match="slower than 1024 bytes/s"):
        with kithara_io.open(url, timeout=timeout) as f:
            f.read(100_000)
    took = time.monotonic() - started
    assert (Retry().attempts - 1) * speed_time <= took <= _trickle_bound(Retry(), timeout, gap=1.0) + 2, took


def test_a_steady_slow_body_above_the_limit_is_fine(fault_server, no_leaks) -> None:
    data = bytes(range(256)) * 400
    url = fault_server.add("/f", data)
    fault_server.always("/f", Throttle(200_000))
    ok = Timeout(connect=2, read=30, speed_limit=50_000, speed_time=0.2)
    with kithara_io.open(url, timeout=ok, retry=QUICK, tail=0) as f:
        assert f.read() == data


def test_an_expired_signed_redirect_target_is_resolved_again(fault_server, no_leaks) -> None:
    """A CDN redirects to a signed URL that expires mid-stream (410): the stream resolves
    the URL it was given once more and goes on, since the validators still match."""
    data = bytes(range(256)) * 4096  # 1 MiB
    fault_server.add("/v1/song.flac", data, etag='"same"', last_modified=None)
    fault_server.add("/v2/song.flac", data, etag='"same"', last_modified=None)
    fault_server.always("/song.flac", Redirect("/v1/song.flac"))
    url = fault_server.url("/song.flac")
    opts = dict(first_fetch=64 * KiB, min_fetch=64 * KiB, max_fetch=64 * KiB, read_ahead=64 * KiB, tail=0)
    with kithara_io.open(url, **opts) as f:
        assert f.read(200 * KiB) == data[: 200 * KiB]
        fault_server.always("/song.flac", Redirect("/v2/song.flac"))  # the new signature first
        fault_server.always("/v1/song.flac", Status(410))
        assert f.read() == data[200 * KiB :]
    assert fault_server.count("/v2/song.flac") >= 1


def test_an_expired_redirect_target_with_another_version_fails(fault_server, no_leaks) -> None:
    data = bytes(range(256)) * 4096
    fault_server.add("/v1/a", data, etag='"one"', last_modified=None)
    fault_server.add("/v2/a", data[::-1], etag='"two"', last_modified=None)
    fault_server.always("/a", Redirect("/v1/a"))
    opts = dict(first_fetch=64 * KiB, min_fetch=64 * KiB, max_fetch=64 * KiB, read_ahead=64 * KiB, tail=0)
    with pytest.raises(kithara_io.ResourceChangedError):
        with kithara_io.open(fault_server.url("/a"), **opts) as f:
            f.read(100 * KiB)
            fault_server.always("/a", Redirect("/v2/a"))
            fault_server.always("/v1/a", Status(403))
            f.read()


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/x.flac", "file:///etc/passwd"])
def test_a_redirect_to_another_scheme_is_refused_at_once(fault_server, location: str, no_leaks) -> None:
    url = fault_server.add("/f", b"x" * 100)
    fault_server.always("/f", Redirect(location))
    started = time.monotonic()
    with pytest.raises(InvalidResponseError, match="cannot be fetched"):
        kithara_io.open(url, tail=0)
    assert time.monotonic() - started < 1
    assert fault_server.count("/f") == 1  # not retried


@pytest.mark.parametrize("url", ["http://", "http://127.0.0.1:70000/x", "https:///x", "http://[::1/x"])
def test_a_malformed_url_is_a_clear_error_at_once(url: str) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="URL"):
        kithara_io.open(url)
    assert time.monotonic() - started < 0.5


def test_an_html_file_on_a_server_without_range_support_opens(tmp_path: Path, no_leaks) -> None:
    """The captive-portal heuristic must not refuse a URL that asks for HTML."""
    page = b"<!DOCTYPE html><html><body>" + b"<p>x</p>" * 5000 + b"</body></html>"
    (tmp_path / "page.html").write_bytes(page)
    with StdlibServer(tmp_path) as server:
        with kithara_io.open(server.url("page.html")) as f:
            assert f.read() == page


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_literals_work_for_every_request(tmp_path: Path, no_leaks) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    (tmp_path / "f.bin").write_bytes(data)
    small = dict(first_fetch=16 * KiB, min_fetch=16 * KiB, max_fetch=64 * KiB, read_ahead=64 * KiB, cache_budget=1 << 20)
    with RangedServer(tmp_path, host="::1") as server:
        url = server.url("f.bin")
        assert url.startswith("http://[::1]:")
        with kithara_io.open(url, **small) as f:
            for offset in (5000, 1_500_000, 100, 2_000_000):
                f.seek(offset)
                assert f.read(70_000) == data[offset : offset + 70_000]
            # open()'s, then at least one per read that misses: 5000, 1_500_000 and 2_000_000
            # (100 is held by then). Several ranged requests, each over the IPv6 literal.
            assert f.stats().requests >= 4


def test_icy_metadata_in_a_file_of_known_length_is_refused(fault_server, no_leaks) -> None:
    """Every request asks for ICY metadata (radio sends titles only when asked); a server
    that interleaves it in a ranged file would shift every offset: refused, not stored."""
    url = fault_server.add("/song.mp3", bytes(range(256)) * 100)
    fault_server.always("/song.mp3", Header("icy-metaint", "16000"))
    with pytest.raises(InvalidResponseError, match="ICY metadata"):
        kithara_io.open(url, retry=QUICK)


@pytest.mark.parametrize("path", ["/song.flac", "/list.m3u8"])
def test_https_to_a_plain_http_port_fails_at_once_saying_so(fault_server, no_leaks, path) -> None:
    """The TLS handshake reads an HTTP answer: not retried (it will not change), one
    sentence that says what is wrong, for files and for HLS playlists alike."""
    url = fault_server.add(path, b"#EXTM3U\n" if path.endswith(".m3u8") else b"x" * 1000)
    url = url.replace("http://", "https://")
    started = time.monotonic()
    with pytest.raises(TlsError, match=r"does not speak TLS") as caught:
        kithara_io.open(url, retry=Retry(attempts=5, backoff=0.5))
    assert time.monotonic() - started < 1.0
    assert "Max retries" not in str(caught.value) and "SSLError" not in str(caught.value)


def test_a_live_reconnection_to_a_plain_http_port_is_a_tls_error(fault_server) -> None:
    """The live sources' own connections classify the handshake failure the same way."""
    from kithara_io.sources.live.connection import AbortSlot, live_client, open_http

    url = fault_server.add("/live.mp3", b"x" * 1000).replace("http://", "https://")
    with pytest.raises(TlsError, match=r"does not speak TLS"):
        open_http(live_client(url, None, Timeout(connect=2, read=2), True, 3), url, AbortSlot())
