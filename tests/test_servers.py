"""Tests of the test servers and fixtures themselves."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
import requests
import soundfile as sf

from tests.conftest import AUDIO_FILES, open_resources
from tests.servers import THREAD_PREFIX, NginxServer, RangedServer, StdlibServer
from tests.servers.media import SAMPLE_RATE, SECONDS, signal
from tests.servers.ranged import RangeNotSatisfiable, parse_range

RANDOM_SIZE = 8 * 1024 * 1024


class Response:
    def __init__(self, r: http.client.HTTPResponse, body: bytes) -> None:
        self.status = r.status
        self.version = r.version
        self.headers = r.headers
        self.body = body


def fetch(
    srv: Any, name: str, headers: Optional[dict[str, str]] = None, method: str = "GET"
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, "/" + name, headers=headers or {})
        r = conn.getresponse()
        return Response(r, r.read())
    finally:
        conn.close()


@pytest.fixture(params=["ranged", "nginx"])
def range_server(request: pytest.FixtureRequest) -> Any:
    """The servers that honour Range."""
    return request.getfixturevalue(f"{request.param}_server")


def server_threads(port: int) -> list[threading.Thread]:
    prefix = f"{THREAD_PREFIX}ranged-{port}-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


# -- media --------------------------------------------------------------------------------------


def test_media(media: dict[str, Path]) -> None:
    assert set(AUDIO_FILES) | {"random.bin", "small.bin", "empty.bin"} == set(media)
    assert media["random.bin"].stat().st_size == RANDOM_SIZE
    assert media["small.bin"].stat().st_size == 1000
    assert media["empty.bin"].stat().st_size == 0
    for name in AUDIO_FILES:
        info = sf.info(str(media[name]))
        assert (info.samplerate, info.channels) == (SAMPLE_RATE, 2)
        assert info.frames == SAMPLE_RATE * SECONDS
    data, _ = sf.read(str(media["tone.wav"]))
    np.testing.assert_allclose(data, signal(), atol=1 / 2**15)


# -- range parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=10-", (10, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=90-1000", (90, 99)),
        ("bytes=5-2", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=x-", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(value: str, expected: Optional[tuple[int, int]]) -> None:
    assert parse_range(value, 100) == expected


@pytest.mark.parametrize("value, total", [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=-5", 0)])
def test_parse_range_unsatisfiable(value: str, total: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(value, total)


# -- behaviour common to all servers --------------------------------------------------------------


def test_full_get(any_server: Any, media: dict[str, Path]) -> None:
    r = fetch(any_server, "random.bin")
    assert r.status == 200
    assert r.headers["Content-Length"] == str(RANDOM_SIZE)
    assert r.body == media["random.bin"].read_bytes()
    # nginx sends Accept-Ranges on 200 only, not on 206.
    expected = "bytes" if any_server.supports_ranges else None
    assert r.headers["Accept-Ranges"] == expected


def test_missing_file_is_404(any_server: Any) -> None:
    assert fetch(any_server, "nope.bin").status == 404


def test_requests_client_no_leaks(
    no_leaks: None, any_server: Any, media: dict[str, Path]
) -> None:
    with requests.Session() as session:
        for _ in range(3):
            r = session.get(any_server.url("small.bin"))
            assert r.content == media["small.bin"].read_bytes()


# -- ranges ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, first, last",
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=8388000-", 8388000, RANDOM_SIZE - 1),
        ("bytes=-500", RANDOM_SIZE - 500, RANDOM_SIZE - 1),
        ("bytes=-99999999", 0, RANDOM_SIZE - 1),
        ("bytes=8388600-99999999", 8388600, RANDOM_SIZE - 1),
    ],
)
def test_range(
    range_server: Any, media: dict[str, Path], spec: str, first: int, last: int
) -> None:
    r = fetch(range_server, "random.bin", {"Range": spec})
    assert r.status == 206
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{RANDOM_SIZE}"
    assert r.headers["Content-Length"] == str(last - first + 1)
    assert r.body == media["random.bin"].read_bytes()[first : last + 1]


@pytest.mark.parametrize("spec", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_is_416(range_server: Any, spec: str) -> None:
    r = fetch(range_server, "small.bin", {"Range": spec})
    assert r.status == 416
    assert r.headers["Content-Range"] == "bytes */1000"


def test_head_with_range(range_server: Any) -> None:
    r = fetch(range_server, "random.bin", {"Range": "bytes=10-19"}, method="HEAD")
    assert (r.status, r.body) == (206, b"")
    assert r.headers["Content-Range"] == f"bytes 10-19/{RANDOM_SIZE}"
    assert r.headers["Content-Length"] == "10"


def test_validators_and_if_range(range_server: Any) -> None:
    head = fetch(range_server, "small.bin", method="HEAD")
    etag, last_modified = head.headers["ETag"], head.headers["Last-Modified"]
    assert etag.startswith('"') and etag.endswith('"')  # strong
    assert last_modified.endswith(" GMT")
    cases = [
        (etag, 206),
        (last_modified, 206),
        ('"other"', 200),
        ("W/" + etag, 200),  # weak tags never match for If-Range
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
    ]
    for if_range, status in cases:
        r = fetch(range_server, "small.bin", {"Range": "bytes=0-9", "If-Range": if_range})
        assert r.status == status, if_range
        assert len(r.body) == (10 if status == 206 else 1000)


def test_empty_file_with_range(range_server: Any) -> None:
    """Servers differ: nginx ignores Range on an empty file (200); RFC 9110 says 416."""
    r = fetch(range_server, "empty.bin", {"Range": "bytes=0-"})
    assert r.body == b""
    if isinstance(range_server, NginxServer):
        assert r.status == 200
    else:
        assert (r.status, r.headers["Content-Range"]) == (416, "bytes */0")


def test_multiple_ranges(range_server: Any) -> None:
    """nginx answers multipart/byteranges; the ranged server ignores multi-ranges (200)."""
    r = fetch(range_server, "small.bin", {"Range": "bytes=0-1,5-6"})
    if isinstance(range_server, NginxServer):
        assert r.status == 206
        assert r.headers["Content-Type"].startswith("multipart/byteranges")
    else:
        assert (r.status, len(r.body)) == (200, 1000)


def test_no_delayed_ack_stall_on_keepalive(range_server: Any) -> None:
    """Small responses must not wait ~40 ms for a delayed ACK (Nagle on the ranged server,
    ``tcp_nopush`` with sendfile on nginx): 20 requests take ~10 ms, 0.9 s when stalling."""
    conn = http.client.HTTPConnection("127.0.0.1", range_server.port, timeout=10)
    try:
        start = time.monotonic()
        for i in range(20):
            first, size = i * 70000, (1000 if i % 2 else 65536)
            spec = f"bytes={first}-{first + size - 1}"
            conn.request("GET", "/random.bin", headers={"Range": spec})
            assert len(conn.getresponse().read()) == size
        assert time.monotonic() - start < 0.4
    finally:
        conn.close()


def test_stdlib_ignores_range(stdlib_server: StdlibServer, media: dict[str, Path]) -> None:
    r = fetch(stdlib_server, "small.bin", {"Range": "bytes=0-9"})
    assert (r.status, r.version) == (200, 10)
    assert "Content-Range" not in r.headers
    assert r.body == media["small.bin"].read_bytes()
    record = stdlib_server.requests[-1]
    assert (record.range, record.status, record.bytes_sent) == ("bytes=0-9", 200, 1000)


# -- ranged server specifics ------------------------------------------------------------------


def test_keepalive_and_request_log(ranged_server: RangedServer) -> None:
    ranged_server.reset_log()
    conn = http.client.HTTPConnection("127.0.0.1", ranged_server.port, timeout=10)
    try:
        for spec in ("bytes=0-99", "bytes=-10", None):
            conn.request("GET", "/small.bin", headers={"Range": spec} if spec else {})
            conn.getresponse().read()
        conn.request("HEAD", "/missing")
        conn.getresponse().read()
        sock = conn.sock
        assert sock is not None  # still the same, kept-alive connection
    finally:
        conn.close()
    got = [(r.method, r.path, r.range, r.status, r.bytes_sent) for r in ranged_server.requests]
    assert got == [
        ("GET", "/small.bin", "bytes=0-99", 206, 100),
        ("GET", "/small.bin", "bytes=-10", 206, 10),
        ("GET", "/small.bin", None, 200, 1000),
        ("HEAD", "/missing", None, 404, 0),
    ]
    ranged_server.reset_log()
    assert ranged_server.requests == []


@pytest.mark.timeout(20)
def test_bandwidth_is_a_lower_bound(make_ranged_server: Callable[..., RangedServer]) -> None:
    rate = 2_000_000.0
    srv = make_ranged_server(bandwidth=rate)
    size = 1_000_000
    start = time.monotonic()
    # Two parallel downloads share the one simulated link.
    results: list[int] = []

    def download(first: int) -> None:
        r = fetch(srv, "random.bin", {"Range": f"bytes={first}-{first + size // 2 - 1}"})
        results.append(len(r.body))

    workers = [threading.Thread(target=download, args=(i * size // 2,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - start
    assert results == [size // 2] * 2
    burst = srv.httpd.config.bucket.burst
    assert elapsed >= (size - burst) / rate


def test_latency_before_each_response(make_ranged_server: Callable[..., RangedServer]) -> None:
    srv = make_ranged_server(latency=0.15)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        for _ in range(2):
            start = time.monotonic()
            conn.request("GET", "/small.bin", headers={"Range": "bytes=0-0"})
            conn.getresponse().read()
            assert time.monotonic() - start >= 0.15
    finally:
        conn.close()


@pytest.mark.timeout(10)
def test_stop_with_idle_keepalive_client(media_dir: Path) -> None:
    srv = RangedServer(media_dir)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", "/small.bin")
        conn.getresponse().read()
        assert server_threads(srv.port)
        start = time.monotonic()
        srv.stop()  # the client still holds the connection open
        assert time.monotonic() - start < 2
        assert server_threads(srv.port) == []
        srv.stop()  # idempotent
    finally:
        conn.close()


@pytest.mark.timeout(10)
def test_stop_during_throttled_body_is_quiet(
    media_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    srv = RangedServer(media_dir, bandwidth=200_000)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", "/random.bin")
        r = conn.getresponse()
        assert len(r.read(10_000)) == 10_000
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 2
        assert server_threads(srv.port) == []
    finally:
        conn.close()
    assert capfd.readouterr().err == ""


@pytest.mark.timeout(10)
def test_client_disconnect_mid_body_is_quiet(
    media_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with RangedServer(media_dir) as srv:
        for _ in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            conn.request("GET", "/random.bin")
            conn.getresponse().read(1000)
            conn.close()
        assert fetch(srv, "small.bin").status == 200
    assert capfd.readouterr().err == ""


# -- fixtures ----------------------------------------------------------------------------------


def test_open_resources_sees_only_client_sockets(ranged_server: RangedServer) -> None:
    before = open_resources()
    conn = http.client.HTTPConnection("127.0.0.1", ranged_server.port, timeout=10)
    try:
        conn.request("GET", "/small.bin")
        conn.getresponse().read()  # the server side is open too now, and must not count
        new = open_resources() - before
        assert len(new) == 1
        (description,) = new
        assert f"-> 127.0.0.1:{ranged_server.port}" in description
    finally:
        conn.close()
    assert not open_resources() - before


def test_open_resources_sees_files_and_pipes(tmp_path: Path) -> None:
    before = open_resources()
    with open(tmp_path / "x", "wb"):
        assert len(open_resources() - before) == 1
    assert not open_resources() - before


def test_nginx_missing(monkeypatch: pytest.MonkeyPatch, media_dir: Path) -> None:
    import tests.servers.nginx as nginx_module

    monkeypatch.setenv("PATH", str(media_dir))
    monkeypatch.setattr(nginx_module, "FALLBACK_PATH", str(media_dir / "no-nginx"))
    with pytest.raises(RuntimeError, match="make test"):
        NginxServer(media_dir)


def test_nginx_serves_audio_types(nginx_server: NginxServer) -> None:
    r = fetch(nginx_server, "tone.flac", method="HEAD")
    assert r.headers["Content-Type"] == "audio/flac"
    assert r.headers["Connection"] == "keep-alive"
