"""Idle connections shared by the streams of one origin (``net.connections.SharedIdle``): a
second stream starts on a connection the first one left (no TCP or TLS handshake), never
on one set up under other TLS settings or another proxy's credentials; a stream closing
leaves alone the connection another stream took from it; the last one closing closes them
all (``no_leaks``)."""

from __future__ import annotations

import gc
import os
import threading

import pytest

import kithara_io
from kithara_io.net import curl
from kithara_io.events import RequestCancelled, RequestCompleted, RequestEnqueued, RequestFailed
from tests.servers.faults import Latency, StallForever
from tests.test_auth import basic

DATA_A = os.urandom(300_000)
DATA_B = os.urandom(200_000)
ONE = {"tail": 0, "read_ahead": 1, "max_outstanding": 1}  # one request at a time per stream


class Requests:
    """A stream's requests, counted from its events (``on_event``): ``settle`` waits until
    none is running. A request completes after its body gave the connection back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0

    def __call__(self, event) -> None:
        with self._cond:
            if isinstance(event, RequestEnqueued):
                self._running += 1
            elif isinstance(event, (RequestCompleted, RequestFailed, RequestCancelled)):
                self._running -= 1
            self._cond.notify_all()

    def settle(self, timeout: float = 10) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self._running == 0, timeout), "requests still running"


def open_settled(url: str, **options):
    """Open ``url``, read it whole, and wait until its connections are idle (shared)."""
    requests = Requests()
    stream = kithara_io.open(url, on_event=requests, **ONE, **options)
    data = stream.read()
    requests.settle()
    return stream, data


def connections_of(server, path: str) -> set:
    return {r.connection for r in server.requests if r.path == path}


def first_connection(server, path: str) -> int:
    return next(r.connection for r in server.requests if r.path == path)


@pytest.mark.timeout(30)
def test_a_second_stream_of_an_origin_starts_on_a_connection_the_first_one_left(fault_server, no_leaks):
    a, b = fault_server.add("/a.bin", DATA_A), fault_server.add("/b.bin", DATA_B)
    fa, data = open_settled(a)
    with fa:
        assert data == DATA_A
        with kithara_io.open(b, **ONE) as fb:
            assert fb.read() == DATA_B
        # b's first request went on a's idle connection (its later ones may run two at once)
        assert first_connection(fault_server, "/b.bin") in connections_of(fault_server, "/a.bin")
    # closed with the last stream: no_leaks finds no socket left


@pytest.mark.timeout(30)
def test_streams_with_other_tls_settings_never_share_a_connection(tls_fault_server, tls_files, no_leaks):
    srv = tls_fault_server
    a, b, c = srv.add("/a.bin", DATA_A), srv.add("/b.bin", DATA_B), srv.add("/c.bin", DATA_B)
    fa, data = open_settled(a, verify=str(tls_files.ca))
    with fa:
        assert data == DATA_A
        with kithara_io.open(b, verify=False, **ONE) as fb:  # never checks the certificate
            assert fb.read() == DATA_B
        assert not connections_of(srv, "/b.bin") & connections_of(srv, "/a.bin")
        with kithara_io.open(c, verify=str(tls_files.ca), **ONE) as fc:  # the same settings as a
            assert fc.read() == DATA_B
        assert first_connection(srv, "/c.bin") in connections_of(srv, "/a.bin")
        # ... and a stream verifying never takes the one set up without verification
        assert not connections_of(srv, "/c.bin") & connections_of(srv, "/b.bin")


@pytest.mark.timeout(30)
def test_streams_through_a_proxy_with_other_credentials_never_share_a_connection(
    fault_server, no_leaks, make_proxy, monkeypatch
):
    proxy = make_proxy()
    a, b, c = fault_server.add("/a.bin", DATA_A), fault_server.add("/b.bin", DATA_B), fault_server.add("/c.bin", DATA_B)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    def through(user: str):
        monkeypatch.setenv("HTTP_PROXY", proxy.proxy_url(user, "secret"))
        monkeypatch.setenv("http_proxy", proxy.proxy_url(user, "secret"))

    through("ann")
    fa, data = open_settled(a)
    with fa:
        assert data == DATA_A
        through("bob")
        with kithara_io.open(b, **ONE) as fb:
            assert fb.read() == DATA_B
        through("ann")
        with kithara_io.open(c, **ONE) as fc:
            assert fc.read() == DATA_B
    users: dict = {}
    for r in proxy.requests:
        users.setdefault(r.connection, set()).add(r.proxy_authorization)
    assert all(len(u) == 1 for u in users.values()), users  # no connection carried two users
    assert set().union(*users.values()) == {basic("ann", "secret"), basic("bob", "secret")}
    # and ann's second stream went on her first one's connection
    ann = [r.connection for r in proxy.requests if r.target.endswith("/c.bin")]
    assert ann and ann[0] in {r.connection for r in proxy.requests if r.target.endswith("/a.bin")}


@pytest.mark.timeout(30)
def test_closing_a_stream_leaves_alone_the_connection_another_stream_took_from_it(fault_server, no_leaks):
    """a's close breaks the connections of its own fetches (abort), not the one b took from it."""
    a, b = fault_server.add("/a.bin", DATA_A), fault_server.add("/b.bin", DATA_B)
    requests = Requests()
    fa = kithara_io.open(a, on_event=requests, **ONE)
    try:
        check_closing_leaves_alone_the_connection_taken(fault_server, fa, requests, b)
    finally:
        fa.close()
    assert first_connection(fault_server, "/b.bin") in connections_of(fault_server, "/a.bin")


