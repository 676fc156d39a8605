"""One network layer for every source kind (issue 24, part 1).

Files, live streams and their reconnects, HLS playlists, segments and keys, disk-cache
revalidation: every request goes through ``kithara_io.net``, so what one source kind honours
the others do too. Against real servers on loopback: the fault server (request logs with
headers), a forward proxy with credentials (plain forwarding and CONNECT tunnels), the radio
server, a second host on 127.0.0.2.
"""

from __future__ import annotations

import os
import select
import signal
from pathlib import Path
from typing import Iterator, List

import pytest

import kithara_io
from kithara_io import Retry, Timeout
from kithara_io.disk import DiskCache
from kithara_io.net import Client, Policy
from tests.live_media import mp3_payload
from tests.servers.faults import FaultServer, Redirect
from tests.servers.hls_media import HlsMedia, make_hls_media
from tests.servers.icy import IcyServer, Station
from tests.test_auth import basic, gets, with_userinfo, write_netrc

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB
QUICK = dict(
    retry=Retry(attempts=3, backoff=0.01, max_backoff=0.05),
    timeout=Timeout(connect=2, read=5),
)
PLAYLIST = "application/vnd.apple.mpegurl"


@pytest.fixture(scope="module")
def hls_media(tmp_path_factory: pytest.TempPathFactory) -> HlsMedia:
    return make_hls_media(tmp_path_factory.mktemp("netlayer-hls").resolve())


@pytest.fixture(scope="module")
def icy_server() -> Iterator[IcyServer]:
    with IcyServer() as server:
        yield server


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return mp3_payload(4.0)


def publish(srv: FaultServer, folder: Path, prefix: str) -> None:
    """Every file of ``folder`` at ``prefix/name`` (playlists typed as such)."""
    for path in sorted(folder.iterdir()):
        if path.suffix in (".ts", ".m3u8", ".bin"):
            srv.add(
                f"{prefix}/{path.name}",
                path.read_bytes(),
                content_type=PLAYLIST if path.suffix == ".m3u8" else "video/mp2t",
            )


def aes_paths(hls_media: HlsMedia, prefix: str) -> set:
    return {
        f"{prefix}/{p.name}"
        for p in (hls_media.root / "aes").iterdir()
        if p.suffix in (".ts", ".m3u8", ".bin")
    }


