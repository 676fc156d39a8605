"""The wire under HttpSource: abort handles, answers and bodies over urllib3.

The first request of a source goes through ``requests`` (redirects, environment proxies,
netrc, cookies, auth, CA bundle, client certificate). Once it is answered, every later
range request goes through the urllib3 connection pool that requests' own ``HTTPAdapter``
holds for the final origin (a :class:`Route`), with the headers requests sent on that last
hop: the same TLS, proxy and credential settings at a third of the cost per request.
urllib3's own retries and redirects are off; ours apply.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

import requests
import urllib3

from ..errors import CertificateError, ConnectionFailedError

NETWORK_ERRORS = (
    http.client.HTTPException,
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,  # ConnectionError, socket.timeout, ssl.SSLError
)

# Per-request headers of ours, never carried over from the answered request to later ones.
_PER_REQUEST = ("range", "if-range", "if-none-match", "if-modified-since", "content-length")


class AbortHandle:
    """Lets another thread break the request one fetch is making.

    Before the request is sent, an abort means it is never sent; once the answer's headers
    are in, the handle knows the connection and an abort shuts its socket down, so a blocked
    body read fails at once. While the request waits for its headers an abort takes effect
    as they arrive (or when the timeouts end the wait)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self.aborted = False

    def attach(self, conn: Any) -> None:
        """The answer's connection is known: an abort from now on shuts it down."""
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

    def release(self) -> None:
        """The connection went back to its pool: a late abort must not break it for its
        next user."""
        with self._lock:
            self._conn = None


def _shutdown(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ConnectionRegistry:
    """Every connection the pools of one source opened, so that closing the source can
    break requests still waiting for their answer (an AbortHandle knows its connection
    only once the headers are in). Installed as the pools' ``ConnectionCls``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: "weakref.WeakSet" = weakref.WeakSet()
        self._classes: dict = {}

    def track(self, pool: Any) -> None:
        """Have ``pool`` open its connections through a class that registers them."""
        base = pool.ConnectionCls
        if getattr(base, "registry", None) is self:
            return
        with self._lock:
            cls = self._classes.get(base)
            if cls is None:
                cls = self._classes[base] = type("Connection", (base,), {"registry": self, "connect": _registered_connect})
        pool.ConnectionCls = cls

    def add(self, conn: Any) -> None:
        with self._lock:
            self._conns.add(conn)

    def shutdown_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)


def _registered_connect(self: Any) -> None:
    super(type(self), self).connect()
    self.registry.add(self)


@dataclass(frozen=True)
class Route:
    """How later range requests reach the final origin: requests' pool for it, the request
    target (a path, or an absolute URL through an http proxy) and the headers of the hop
    requests answered (credentials only if requests sent them to this origin)."""

    url: str
    pool: Any  # urllib3.HTTPConnectionPool
    target: str
    headers: Mapping[str, str]

    @classmethod
    def of(cls, session: requests.Session, adapter: requests.adapters.HTTPAdapter, response: requests.Response) -> "Route":
        prepared = response.request
        pool, target = pool_for(session, adapter, prepared, session.verify)
        headers = {k: v for k, v in prepared.headers.items() if k.lower() not in _PER_REQUEST}
        return cls(prepared.url, pool, target, headers)

    def get(self, headers: Mapping[str, str], timeout: urllib3.Timeout) -> urllib3.BaseHTTPResponse:
        return self.pool.urlopen(
            "GET",
            self.target,
            headers={**self.headers, **headers},
            retries=False,  # also: a redirect is returned, not followed
            redirect=False,
            assert_same_host=False,
            timeout=timeout,
            preload_content=False,
            decode_content=False,
            enforce_content_length=False,  # a short body is ours to see (TruncatedBodyError)
        )


def pool_for(
    session: requests.Session, adapter: requests.adapters.HTTPAdapter, prepared: Any, verify: Any
) -> Tuple[Any, str]:
    """The pool requests' adapter uses for ``prepared`` (with the session's TLS, proxy and
    certificate settings, the environment's proxies included), and the request target."""
    settings = session.merge_environment_settings(prepared.url, {}, True, verify, session.cert)
    pool = adapter.get_connection_with_tls_context(
        prepared, settings["verify"], proxies=settings["proxies"], cert=settings["cert"]
    )
    return pool, adapter.request_url(prepared, settings["proxies"])


@dataclass
class Answer:
    """The status line and headers of one response, from requests or from a Route."""

    status: int
    reason: str
    headers: Mapping[str, str]
    url: str
    raw: Any  # urllib3.BaseHTTPResponse

    @classmethod
    def of_requests(cls, response: requests.Response) -> "Answer":
        return cls(response.status_code, response.reason or "", response.headers, response.url, response.raw)

    @classmethod
    def of_urllib3(cls, response: urllib3.BaseHTTPResponse, url: str) -> "Answer":
        return cls(response.status, response.reason or "", response.headers, url, response)

    def close(self) -> None:
        """Drop the connection (the body was not read to its end)."""
        self.raw.close()
        self.raw.release_conn()


class HttpBody:
    """``[start, end)`` of the resource from one answer (``end`` None: unknown)."""

    from_disk = False
    requests_sent = 1

    def __init__(
        self,
        url: str,
        answer: Optional[Answer],
        start: int,
        end: Optional[int],
        total: Optional[int],
        ranged: bool,
        abort: Optional[AbortHandle] = None,
    ) -> None:
        self.url = url
        self.start = start
        self.end = end
        self.total = total
        self.ranged = ranged
        self.position = start
        self._raw = answer.raw if answer is not None else None
        self._abort = abort
        self._broken: Optional[ConnectionFailedError] = None

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` unless the body ends first (one piece: the caller commits, counts
        and notifies once per call, not once per socket read or TLS record); 0 at its end.
        A connection that breaks mid-piece returns what arrived and raises on the next
        call, so no received byte is lost and a resume starts exactly at the cut."""
        if self._raw is None:
            return 0
        if self._broken is not None:
            raise self._broken
        n, want = 0, len(buf)
        while n < want:
            try:
                data = self._raw.read1(want - n, decode_content=False)
            except NETWORK_ERRORS as exc:
                error = ConnectionFailedError(
                    "connection broke while reading the body", url=self.url, byte_range=(self.position + n, self.end), cause=exc
                )
                if n == 0:
                    raise error from exc
                self._broken = error
                break
            if not data:
                break
            buf[n : n + len(data)] = data
            n += len(data)
        self.position += n
        return n

    def close(self) -> None:
        """Return the connection to its pool if the body was read to its end, else drop it."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        if self.end is not None and self.position >= self.end:
            if self._abort is not None:
                self._abort.release()
            raw.release_conn()
        else:
            raw.close()
            raw.release_conn()


def connection_error(exc: BaseException, url: str, span: Optional[tuple]) -> ConnectionFailedError:
    """The StreamError for a request that got no answer: a certificate that cannot be
    verified is its own, permanent error; anything else is a (transient) connection failure."""
    if _certificate_failure(exc):
        host = urllib3.util.parse_url(url).host
        return CertificateError(
            f"the TLS certificate of {host} could not be verified", url=url, byte_range=span, cause=exc
        )
    return ConnectionFailedError("request failed", url=url, byte_range=span, cause=exc)


def _certificate_failure(exc: Optional[BaseException]) -> bool:
    seen = 0
    while exc is not None and seen < 10:  # bounded: cause chains can loop
        if isinstance(exc, ssl.SSLCertVerificationError):
            return True
        if isinstance(exc, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return True
        nested = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = getattr(exc, "reason", None) or nested or exc.__cause__ or exc.__context__
        seen += 1
    return False
