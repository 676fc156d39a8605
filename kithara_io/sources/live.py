"""Connections of live sources: one body read from start to end, never ranged.

A :class:`LiveBody` is what :class:`~kithara_io.live.LiveReader` reads on its own thread:
an HTTP answer without a length (a radio station, a chunked or close-delimited response),
an old Shoutcast answer whose status line is ``ICY 200 OK``, or a local pipe/device.
``abort()`` may be called from any thread and makes a blocked ``readinto`` return at once.

HTTP goes through urllib3's connection objects (one connection per live body: it is held
for as long as the station plays, so it is no use to a pool); redirects are followed here.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
import urllib.parse
from typing import Mapping, Optional, Protocol, Union

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from ..errors import ConnectionFailedError, HTTPStatusError, InvalidResponseError, StreamError
from ..retry import Timeout, parse_retry_after
from .shoutcast import IcyResponse, is_icy_status_line, request_icy
from .transport import connection_error

_REDIRECTS = {301, 302, 303, 307, 308}


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


def _shutdown(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def request_headers(headers: Optional[Mapping[str, str]]) -> dict:
    """The caller's headers plus what a radio listener sends."""
    out = {"User-Agent": "kithara-io", **dict(headers or {})}
    out["Icy-MetaData"] = "1"
    out["Accept-Encoding"] = "identity"
    return out


# -- HTTP ---------------------------------------------------------------------------------


class HttpLiveBody:
    """An urllib3 response read with ``read1``, on its own connection."""

    def __init__(self, url: str, response, conn: HTTPConnection, sock: socket.socket) -> None:
        self.url = url
        self.headers = response.headers
        self._response = response
        self._conn = conn
        # http.client forgets conn.sock on a "Connection: close" answer: keep it for abort().
        self._sock = sock

    def readinto(self, buf: memoryview) -> int:
        try:
            data = self._response.read1(len(buf))
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as exc:
            raise ConnectionFailedError("live connection broke", url=self.url, cause=exc) from exc
        buf[: len(data)] = data
        return len(data)

    def abort(self) -> None:
        _shutdown(self._sock)

    def close(self) -> None:
        self._response.close()
        self._conn.close()


def open_http(
    url: str,
    headers: Optional[Mapping[str, str]],
    timeout: Timeout,
    verify: Union[bool, str],
    max_redirects: int,
    slot: AbortSlot,
) -> LiveBody:
    """GET ``url`` as a listener (``Icy-MetaData: 1``, no Range), following redirects.
    Raises a StreamError subclass; ``HTTPStatusError.retry_after`` is set when sent."""
    sent = request_headers(headers)
    for _ in range(max_redirects + 1):
        parsed = urllib3.util.parse_url(url)
        if parsed.scheme not in ("http", "https"):
            raise InvalidResponseError(f"redirect to an unsupported URL scheme {parsed.scheme!r}", url=url)
        conn = _connection(parsed, timeout, verify)
        try:
            response, sock = _get(conn, parsed, sent, timeout, slot)
        except http.client.BadStatusLine as exc:
            conn.close()
            if not is_icy_status_line(exc):
                raise ConnectionFailedError("invalid HTTP status line", url=url, cause=exc) from exc
            return open_icy(url, headers, timeout, verify, slot)
        except StreamError:
            conn.close()
            raise
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as exc:
            conn.close()
            raise connection_error(exc, url, None) from exc
        if response.status in _REDIRECTS and response.headers.get("Location"):
            url = urllib.parse.urljoin(url, response.headers["Location"])
            response.close()
            conn.close()
            continue
        try:
            check_answer(url, response.status, response.reason or "", response.headers)
        except BaseException:
            response.close()
            conn.close()
            raise
        return HttpLiveBody(url, response, conn, sock)
    raise InvalidResponseError("too many redirects", url=url)


def _connection(parsed, timeout: Timeout, verify: Union[bool, str]) -> HTTPConnection:
    host, port = parsed.host, parsed.port
    if parsed.scheme == "https":
        # verify: True, False or the CA bundle to trust (StreamOptions.verify), as requests does.
        bundle = verify if isinstance(verify, str) else None
        bundle = bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        return HTTPSConnection(
            host, port or 443, timeout=timeout.connect,
            cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE", ca_certs=bundle if verify else None,
        )
    return HTTPConnection(host, port or 80, timeout=timeout.connect)


def _get(conn: HTTPConnection, parsed, headers: dict, timeout: Timeout, slot: AbortSlot):
    conn.connect()
    sock = conn.sock
    slot.attach(sock)
    # Per gap between reads, as for every fetch. urllib3 puts conn.timeout on the socket at
    # request() and getresponse(): set there, or the connect timeout would apply to the body.
    conn.timeout = timeout.read
    sock.settimeout(timeout.read)
    conn.request("GET", parsed.request_uri, headers=headers, preload_content=False, decode_content=False)
    return conn.getresponse(), sock


def check_answer(url: str, status: int, reason: str, headers: Mapping[str, str]) -> None:
    """Refuse what is not a stream: an error status, an encoded body, an HTML page."""
    if status != 200:
        error = HTTPStatusError(status, reason, url=url)
        error.retry_after = parse_retry_after(headers.get("Retry-After"))
        raise error
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise InvalidResponseError(f"server sent Content-Encoding {encoding!r} although identity was asked", url=url)
    if headers.get("Content-Type", "").split(";")[0].strip().lower() == "text/html":
        raise InvalidResponseError("server answered with an HTML page, not a stream", url=url)


# -- old Shoutcast: "ICY 200 OK" ----------------------------------------------------------


class IcyLiveBody:
    """The body of an ``ICY 200 OK`` answer (see :mod:`.shoutcast`), read from its socket."""

    def __init__(self, url: str, response: IcyResponse) -> None:
        self.url = url
        self.headers = response.headers
        self._response = response

    def readinto(self, buf: memoryview) -> int:
        try:
            return self._response.readinto(buf)
        except OSError as exc:
            raise ConnectionFailedError("live connection broke", url=self.url, cause=exc) from exc

    def abort(self) -> None:
        _shutdown(self._response.sock)

    def close(self) -> None:
        self._response.close()


def open_icy(
    url: str, headers: Optional[Mapping[str, str]], timeout: Timeout, verify: Union[bool, str], slot: AbortSlot
) -> LiveBody:
    """GET ``url`` accepting an ``ICY 200 OK`` status line (old Shoutcast servers)."""
    try:
        response = request_icy(url, request_headers(headers), timeout.connect, timeout.read, verify, slot.attach)
    except StreamError:
        raise
    except OSError as exc:
        raise connection_error(exc, url, None) from exc
    try:
        check_answer(url, response.status, response.reason, response.headers)
    except BaseException:
        response.close()
        raise
    return IcyLiveBody(url, response)


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


__all__ = ["AbortSlot", "LiveBody", "PipeBody", "check_answer", "open_http", "open_icy", "request_headers"]
