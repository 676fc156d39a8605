"""Connections of live sources: one body read from start to end, never ranged.

A :class:`LiveBody` is what :class:`~kithara_io.sources.live.stream.LiveReader` reads on its own thread:
an HTTP answer without a length (a radio station, a chunked or close-delimited response),
an old Shoutcast answer whose status line is ``ICY 200 OK``, or a local pipe/device.
``abort()`` may be called from any thread and makes a blocked ``readinto`` return at once.

HTTP goes through the network layer (:mod:`kithara_io.net`) with the stream's policy, so a
reconnect takes the same proxies, netrc, credentials per origin and TLS context as the first
request; its client keeps no idle connection (one live body holds its connection for as long
as the station plays).
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
from typing import Mapping, Optional, Protocol, Union

from ...errors import ConnectionFailedError, InvalidResponseError, StreamError
from ...headers import content_coding
from ...net import Client, Policy, Response
from ...net.connections import shutdown_socket as _shutdown
from ...retry import Timeout, status_error


class LiveBody(Protocol):
    url: str
    headers: Mapping[str, str]  # case-insensitive

    def readinto(self, buf: memoryview) -> int:
        """Up to ``len(buf)`` bytes, at least one; 0 at a clean end. A broken connection
        raises a ConnectionFailedError."""

    def abort(self) -> None:
        """From any thread: break the connection so a blocked read returns now."""

    def close(self) -> None: ...


class AbortSlot:
    """The connection a live reader is using or setting up, so ``close()`` on another
    thread can break it in any phase (connect excepted: bounded by ``Timeout.connect``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self.aborted = False

    def attach(self, sock: Optional[socket.socket]) -> None:
        with self._lock:
            self._sock = sock
            aborted = self.aborted
        if aborted:
            _shutdown(sock)
            raise ConnectionFailedError("stream closed")

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sock = self._sock
        _shutdown(sock)


def request_headers(headers: Optional[Mapping[str, str]]) -> dict:
    """The caller's headers plus what a radio listener sends."""
    out = {"User-Agent": "kithara-io", **dict(headers or {})}
    out["Icy-MetaData"] = "1"
    out["Accept-Encoding"] = "identity"
    return out


# -- HTTP ---------------------------------------------------------------------------------


def live_client(
    url: str,
    headers: Optional[Mapping[str, str]],
    timeout: Timeout,
    verify: Union[bool, str] = True,
    max_redirects: int = 10,
    cert=None,
) -> Client:
    """The client of one live stream: its first request and every reconnect."""
    policy = Policy(
        url, request_headers(headers), timeout=timeout, verify=verify, cert=cert, max_redirects=max_redirects
    )
    return Client(policy, keep_alive=False)


class HttpLiveBody:
    """One answer read with ``read1`` (what arrived), on its own connection. ``icy``: an
    old Shoutcast answer (``ICY 200 OK``): reconnects ask that way at once."""

    def __init__(self, response: Response) -> None:
        self.url = response.url
        self.headers = response.headers
        self.icy = response.icy
        self._response = response
        self._conn = response.connection

    def readinto(self, buf: memoryview) -> int:
        try:
            data = self._response.read1(len(buf))
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailedError("live connection broke", url=self.url, cause=exc) from exc
        buf[: len(data)] = data
        return len(data)

    def abort(self) -> None:
        _shutdown(getattr(self._conn, "kept_sock", None) or getattr(self._conn, "sock", None))

    def close(self) -> None:
        self._response.close()


def open_http(client: Client, url: str, slot: AbortSlot, *, icy: bool = False) -> LiveBody:
    """GET ``url`` as a listener (``Icy-MetaData: 1``, no Range), following redirects;
    ``icy``: as an old Shoutcast server wants it (no HTTP attempt first). Raises a
    StreamError subclass; ``HTTPStatusError.retry_after`` is set when sent."""
    response = client.request("GET", url, on_connect=lambda conn: slot.attach(conn.kept_sock or conn.sock), icy=icy)
    try:
        check_answer(response.url, response.status, response.reason, response.headers)
    except BaseException:
        response.close()
        raise
    return HttpLiveBody(response)


def check_answer(url: str, status: int, reason: str, headers: Mapping[str, str]) -> None:
    """Refuse what is not a stream: an error status, an encoded body, an HTML page."""
    if status != 200:
        raise status_error(status, reason, headers, url)
    encoding = content_coding(headers.get("Content-Encoding"))
    if encoding != "identity":
        raise InvalidResponseError(f"server sent Content-Encoding {encoding!r} although identity was asked", url=url)
    if headers.get("Content-Type", "").split(";")[0].strip().lower() == "text/html":
        raise InvalidResponseError("server answered with an HTML page, not a stream", url=url)


# -- local pipes and devices ---------------------------------------------------------------


class PipeBody:
    """A FIFO, stdin or a character device: ``read`` on the fd, woken by ``abort``."""

    headers: Mapping[str, str] = {}

    def __init__(self, name: str, fd: int) -> None:
        self.url = name
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe()
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        self._poll.register(self._wake_r, select.POLLIN)

    def readinto(self, buf: memoryview) -> int:
        ready = dict(self._poll.poll())
        if self._wake_r in ready:
            return 0
        try:
            return os.readv(self._fd, [buf])
        except OSError as exc:
            raise StreamError("cannot read", url=self.url, cause=exc) from exc

    def abort(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


__all__ = [
    "AbortSlot",
    "HttpLiveBody",
    "LiveBody",
    "PipeBody",
    "check_answer",
    "live_client",
    "open_http",
    "request_headers",
]