def read_exactly(f, n: int) -> bytes:
    out = bytearray()
    for _ in range(100_000):
        if len(out) >= n:
            break
        chunk = f.read(min(16 * KiB, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


# -- proxies and netrc for HLS and for a radio reconnect ------------------------------------------


def test_hls_playlist_segments_and_key_go_through_an_authenticating_proxy(
    no_leaks, make_proxy, make_fault_server, clean_env, hls_media
):
    proxy = make_proxy(auth=basic("pu", "pp"))
    origin = make_fault_server()
    publish(origin, hls_media.root / "aes", "/aes")
    clean_env.setenv("http_proxy", proxy.proxy_url("pu", "pp"))
    with kithara_io.open(origin.url("/aes/index.m3u8"), **QUICK) as stream:
        assert stream.hls is not None
        assert stream.read() == hls_media.local_bytes("aes/index.m3u8")
    seen = proxy.requests
    asked = {r.path for r in origin.requests}
    assert asked == aes_paths(hls_media, "/aes") - {
        "/aes/key.info"
    }  # playlist, every segment, the key
    assert {r.target for r in seen} == {
        origin.url(p) for p in asked
    }  # each through the proxy
    assert len(seen) == len(origin.requests)
    assert all(r.proxy_authorization == basic("pu", "pp") for r in seen)
    assert all(
        r.headers.get("Proxy-Authorization") is None for r in origin.requests
    )  # not forwarded


def test_hls_over_https_goes_through_connect_tunnels(
    no_leaks, make_proxy, make_fault_server, tls_files, clean_env, hls_media
):
    proxy = make_proxy(auth=basic("pu", "pp"))
    origin = make_fault_server(tls=tls_files)
    publish(origin, hls_media.root / "aes", "/aes")
    clean_env.setenv("https_proxy", proxy.proxy_url("pu", "pp"))
    with kithara_io.open(
        origin.url("/aes/index.m3u8"), verify=str(tls_files.ca), **QUICK
    ) as stream:
        assert stream.read() == hls_media.local_bytes("aes/index.m3u8")
    tunnels = proxy.requests
    assert tunnels and all(
        r.method == "CONNECT" and r.target == f"127.0.0.1:{origin.port}"
        for r in tunnels
    )
    assert all(r.proxy_authorization == basic("pu", "pp") for r in tunnels)
    assert origin.connections == len(
        tunnels
    )  # every connection the origin saw was tunnelled
    assert {r.path for r in origin.requests} >= {"/aes/index.m3u8", "/aes/key.bin"}


def test_no_proxy_holds_for_hls(
    no_leaks, make_proxy, make_fault_server, clean_env, hls_media
):
    proxy = make_proxy()
    origin = make_fault_server()
    publish(origin, hls_media.root / "aes", "/aes")
    clean_env.setenv("http_proxy", proxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    with kithara_io.open(origin.url("/aes/index.m3u8"), **QUICK) as stream:
        assert stream.read() == hls_media.local_bytes("aes/index.m3u8")
    assert proxy.requests == [] and origin.count() > 3


def test_hls_takes_netrc_credentials_for_playlist_segments_and_key(
    no_leaks, make_fault_server, clean_env, tmp_path, hls_media
):
    origin = make_fault_server(auth=basic("netuser", "netpass"))  # 401 without them
    publish(origin, hls_media.root / "aes", "/aes")
    clean_env.setenv(
        "NETRC", str(write_netrc(tmp_path / "netrc", "127.0.0.1", "netuser", "netpass"))
    )
    with kithara_io.open(origin.url("/aes/index.m3u8"), **QUICK) as stream:
        assert stream.read() == hls_media.local_bytes("aes/index.m3u8")
    assert {r.path for r in origin.requests} == aes_paths(hls_media, "/aes") - {
        "/aes/key.info"
    }
    assert {r.status for r in origin.requests} <= {200, 206}


@pytest.mark.parametrize("via", ["proxy", "direct"])
def test_a_radio_reconnect_takes_the_proxy_and_netrc(
    no_leaks, make_proxy, icy_server, clean_env, tmp_path, mp3, via
):
    station = Station(
        payload=mp3,
        drops=2,
        drop_after=40_000,
        drop_how="close",
        framing="close",
        rate=2_000_000,
    )
    path = f"/netlayer-{via}.mp3"
    url = icy_server.add(path, station)
    clean_env.setenv(
        "NETRC", str(write_netrc(tmp_path / "netrc", "127.0.0.1", "netuser", "netpass"))
    )
    proxy = None
    if via == "proxy":
        proxy = make_proxy(auth=basic("pu", "pp"))
        clean_env.setenv("http_proxy", proxy.proxy_url("pu", "pp"))
    with kithara_io.open(url, **QUICK) as f:
        assert f.size is None and not f.seekable()  # a station
        assert len(read_exactly(f, 100_000)) == 100_000  # across two reconnects
    listeners = icy_server.listeners(path)
    assert len(listeners) >= 3
    assert all(
        x.request_headers.get("Authorization") == basic("netuser", "netpass")
        for x in listeners
    )
    if proxy is not None:
        seen = proxy.requests
        assert len(seen) == len(listeners) and all(r.target == url for r in seen)
        assert all(r.proxy_authorization == basic("pu", "pp") for r in seen)


# -- redirects ----------------------------------------------------------------------------------------


def test_a_playlist_behind_an_absolute_then_a_relative_redirect(
    no_leaks, make_fault_server, clean_env, hls_media
):
    """Each ``Location`` resolves against the URL that answered it, and the playlist's URIs
    against the last one: the segments and the key exist only beside it (on another host)."""
    a = make_fault_server(host="127.0.0.1")
    b = make_fault_server(host="127.0.0.2")
    publish(b, hls_media.root / "aes", "/x/real")
    a.always("/start.m3u8", Redirect(b.url("/x/y/moved.m3u8"), 302))
    b.always("/x/y/moved.m3u8", Redirect("../real/index.m3u8", 301))
    with kithara_io.open(a.url("/start.m3u8"), **QUICK) as stream:
        assert stream.read() == hls_media.local_bytes("aes/index.m3u8")
    assert {r.status for r in b.requests if r.path.startswith("/x/real/")} <= {200, 206}
    assert not [r for r in b.requests if r.status == 404]


# -- credentials stay home, for every source kind -----------------------------------------------------


def _credentials(kind: str, url: str, clean_env, tmp_path, host: str = "127.0.0.1"):
    if kind == "header":
        return url, {"Authorization": "Bearer secret-token"}
    if kind == "userinfo":
        return with_userinfo(url, "user", "pass"), {}
    clean_env.setenv(
        "NETRC", str(write_netrc(tmp_path / "netrc", host, "netuser", "netpass"))
    )
    return url, {}


@pytest.mark.parametrize("kind", ["header", "userinfo", "netrc"])
def test_hls_credentials_never_reach_segments_or_keys_on_another_host(
    no_leaks, make_fault_server, clean_env, tmp_path, hls_media, kind
):
    a = make_fault_server(host="127.0.0.1")
    b = make_fault_server(host="127.0.0.2")
    publish(b, hls_media.root / "aes", "/aes")
    text = (hls_media.root / "aes" / "index.m3u8").read_text()
    text = text.replace('URI="key.bin"', f'URI="{b.url("/aes/key.bin")}"').replace(
        "\nseg", f"\n{b.url('/aes/seg')}"
    )
    a.add("/index.m3u8", text.encode(), content_type=PLAYLIST)
    url, headers = _credentials(kind, a.url("/index.m3u8"), clean_env, tmp_path)
    with kithara_io.open(url, headers=headers, **QUICK) as stream:
        assert stream.read() == hls_media.local_bytes("aes/index.m3u8")
    assert all(r.headers.get("Authorization") for r in a.requests)  # given at home
    assert {r.path for r in b.requests} >= {"/aes/key.bin", "/aes/seg000.ts"}
    assert [r.path for r in b.requests if r.headers.get("Authorization")] == []


@pytest.mark.parametrize("kind", ["header", "userinfo", "netrc"])
def test_a_radio_redirected_elsewhere_never_gets_the_credentials_on_reconnects(
    no_leaks, make_fault_server, icy_server, clean_env, tmp_path, mp3, kind
):
    """The station's home redirects to the stream on another origin (another port); every
    reconnect asks home again and is sent there again, without the credentials."""
    station = Station(
        payload=mp3,
        drops=1,
        drop_after=40_000,
        drop_how="reset",
        framing="close",
        rate=2_000_000,
    )
    path = f"/elsewhere-{kind}.mp3"
    target = icy_server.add(path, station)
    home = make_fault_server(host="127.0.0.1")
    home.always("/radio", Redirect(target, 302))
    url, headers = _credentials(kind, home.url("/radio"), clean_env, tmp_path)
    with kithara_io.open(url, headers=headers, **QUICK) as f:
        assert len(read_exactly(f, 60_000)) == 60_000
    listeners = icy_server.listeners(path)
    assert len(listeners) >= 2
    assert len(home.requests) >= 2 and all(
        r.headers.get("Authorization") for r in home.requests
    )
    assert [x.request_headers.get("Authorization") for x in listeners] == [None] * len(
        listeners
    )


@pytest.mark.parametrize("kind", ["header", "userinfo", "netrc"])
def test_disk_revalidation_never_sends_the_credentials_to_another_host(
    no_leaks, make_fault_server, clean_env, tmp_path, media, kind
):
    data = Path(media["random.bin"]).read_bytes()[: 256 * KiB]
    a = make_fault_server(host="127.0.0.1")
    b = make_fault_server(host="127.0.0.2")
    b.add("/f", data)
    a.always("/f", Redirect(b.url("/f"), 302))
    url, headers = _credentials(kind, a.url("/f"), clean_env, tmp_path)
    cache = DiskCache(tmp_path / "cache")
    with kithara_io.open(url, headers=headers, cache=cache, **QUICK) as f:
        assert f.read() == data
    before = len(b.requests)
    with kithara_io.open(
        url, headers=headers, cache=cache, **QUICK
    ) as f:  # revalidates first
        assert f.read() == data
    assert len(b.requests) > before  # the revalidation went to b
    assert len(gets(a)) >= 2 and all(r.headers.get("Authorization") for r in gets(a))
    assert [r.range for r in b.requests if r.headers.get("Authorization")] == []


# -- the connections: fork safety, close ----------------------------------------------------------------


def _status_in_child(client: Client, url: str) -> int:
    """Fork; the child sends one request over ``client`` and exits with 0 if it got a 200."""
    pid = os.fork()
    if pid == 0:  # never returns into pytest
        code = 1
        try:
            response = client.request("GET", url)
            body = response.read()
            response.release_conn()
            client.close()
            code = 0 if response.status == 200 and body == b"x" * 1000 else 2
        finally:
            os._exit(code)
    r, w = os.pipe()  # a bounded wait for the child, without sleeping
    try:
        for _ in range(600):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            select.select([r], [], [], 0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the child hangs")
    finally:
        os.close(r)
        os.close(w)


def test_after_fork_the_child_opens_its_own_connections(
    no_leaks, make_fault_server, clean_env
):
    """An idle kept-alive connection of the parent is never used by the child (both would
    read answers from one socket); the parent's own goes on serving the parent."""
    srv = make_fault_server()
    url = srv.add("/f", b"x" * 1000)
    client = Client(Policy(url, timeout=Timeout(connect=2, read=5)))
    try:
        first = client.request("GET", url)
        assert first.read() == b"x" * 1000
        first.release_conn()  # kept alive, idle in the pool
        assert _status_in_child(client, url) == 0
        again = client.request("GET", url)
        assert again.read() == b"x" * 1000
        again.release_conn()
    finally:
        client.close()
    connections = [r.connection for r in srv.requests]
    assert len(connections) == 3
    assert connections[0] == connections[2]  # the parent kept its connection
    assert connections[1] != connections[0]  # the child opened its own


def test_close_leaves_no_connection_behind_for_any_source_kind(
    no_leaks, make_fault_server, icy_server, clean_env, hls_media, mp3
):
    srv = make_fault_server()
    publish(srv, hls_media.root / "aes", "/aes")
    data_url = srv.add("/f", b"y" * (300 * KiB))
    radio = icy_server.add(
        "/close-all.mp3", Station(payload=mp3, framing="chunked", rate=2_000_000)
    )
    streams: List = []
    try:
        streams.append(kithara_io.open(data_url, **QUICK))
        streams.append(kithara_io.open(srv.url("/aes/index.m3u8"), **QUICK))
        streams.append(kithara_io.open(radio, **QUICK))
        assert streams[0].read(1000) == b"y" * 1000
        assert len(streams[1].read(1000)) == 1000
        assert len(read_exactly(streams[2], 1000)) == 1000
    finally:
        for stream in streams:
            stream.close()


def test_a_body_fills_the_callers_buffer_in_one_call(
    no_leaks, make_fault_server, clean_env, media, monkeypatch
):
    """``HttpBody.readinto_piece``: the bytes land in the caller's memory, equal to the file,
    and the connection is kept for the next request once the body is read to its end (over
    http.client: small ranges would otherwise go over libcurl, see test_curl.py)."""
    from kithara_io.net import curl
    from kithara_io.sources.http import HttpSource

    monkeypatch.setattr(curl, "usable", False)

    data = Path(media["random.bin"]).read_bytes()[: 512 * KiB]
    srv = make_fault_server()
    url = srv.add("/f", data)
    source = HttpSource(url, timeout=Timeout(connect=2, read=5))
    try:
        for start in (0, 100_000, 300_000):
            body = source.fetch(start, start + 200 * KiB)
            buf = bytearray(256 * KiB)
            n = body.readinto_piece(memoryview(buf))
            assert (
                n == min(200 * KiB, len(data) - start)
                and body.readinto_piece(memoryview(buf)[n:]) == 0
            )
            assert bytes(buf[:n]) == data[start : start + n]
            body.close()
    finally:
        source.close()
    assert len({r.connection for r in srv.requests}) == 1


def test_a_sequential_reader_receives_whole_blocks_straight_into_the_cache(
    no_leaks, make_fault_server, clean_env, media, monkeypatch
):
    """Once a body's rate is measured, pieces that fill cache blocks are read from the socket
    into the block itself (``readinto_piece``), not into a new ``bytes`` then copied: most
    of the file, and the bytes equal it."""
    from kithara_io.sources.transport import HttpBody

    from kithara_io.reading.blocks import BLOCK_SIZE

    data = Path(media["random.bin"]).read_bytes()
    data = (data * (8 * MiB // len(data) + 1))[: 8 * MiB + 12345]
    received = {"into": 0, "bytes": 0}
    whole_blocks_as_bytes = []
    into, piece = HttpBody.readinto_piece, HttpBody.read_piece

    def counted_into(self, buf):
        n = into(self, buf)
        received["into"] += n
        return n

    def counted_piece(self, n):
        pos = self.position
        got = piece(self, n)
        received["bytes"] += len(got)
        if pos % BLOCK_SIZE == 0 and len(got) == BLOCK_SIZE:
            whole_blocks_as_bytes.append(pos)
        return got

    monkeypatch.setattr(HttpBody, "readinto_piece", counted_into)
    monkeypatch.setattr(HttpBody, "read_piece", counted_piece)
    srv = make_fault_server()
    url = srv.add("/f", data)
    with kithara_io.open(url, timeout=Timeout(connect=2, read=5)) as f:
        got = b"".join(iter(lambda: f.read(MiB), b""))
    assert got == data
    # Pieces of blocks a fetch fills only partly (the first answer, the tail, a fetch that
    # starts late in a block) stay bytes; how many depends on how the fetches fell (3-4 of
    # 8 MiB in a loaded run, under 1 in a quiet one). A whole block never does, and before,
    # none went straight in.
    assert whole_blocks_as_bytes == [], received
    assert received["into"] >= BLOCK_SIZE, received


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_one_tls_context_from_the_environment_serves_files_hls_and_live(
    no_leaks, make_fault_server, tls_files, clean_env, tmp_path, hls_media, variable
):
    """The CA bundle named by the environment is trusted by every source kind, and loaded
    once for all their connections (HLS used to load none of it, and its pool a context per
    connection)."""
    import ssl

    loads = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self, *args, **kwargs):
        loads.append(args or kwargs)
        return original(self, *args, **kwargs)

    clean_env.setattr(ssl.SSLContext, "load_verify_locations", counting)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        clean_env.delenv(name, raising=False)
    bundle = tmp_path / f"bundle-{variable}.pem"  # a file no earlier test loaded
    bundle.write_bytes(tls_files.ca.read_bytes())
    clean_env.setenv(variable, str(bundle))
    srv = make_fault_server(tls=tls_files)
    publish(srv, hls_media.root / "aes", "/aes")
    data = b"z" * (200 * KiB)
    url = srv.add("/f", data)
    with kithara_io.open(srv.url("/aes/index.m3u8"), **QUICK) as stream:
        assert stream.read() == hls_media.local_bytes("aes/index.m3u8")
    with kithara_io.open(
        url, **dict(QUICK, min_fetch=32 * KiB, max_fetch=32 * KiB, max_outstanding=3)
    ) as f:
        assert f.read() == data
    assert srv.connections >= 2
    assert [a for a in loads if str(bundle) in str(a)] == loads and len(loads) == 1, (
        loads
    )


def test_an_hls_request_waiting_for_its_answer_is_cut_by_its_abort(
    no_leaks, make_fault_server, clean_env
):
    """A far seek cancels a segment fetch that waits for its answer at once (the abort knows
    the connection from the moment it is connected), not when the server answers."""
    import math
    import threading

    from kithara_io.sources.hls.transport import Abort, Transport
    from tests.servers.faults import Latency

    srv = make_fault_server()
    url = srv.add("/seg.ts", b"s" * 10_000)
    srv.always("/seg.ts", Latency(math.inf))  # never answers, until the server stops
    transport = Transport(timeout=Timeout(connect=2, read=30), home=url)
    abort = Abort()
    failed: list = []

    def fetch() -> None:
        try:
            transport.open(url, 0, 1000, abort)
        except kithara_io.StreamError as exc:
            failed.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    try:
        assert srv.wait_requests(1, "/seg.ts", timeout=10)
        abort.abort()
        thread.join(
            5
        )  # a read timeout of 30 s: returning within 5 s is the abort's doing
        assert not thread.is_alive()
        assert len(failed) == 1 and url in str(failed[0])
    finally:
        abort.abort()
        thread.join(35)
        transport.close()


def test_an_icy_station_is_asked_the_icy_way_on_every_reconnect(
    no_leaks, icy_server, clean_env, mp3
):
    """An ``ICY 200 OK`` server: the first request learns it (an HTTP attempt, then the raw
    request); each reconnect asks the raw way at once, one connection per reconnect."""
    station = Station(
        payload=mp3,
        drops=2,
        drop_after=40_000,
        drop_how="reset",
        framing="icy",
        rate=2_000_000,
    )
    path = "/netlayer-icy.mp3"
    url = icy_server.add(path, station)
    with kithara_io.open(url, tail=0, **QUICK) as f:  # tail=0: one first request
        assert len(read_exactly(f, 100_000)) == 100_000  # across two reconnects
    assert len(icy_server.listeners(path)) == 2 + 2


def test_response_headers_are_read_once_and_looked_up_without_regard_to_case():
    """``Headers``: what the engine asks of an answer (first value of a field, any case),
    and every field as sent for those that repeat (cookies)."""
    from kithara_io.net.response import Headers

    fields = [
        ("Content-Range", "bytes 0-9/100"),
        ("Set-Cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; Path=/"),
        ("ETag", '"x"'),
    ]
    headers = Headers(fields)
    assert headers.get("content-range") == headers["CONTENT-RANGE"] == "bytes 0-9/100"
    assert headers.get("Set-Cookie") == "a=1; Path=/"  # the first, as http.client's message
    assert headers.get_all("SET-COOKIE") == ["a=1; Path=/", "b=2; Path=/"]
    assert headers.get_all("Location", []) == [] and headers.get("Location") is None
    assert "etag" in headers and "Location" not in headers and 3 not in headers
    assert list(headers) == ["Content-Range", "Set-Cookie", "ETag"] and len(headers) == 3
    assert headers.items() == fields
    with pytest.raises(KeyError):
        headers["Location"]
