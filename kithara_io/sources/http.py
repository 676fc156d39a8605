"""HTTP source: ranged GETs over one ``requests.Session``, with strict response validation.

Every answer is checked before a byte is stored: ``Content-Range`` must match the request,
the encoding must be identity, and the resource must still be the one first seen (ETag /
Last-Modified and total length are pinned on the first response).
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import threading
import weakref
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

from ..errors import (
    ConnectionFailedError,
    HTTPStatusError,
    InvalidResponseError,
    ResourceChangedError,
)
from ..retry import Timeout, parse_retry_after

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.I)
_MAX_TOTAL = 1 << 62  # larger claimed lengths are refused: no real resource, and they overflow

_NETWORK_ERRORS = (
    http.client.HTTPException,  # IncompleteRead of a chunked body read through http.client
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    socket.timeout,
    OSError,
)


class AbortHandle:
    """Lets another thread break the connection a fetch is using, in any phase of it.

    The tracked pools below report each connection they hand out to the handle of the
    fetch running on that thread; ``abort()`` shuts that socket down so a blocked send,
    header wait or body read fails at once instead of waiting for a timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn = None
        self.aborted = False

    def attach(self, conn) -> None:
        with self._lock:
            self._conn = conn
            aborted = self.aborted
        if aborted:
            _shutdown(conn)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            conn = self._conn
        if conn is not None:
            _shutdown(conn)

    def release(self, conn) -> None:
        """``conn`` went back to a pool: a late abort must not break it for its next user."""
        with self._lock:
            if self._conn is conn:
                self._conn = None

    def connected(self, conn) -> None:
        """``conn`` has just opened its socket: an abort that came while it had none (a fresh
        connection is handed out unconnected) applies now."""
        with self._lock:
            aborted = self.aborted
        if aborted:
            _shutdown(conn)

    def discard(self) -> None:
        """The request failed: close its connection now. urllib3 drops it from the pool, but
        the traceback of the failure can keep the socket open until a garbage collection."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _shutdown(conn) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# On the thread running a fetch: .handle (its AbortHandle) and .conns (its source's
# set of every connection handed out, closed by HttpSource.close).
_current = threading.local()


class _TrackedPoolMixin:
    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        conns = getattr(_current, "conns", None)
        if conns is not None:
            conns.add(conn)
        handle = getattr(_current, "handle", None)
        if handle is not None:
            handle.attach(conn)
        return conn


class _TrackedConnectionMixin:
    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        handle = getattr(_current, "handle", None)
        if handle is not None:
            handle.connected(self)


class _TrackedHTTPConnection(_TrackedConnectionMixin, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_TrackedConnectionMixin, HTTPSConnection):
    pass


class _TrackedHTTPPool(_TrackedPoolMixin, HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(_TrackedPoolMixin, HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _TrackedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


@dataclass(frozen=True)
class Validators:
    """What identifies one version of a resource."""

    etag: Optional[str]
    last_modified: Optional[str]
    total: Optional[int]

    @property
    def if_range(self) -> Optional[str]:
        """A strong ETag, else Last-Modified (RFC 9110 allows both in If-Range)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class Body:
    """The bytes of one response, ``[start, end)`` of the resource (``end`` None: unknown)."""

    from_disk = False  # see sources.cached.DiskBody
    requests_sent = 1

    def __init__(
        self,
        url: str,
        response: Optional[requests.Response],
        start: int,
        end: Optional[int],
        total: Optional[int],
        ranged: bool,
    ) -> None:
        self.url = url
        self.start = start
        self.end = end
        self.total = total
        self.ranged = ranged
        self._response = response
        self.position = start
        # read1: whatever one socket read returns. A readinto would block until its buffer
        # is full, and lose what it had received when the connection breaks meanwhile.
        raw = response.raw if response is not None else None
        fp = getattr(raw, "_fp", None)
        self._read1 = fp.read1 if isinstance(fp, http.client.HTTPResponse) else (raw.read1 if raw else None)

    def readinto(self, buf: memoryview) -> int:
        """Read up to ``len(buf)`` bytes; 0 means the body is over (the caller checks length)."""
        if self._response is None:
            return 0
        try:
            data = self._read1(len(buf))
            n = len(data)
            buf[:n] = data
        except _NETWORK_ERRORS as exc:
            raise ConnectionFailedError(
                "connection broke while reading the body",
                url=self.url,
                byte_range=(self.position, self.end),
                cause=exc,
            ) from exc
        self.position += n
        return n

    def close(self) -> None:
        """Return the connection to the pool if the body was read to its end, else drop it."""
        response, self._response = self._response, None
        if response is None:
            return
        raw = response.raw
        if self.end is not None and self.position >= self.end:
            raw.release_conn()
        else:
            raw.close()
            raw.release_conn()