def check_closing_leaves_alone_the_connection_taken(fault_server, fa, requests: Requests, b: str) -> None:
    assert fa.read(1000) == DATA_A[:1000]
    requests.settle()  # the first fetch's connection is idle now, in the shared store
    fault_server.script("/b.bin", [Latency(1.0)])  # b's first answer keeps that connection busy
    opened: list = []
    opener = threading.Thread(target=lambda: opened.append(kithara_io.open(b, **ONE)))
    opener.start()
    assert fault_server.wait_requests(1, "/b.bin", timeout=10), "b's request never arrived"
    fault_server.script("/a.bin", [StallForever()])  # a fetches again, on a connection of its own
    failed: list = []

    def read_far() -> None:
        try:
            fa.seek(250_000)
            fa.read(1000)
        except (kithara_io.StreamError, ValueError) as exc:  # closed under it
            failed.append(exc)

    reader = threading.Thread(target=read_far)
    reader.start()
    assert fault_server.wait_requests(2, "/a.bin", timeout=10), "a's second request never arrived"
    fa.close()  # a fetch of a's is running: its connections are broken (abort)
    reader.join(10)
    opener.join(10)
    assert not reader.is_alive() and not opener.is_alive()
    assert failed
    with opened[0] as fb:
        assert fb.read() == DATA_B
        assert fb.stats().retries == 0  # b's answer came on the connection it took


@pytest.mark.timeout(30)
def test_a_source_nobody_closed_does_not_keep_the_shared_connections_open(fault_server, no_leaks):
    """A pool that was never closed gives up its claim on the store when it is collected."""
    from kithara_io.net import Client, Policy

    a = fault_server.add("/a.bin", DATA_A)
    forgotten = Client(Policy(a), share=True)  # a source someone dropped without close()
    fa, data = open_settled(a)
    with fa:
        assert data == DATA_A
    del forgotten
    gc.collect()  # (a reference cycle would keep it until a collection)
    # the stream's idle connection was closed with it: no_leaks finds no socket


@pytest.mark.timeout(30)
def test_a_second_streams_random_read_takes_the_libcurl_connection_the_first_left(
    fault_server, monkeypatch, no_leaks
):
    """A far 64 KiB read goes over libcurl (net.curl): its connection is shared too."""
    a, b = fault_server.add("/a.bin", DATA_A * 10), fault_server.add("/b.bin", DATA_A * 10)
    far = 2_500_000
    over_curl: list = []
    request_range = curl.CurlConnection.request_range

    def spy(conn, target, *args):
        over_curl.append((id(conn), target))
        return request_range(conn, target, *args)

    monkeypatch.setattr(curl.CurlConnection, "request_range", spy)

    def random_read(url: str):
        requests = Requests()
        stream = kithara_io.open(url, on_event=requests, tail=0)
        stream.seek(far)
        assert stream.read(65536) == (DATA_A * 10)[far : far + 65536]
        requests.settle()
        return stream

    def far_request(path: str):
        return next(r for r in fault_server.requests if r.path == path and r.range and r.range.startswith(f"bytes={far}-"))

    with random_read(a):
        with random_read(b):
            pass
    assert far_request("/b.bin").connection == far_request("/a.bin").connection
    assert [target for _, target in over_curl] == ["/a.bin", "/b.bin"]
    assert over_curl[0][0] == over_curl[1][0]  # one libcurl connection, taken by b from a
