"""Interim answers (1xx) before the answer, on the ``http.client`` path.

``http.client`` skips ``100 Continue`` only: a ``103 Early Hints`` (RFC 8297; CDNs send
them) or ``102 Processing`` was taken for the answer and failed the stream with "HTTP 103".
libcurl's path already reads past them (``test_curl``). Every byte is compared with the
served data; a server that sends nothing but interim heads fails the request, fast or
dripped, within the read timeout.
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


def _ranged(start: int, end: int, data: bytes) -> bytes:
    return (
        f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end - 1}/{len(data)}\r\n"
        f'Accept-Ranges: bytes\r\nETag: "v1"\r\nContent-Length: {end - start}\r\n\r\n'
    ).encode() + data[start:end]


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
