"""Answer heads on the ``http.client`` path: interim answers before the answer, and heads
that come too slowly.

``http.client`` skips ``100 Continue`` only: a ``103 Early Hints`` (RFC 8297; CDNs send
them) or ``102 Processing`` was taken for the answer and failed the stream with "HTTP 103".
And it reads a head line by line, each socket read bounded by the read timeout alone: a
head dripped a byte at a time held a request for as long as the server kept dripping. Both
are now as on libcurl's path (``test_curl``, ``test_curl_hostile``): interim heads are read
past, and a head is held to the speed limit. Every byte is compared with the served data.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import List

import pytest

import kithara_io
from kithara_io import Retry, StreamError, Timeout
from kithara_io.net import Client, Policy
from tests.hostile_raw import HostileServer, send_all

DATA = os.urandom(3_000_000)
EARLY = b"HTTP/1.1 103 Early Hints\r\nLink: </f>; rel=preload\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"


def _head(start: int, end: int, total: int) -> bytes:
    return (
        f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end - 1}/{total}\r\n"
        f'Accept-Ranges: bytes\r\nETag: "v1"\r\nContent-Length: {end - start}\r\n\r\n'
    ).encode()


def _ranged(start: int, end: int, data: bytes) -> bytes:
    return _head(start, end, len(data)) + data[start:end]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("interim", [EARLY, EARLY + PROCESSING + EARLY], ids=["103", "103-102-103"])
def test_a_file_behind_interim_answers_reads_whole(no_leaks, interim) -> None:
    """Every answer (the first one, read-ahead ranges, random reads) comes after interim
    heads: the file reads whole and equal, and seeks read the right bytes."""

    def misbehave(sock, start, end, data, stop):
        return send_all(sock, interim + _ranged(start, end, data), stop)

    with HostileServer(DATA, 0, misbehave) as srv:
        with kithara_io.open(srv.url()) as f:
            assert f.read() == DATA
            for pos in (2_500_000, 17, 1_234_567, 2_999_000):
                f.seek(pos)
                assert f.read(1000) == DATA[pos : pos + 1000]
        with kithara_io.open(srv.url()) as f:  # random reads into a cold cache
            for pos in (2_000_000, 700_000, 2_900_000):
                f.seek(pos)
                assert f.read(65536) == DATA[pos : pos + 65536]


@pytest.mark.timeout(30)
def test_a_server_without_ranges_behind_early_hints_streams_the_file(no_leaks) -> None:
    """The answer after the interim head is a ``200`` with the whole file (ranges ignored):
    read as a server without range support, byte for byte."""

    def misbehave(sock, start, end, data, stop):
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        return send_all(sock, EARLY + head + data, stop)

    with HostileServer(DATA, 0, misbehave) as srv:
        with kithara_io.open(srv.url(), tail=0) as f:
            assert f.read() == DATA


def _serve_once(heads: bytes, body_after: bytes, answers: List[bytes]) -> "tuple[socket.socket, threading.Thread]":
    """A server for one connection answering each request with ``heads + body_after``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            for _ in range(2):
                request = b""
                while b"\r\n\r\n" not in request:
                    piece = conn.recv(4096)
                    if not piece:
                        return
                    request += piece
                answers.append(request)
                conn.sendall(heads + body_after)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    return listener, server


@pytest.mark.timeout(20)
def test_the_answer_after_interim_heads_is_read_and_the_connection_kept(no_leaks) -> None:
    """100, 103 and 102 before a 200: the client sees the 200, its headers and body, and
    the connection stays usable for the next request (one connection for two)."""
    body = b"x" * 5000
    heads = b"HTTP/1.1 100 Continue\r\n\r\n" + EARLY + PROCESSING
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nX-Final: yes\r\n\r\n" + body
    answers: List[bytes] = []
    listener, server = _serve_once(heads, final, answers)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/f"
    client = Client(Policy(url, timeout=Timeout(connect=2, read=5)))
    try:
        for _ in range(2):
            response = client.request("GET", url)
            assert (response.status, response.headers.get("X-Final")) == (200, "yes")
            assert "Link" not in response.headers  # the interim head's fields are not the answer's
            assert response.read() == body
            response.release_conn()
    finally:
        client.close()
        server.join(10)
        listener.close()
    assert len(answers) == 2


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pause", [0.0, 0.2], ids=["endless", "dripped"])
def test_only_interim_answers_fail_the_request(no_leaks, pause) -> None:
    """A server that sends interim heads and never the answer, back to back or one every
    0.2 s (never silent for the 1 s read timeout): the request fails, saying so, within the
    read timeout plus a head, not when the server stops."""

    def misbehave(sock, start, end, data, stop):
        began = time.monotonic()
        while time.monotonic() - began < 15 and send_all(sock, EARLY, stop):
            if pause:
                stop.wait(pause)

    with HostileServer(DATA, 0, misbehave) as srv:
        began = time.monotonic()
        with pytest.raises(StreamError, match="interim answers") as caught:
            kithara_io.open(srv.url(), tail=0, timeout=Timeout(connect=2, read=1), retry=Retry(attempts=1))
        took = time.monotonic() - began
    assert srv.url() in str(caught.value)
    assert took < 3.0, took