class HttpSource:
    """Ranged GETs against one URL; one Session (connection pool) per source."""

    def __init__(
        self,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Timeout = Timeout(),
        verify: bool = True,
        max_redirects: int = 10,
    ) -> None:
        self.url = url
        self.final_url = url
        self._headers: Dict[str, str] = dict(headers or {})
        self._timeout = timeout
        self._session = requests.Session()
        adapter = _TrackedAdapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.max_redirects = max_redirects
        # Read the environment (proxies, ~/.netrc, CA bundle) once, as requests would on
        # every request: looking it up per request costs more than a loopback range GET.
        self._session.verify = _environment_verify(verify)
        self._session.proxies.update(requests.utils.get_environ_proxies(url))
        if not any(k.lower() == "authorization" for k in self._headers):
            self._session.auth = requests.utils.get_netrc_auth(url)
        self._session.trust_env = False
        self._lock = threading.Lock()  # guards the pinned validators, final_url, _direct, _closed
        self._pinned: Optional[Validators] = None
        self._ranged: Optional[bool] = None
        # Every connection ever handed out: urllib3 can return one to a pool that a
        # concurrent close() has just drained, so close() closes them all itself.
        self._conns: "weakref.WeakSet" = weakref.WeakSet()
        self._direct: Optional[_DirectPool] = None  # connections of the direct path
        self._closed = False

    @property
    def pinned(self) -> Optional[Validators]:
        return self._pinned

    @property
    def supports_ranges(self) -> Optional[bool]:
        return self._ranged

    offline = False  # see DiskCachedSource

    def holds(self, pos: int) -> bool:
        """Whether byte ``pos`` can be had without the network (never, here)."""
        return False

    def pin(self, known: Validators, final_url: Optional[str] = None) -> None:
        """Pin a version known from elsewhere (a cached copy, confirmed by a 304 or served
        offline) unless one is pinned: later answers must match it, and carry If-Range.
        Range support is learnt from the next answer."""
        with self._lock:
            if self._pinned is None:
                self._pinned = known
                self.final_url = final_url or self.final_url

    def _after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's connections without closing them in any
        way the parent's peers would see (no shutdown), and use a new session with the same
        settings from now on."""
        old = self._session
        session = requests.Session()
        adapter = _TrackedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        for name in ("max_redirects", "verify", "auth", "trust_env", "cert"):
            setattr(session, name, getattr(old, name))
        session.proxies.update(old.proxies)
        session.headers = old.headers.copy()
        session.cookies.update(old.cookies)
        self._session = session
        self._lock = threading.Lock()
        self._conns = weakref.WeakSet()
        self._direct = None

    def close(self) -> None:
        """Close every connection. Call only when no fetch is running."""
        with self._lock:
            self._closed = True
            direct = self._direct
        if direct is not None:
            direct.close()
        self._session.close()
        for conn in list(self._conns):
            conn.close()

    # -- one request -------------------------------------------------------------------
    def fetch(self, start: int, end: Optional[int], handle: Optional[AbortHandle] = None) -> Body:
        """GET ``[start, end)`` (``end`` None: to the end). Raises a StreamError subclass.

        ``handle.abort()`` from another thread breaks the request or body read at once.
        """
        body = self._get_range(start, end, handle, None)
        assert body is not None  # only a conditional request may go unanswered (304)
        return body

    def fetch_if_modified(
        self, start: int, end: Optional[int], known: Validators, handle: Optional[AbortHandle] = None
    ) -> Optional[Body]:
        """Revalidate a cached copy: GET ``[start, end)`` with If-None-Match / If-Modified-Since
        from ``known``. None if the server answers 304 Not Modified (``known`` is then pinned
        as if it had answered); otherwise the answer, as :meth:`fetch` returns it."""
        return self._get_range(start, end, handle, known)

    def _get_range(
        self, start: int, end: Optional[int], handle: Optional[AbortHandle], known: Optional[Validators]
    ) -> Optional[Body]:
        conditions = {}
        if known is not None and known.etag:
            conditions["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            conditions["If-Modified-Since"] = known.last_modified
        spec = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        response = self._request(spec, (start, end), handle, conditions)
        try:
            if known is not None and response.status_code == 304:
                response.close()
                self.pin(known, final_url=response.url)
                return None
            return self._validate(response, start, end)
        except BaseException:
            response.close()
            raise

    def fetch_suffix(self, length: int, handle: Optional[AbortHandle] = None) -> Optional[Body]:
        """GET the last ``length`` bytes (``Range: bytes=-N``), sent at open beside the head
        request so a container's tail read costs no extra round trip. None unless the answer
        is a 206 that matches: a server without (suffix) range support is left to the head
        request to discover, and nothing is pinned from such an answer."""
        response = self._request(f"bytes=-{length}", None, handle)
        try:
            if response.status_code != 206:
                response.close()
                return None
            header = response.headers.get("Content-Range", "")
            match = _CONTENT_RANGE.match(header)
            url = response.url or self.url
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            if total is None or total > _MAX_TOTAL or (int(match.group(1)), int(match.group(2))) != (
                max(0, total - length),
                total - 1,
            ):
                raise InvalidResponseError(
                    f"Content-Range {header!r} does not match the requested last {length} bytes", url=url
                )
            _check_identity_encoding(response, url, (total - length, total))
            self._pin(response, total, url, ranged=True)
            return Body(url, response, max(0, total - length), total, total, ranged=True)
        except BaseException:
            response.close()
            raise

    def _request(
        self,
        range_spec: str,
        span: Optional[tuple],
        handle: Optional[AbortHandle],
        conditions: Optional[Mapping[str, str]] = None,
    ):
        headers = dict(self._headers)
        headers["Accept-Encoding"] = "identity"
        headers["Range"] = range_spec
        headers.update(conditions or {})
        pinned = self._pinned
        if pinned is not None and pinned.if_range:
            headers["If-Range"] = pinned.if_range
        with self._lock:
            url = self.final_url
        handle = handle or AbortHandle()
        _current.handle = handle
        _current.conns = self._conns
        try:
            response = self._direct_get(url, headers)
            if response is None:
                response = self._session.get(
                    url,
                    headers=headers,
                    stream=True,
                    timeout=(self._timeout.connect, self._timeout.read),
                )
            return response
        except requests.TooManyRedirects as exc:
            raise InvalidResponseError("too many redirects", url=self.url, cause=exc) from exc
        except _NETWORK_ERRORS as exc:
            handle.discard()
            raise ConnectionFailedError("request failed", url=url, byte_range=span, cause=exc) from exc
        finally:
            _current.handle = None
            _current.conns = None

    def _direct_get(self, url: str, headers: Dict[str, str]) -> "Optional[_DirectResponse]":
        """The range GET over a plain ``http.client`` keep-alive connection, or None to go
        through requests. Per loopback range GET, requests costs ~0.3 ms and urllib3's
        ``urlopen`` ~0.15 ms more than http.client itself, so after the first answer
        (redirects resolved, resource pinned) plain http requests without proxies, auth or
        cookies skip them. A redirect then goes back to requests."""
        session = self._session
        if self._pinned is None or session.proxies or session.auth or session.cookies:
            return None
        pool = self._direct
        if pool is None or pool.url != url:
            parsed = urllib3.util.parse_url(url)
            if parsed.scheme != "http":
                return None
            with self._lock:
                if self._closed:
                    raise ConnectionFailedError("source closed", url=url)
                if self._direct is not None:
                    self._direct.close()
                pool = self._direct = _DirectPool(url, parsed, self._timeout, self._conns, dict(session.headers))
        conn = pool.get()
        handle = getattr(_current, "handle", None)
        if handle is not None:
            handle.attach(conn)
        conn.request("GET", pool.target, headers={**pool.headers, **headers})
        response = conn.getresponse()
        if 300 <= response.status < 400:
            response.close()  # with Connection: close the response holds the socket
            conn.close()
            return None
        return _DirectResponse(response, conn, pool, handle)

    def _validate(self, response: requests.Response, start: int, end: Optional[int]) -> Body:
        url = response.url or self.url
        span = (start, end)
        status = response.status_code
        if status in (200, 206):
            _check_identity_encoding(response, url, span)
        if status == 206:
            body_start, body_end, total = self._parse_content_range(response, start, end, url)
            self._pin(response, total, url, ranged=True)
            return Body(url, response, body_start, body_end, total, ranged=True)
        if status == 200:
            total = _content_length(response)
            if total is not None and total > _MAX_TOTAL:
                raise InvalidResponseError(f"absurd Content-Length {total}", url=url, byte_range=span)
            if self._ranged:
                # We sent If-Range with the pinned validator: a 200 means it no longer
                # matches, unless something on the way ignored the Range header.
                self._pin(response, total, url, ranged=True)  # raises if the validators moved
                raise InvalidResponseError(
                    "server answered a range request with the whole body (a proxy ignoring Range?)",
                    url=url,
                    byte_range=span,
                )
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type == "text/html":
                raise InvalidResponseError(
                    "server answered with an HTML page, not the file (an error page or captive portal?)",
                    url=url,
                    byte_range=span,
                )
            self._pin(response, total, url, ranged=False)
            return Body(url, response, 0, total, total, ranged=False)
        if status == 416:
            match = _UNSATISFIED_RANGE.match(response.headers.get("Content-Range", ""))
            if match and start >= int(match.group(1)):
                total = int(match.group(1))
                self._pin(response, total, url, ranged=True)
                response.close()
                return Body(url, None, start, start, total, ranged=True)
            raise InvalidResponseError("416 Range Not Satisfiable", url=url, byte_range=span)
        error = HTTPStatusError(status, response.reason or "", url=url, byte_range=span)
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error

    def _parse_content_range(
        self, response: requests.Response, start: int, end: Optional[int], url: str
    ) -> Tuple[int, int, Optional[int]]:
        header = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(header)
        if not match:
            raise InvalidResponseError(
                f"206 with an unparseable Content-Range {header!r}", url=url, byte_range=(start, end)
            )
        first, last = int(match.group(1)), int(match.group(2))
        total = None if match.group(3) == "*" else int(match.group(3))
        if max(last, total or 0) > _MAX_TOTAL:
            raise InvalidResponseError(f"absurd length in Content-Range {header!r}", url=url, byte_range=(start, end))
        clamped_end = end if total is None or end is None else min(end, total)
        expected_last = (total - 1 if total is not None else None) if end is None else clamped_end - 1
        # A shorter answer that starts right is honest (CDNs cap slice sizes): the caller
        # stores what came and asks again for the rest. Anything else is refused.
        if first != start or last < first or (expected_last is not None and last > expected_last):
            raise InvalidResponseError(
                f"Content-Range {header!r} does not match the requested range",
                url=url,
                byte_range=(start, end),
            )
        length = _content_length(response)
        if length is not None and length != last + 1 - first:
            raise InvalidResponseError(
                f"Content-Length {length} disagrees with Content-Range {header!r}",
                url=url,
                byte_range=(start, end),
            )
        return first, last + 1, total

    def _pin(self, response: requests.Response, total: Optional[int], url: str, *, ranged: bool) -> None:
        seen = Validators(
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            total=total,
        )
        with self._lock:
            pinned = self._pinned
            if pinned is None:
                self._pinned = seen
                self._ranged = ranged
                self.final_url = response.url or self.final_url
                return
            if self._ranged is None:  # pinned by a 304, which says nothing about ranges
                self._ranged = ranged
        _check_same_resource(pinned, seen, url)


def _check_same_resource(pinned: Validators, seen: Validators, url: str) -> None:
    changes = []
    if pinned.etag and seen.etag and pinned.etag != seen.etag:
        changes.append(f"ETag {pinned.etag} -> {seen.etag}")
    if pinned.last_modified and seen.last_modified and pinned.last_modified != seen.last_modified:
        changes.append(f"Last-Modified {pinned.last_modified} -> {seen.last_modified}")
    if pinned.total is not None and seen.total is not None and pinned.total != seen.total:
        changes.append(f"length {pinned.total} -> {seen.total}")
    if changes:
        raise ResourceChangedError("resource changed on the server: " + ", ".join(changes), url=url)


class _DirectConnection(http.client.HTTPConnection):
    """A keep-alive connection of the direct path: ``timeout.connect`` to connect, then
    ``timeout.read`` per socket operation (per gap, as urllib3 does); an abort that came
    while it had no socket applies once it has one (AbortHandle)."""

    def __init__(self, host: str, port: int, timeout: Timeout) -> None:
        super().__init__(host, port, timeout=timeout.connect)
        self._read_timeout = timeout.read

    def connect(self) -> None:
        super().connect()  # also sets TCP_NODELAY
        self.sock.settimeout(self._read_timeout)
        handle = getattr(_current, "handle", None)
        if handle is not None:
            handle.connected(self)


class _DirectPool:
    """Idle keep-alive connections to the origin of one URL, for the direct path."""

    MAX_IDLE = 10

    def __init__(self, url: str, parsed, timeout: Timeout, conns: "weakref.WeakSet", headers: Dict[str, str]) -> None:
        self.url = url
        self.target = parsed.request_uri
        self.headers = headers  # the session's defaults (User-Agent, Accept, Connection)
        self._host = parsed.host
        self._port = parsed.port or 80
        self._timeout = timeout
        self._conns = conns  # every connection handed out, closed by HttpSource.close
        self._lock = threading.Lock()
        self._idle: list = []
        self._closed = False

    def get(self) -> _DirectConnection:
        """An idle connection the server has not closed meanwhile, else a new one."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.sock is not None and not urllib3.util.wait_for_read(conn.sock, timeout=0.0):
                    return conn
                conn.close()  # the server closed it (or sent something unasked)
        conn = _DirectConnection(self._host, self._port, self._timeout)
        self._conns.add(conn)
        return conn

    def put(self, conn: _DirectConnection) -> None:
        with self._lock:
            if not self._closed and conn.sock is not None and len(self._idle) < self.MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _DirectResponse:
    """What validation and Body use of a ``requests.Response`` (``raw`` included), over an
    ``http.client`` response of the direct path."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        conn: _DirectConnection,
        pool: _DirectPool,
        handle: Optional[AbortHandle],
    ) -> None:
        self.raw = self
        self._fp = response  # Body reads through its read1
        self.url = pool.url
        self.status_code = response.status
        self.reason = response.reason
        self.headers = response.headers
        self._conn: Optional[_DirectConnection] = conn
        self._pool = pool
        self._handle = handle

    def release_conn(self) -> None:
        """Back to the pool if the body was read to its end and the server keeps it open."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        response = self._fp
        reusable = (response.isclosed() or response.length == 0) and not response.will_close
        # Done with it: http.client sends the next request only after this, and with
        # Connection: close it is the response that holds the socket.
        response.close()
        if reusable:
            if self._handle is not None:
                self._handle.release(conn)
            self._pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._fp.close()
        if conn is not None:
            conn.close()


def _check_identity_encoding(response, url: str, span: tuple) -> None:
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise InvalidResponseError(
            f"server sent Content-Encoding {encoding!r} although identity was asked", url=url, byte_range=span
        )


def _environment_verify(verify: bool):
    """``verify`` as requests resolves it with trust_env: a CA bundle from the environment."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


def _content_length(response: requests.Response) -> Optional[int]:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


__all__ = ["HttpSource", "Body", "Validators", "AbortHandle"]