# -- heads that come too slowly -----------------------------------------------------------
SLOW = Timeout(connect=2, read=1, open=None, speed_limit=1024, speed_time=1)


def _dripped(kind: str):
    """A 206 head for ``[start, end)`` whose ``kind`` part comes a few bytes every 0.2 s
    (never silent for the 1 s read timeout), for up to 20 s."""

    def misbehave(sock, start, end, data, stop):
        if kind == "a header line, byte by byte":
            lead, piece = b"HTTP/1.1 206 Partial Content\r\nX-Long: ", b"a"
        elif kind == "header lines, one by one":
            lead, piece = b"HTTP/1.1 206 Partial Content\r\n", b"X-A: b\r\n"
        else:  # the status line itself
            lead, piece = b"", b"H"
        if not send_all(sock, lead, stop):
            return
        began = time.monotonic()
        while time.monotonic() - began < 20 and send_all(sock, piece, stop):
            stop.wait(0.2)

    return misbehave


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["a header line, byte by byte", "header lines, one by one", "the status line"])
def test_a_dripped_head_fails_by_the_speed_limit(no_leaks, kind) -> None:
    """A range continuing a sequential read (over ``http.client``) gets a dripped head: the
    read fails by the speed limit (1 KB/s over 1 s), naming the URL, within the two
    attempts' few seconds. Before, it waited for as long as the server dripped (here its
    20 s; a 64 KiB header line at this pace would take 3.6 hours)."""
    with HostileServer(DATA, 65536, _dripped(kind)) as srv:
        began = time.monotonic()
        with pytest.raises(StreamError, match="head came too slowly") as caught:
            with kithara_io.open(srv.url(), tail=0, timeout=SLOW, retry=Retry(attempts=2, backoff=0.01)) as f:
                f.read()
        took = time.monotonic() - began
    assert srv.url() in str(caught.value)
    assert took < 6.0, took


@pytest.mark.timeout(30)
def test_a_dripped_first_answer_fails_open_without_an_open_timeout(no_leaks) -> None:
    """The first answer's head is dripped and ``Timeout.open`` is off: open() fails by the
    speed limit in seconds. Before, it waited for as long as the server dripped."""
    with HostileServer(DATA, 0, _dripped("a header line, byte by byte")) as srv:
        began = time.monotonic()
        with pytest.raises(StreamError, match="head came too slowly"):
            kithara_io.open(srv.url(), tail=0, timeout=SLOW, retry=Retry(attempts=2, backoff=0.01))
        took = time.monotonic() - began
    assert took < 6.0, took


@pytest.mark.timeout(30)
def test_a_slow_head_above_the_speed_limit_is_read(no_leaks) -> None:
    """A head of ~5 KB sent in 600-byte pieces every 0.1 s (6 KB/s, above the 1 KB/s limit,
    for longer than the 1 s span) is an answer like any other: the file reads whole."""

    def misbehave(sock, start, end, data, stop):
        head = _head(start, end, len(data))[: -len(b"\r\n")] + b"".join(
            f"X-Pad-{i}: {'p' * 50}\r\n".encode() for i in range(80)
        ) + b"\r\n"
        for at in range(0, len(head), 600):
            if not send_all(sock, head[at : at + 600], stop):
                return False
            stop.wait(0.1)
        return send_all(sock, data[start:end], stop)

    with HostileServer(DATA, 65536, misbehave) as srv:
        with kithara_io.open(srv.url(), tail=0, timeout=SLOW, retry=Retry(attempts=1)) as f:
            assert f.read() == DATA
