"""The wire under HttpSource: abort handles, answers and bodies over urllib3.

The first request of a source goes through ``requests`` (redirects, environment proxies,
netrc, cookies, auth, CA bundle, client certificate). Once it is answered, every later
range request goes through the urllib3 connection pool that requests' own ``HTTPAdapter``
holds for the final origin (a :class:`Route`), with the headers requests sent on that last
hop: the same TLS, proxy and credential settings at a third of the cost per request.
urllib3's own retries and redirects are off; ours apply.
"""

from __future__ import annotations

import functools
import http.client
import os
import re
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import requests
import urllib3
from requests.adapters import HTTPAdapter

from ..errors import CertificateError, ConnectionFailedError, HTTPStatusError, StreamError, TlsError, cause_chain

NETWORK_ERRORS = (
    http.client.HTTPException,
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,  # ConnectionError, socket.timeout, ssl.SSLError
)

_PIECE_TIME = 0.05  # a piece returns after this long with what it has: waiting readers see it
# Per-request headers of ours, never carried over from the answered request to later ones.
# (Icy-MetaData asks a radio station for titles: a resource that answered with a length
# and ranges is no station, and leaving it out saves a header on every range request.)
_PER_REQUEST = ("range", "if-range", "if-none-match", "if-modified-since", "content-length", "icy-metadata")


class TlsAdapter(HTTPAdapter):
    """requests' adapter, with one ``SSLContext`` per CA bundle and client certificate.

    Given a CA bundle path (``verify=path``, ``REQUESTS_CA_BUNDLE``, certifi's bundle for
    ``verify=True``), urllib3 loads it into a fresh context for every new connection: 0.2 s
    of CPU for the system bundle, paid again by each parallel request of a stream. Here the
    bundle (and the client certificate) is loaded once into a context the pools share, as
    requests itself does for its default bundle; a changed file is loaded again."""

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Tuple[dict, dict]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        context = _shared_context(host_params.get("scheme"), verify, cert)
        if context is not None:
            for key in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
                pool_kwargs.pop(key, None)
            pool_kwargs["ssl_context"] = context
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # checks that the files exist
        if _shared_context(urllib3.util.parse_url(url).scheme, verify, cert) is not None:
            conn.ca_certs = conn.ca_cert_dir = conn.cert_file = conn.key_file = None  # in the context


def _shared_context(scheme: Optional[str], verify: Any, cert: Any) -> Optional[ssl.SSLContext]:
    """The shared context for these settings; None where urllib3's own handling is kept
    (plain http, ``verify=False``, a bundle or certificate file that does not exist)."""
    if (scheme or "").lower() != "https" or not verify:
        return None
    ca = verify if isinstance(verify, str) else requests.certs.where()
    cert_file, key_file = (cert if isinstance(cert, tuple) else (cert, None)) if cert else (None, None)
    try:
        stamps = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) if p else None for p in (ca, cert_file, key_file))
    except OSError:
        return None  # requests reports the missing file itself
    with _CONTEXT_LOCK:  # the head and tail requests of a stream would load it twice at once
        return _load_context(ca, cert_file, key_file, stamps)


_CONTEXT_LOCK = threading.Lock()  # guards _load_context's cache fill; held while loading


def _fresh_context_lock() -> None:
    global _CONTEXT_LOCK
    _CONTEXT_LOCK = threading.Lock()  # a parent thread may have held it at the fork


os.register_at_fork(after_in_child=_fresh_context_lock)


@functools.lru_cache(maxsize=16)
def _load_context(ca: str, cert_file: Optional[str], key_file: Optional[str], stamps: tuple) -> ssl.SSLContext:
    context = urllib3.util.create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    if os.path.isdir(ca):
        context.load_verify_locations(capath=ca)
    else:
        context.load_verify_locations(cafile=ca)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


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
    sock = getattr(conn, "sock", None) or getattr(conn, "kept_sock", None)
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
    # On a "Connection: close" answer (HTTP/1.0, a close-delimited body) http.client drops
    # ``sock`` once the headers are in, the response alone reading it: keep it, so an abort
    # can still break that body's reads.
    self.kept_sock = self.sock
    self.registry.add(self)


@dataclass(frozen=True)
class Route:
    """How later range requests reach the final origin: requests' pool for it, the request
    target (a path, or an absolute URL through an http proxy) and the headers of the hop
    requests answered (credentials only if requests sent them to this origin)."""

    url: str
    pool: Any  # urllib3.HTTPConnectionPool
    target: str
    headers: Mapping[str, Union[str, bytes]]

    @classmethod
    def of(cls, session: requests.Session, response: requests.Response, proxies: Mapping[str, str]) -> "Route":
        prepared = response.request
        pool, target = pool_for(session, prepared, proxies)
        headers = {k: v for k, v in prepared.headers.items() if k.lower() not in _PER_REQUEST}
        return cls(prepared.url or response.url, pool, target, headers)

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


def pool_for(session: requests.Session, prepared: Any, proxies: Mapping[str, str]) -> Tuple[Any, str]:
    """The pool requests' adapter uses for ``prepared`` through ``proxies`` with the
    session's TLS settings (the same pool requests itself sends on), and the request target."""
    adapter = session.get_adapter(prepared.url)
    if not isinstance(adapter, requests.adapters.HTTPAdapter):  # ours always is (HttpSource)
        raise TypeError(f"a requests adapter other than HTTPAdapter serves {prepared.url}")
    pool = adapter.get_connection_with_tls_context(prepared, session.verify, proxies=dict(proxies), cert=session.cert)
    return pool, adapter.request_url(prepared, dict(proxies))


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
        # The answer's headers: a live stream reads its ICY fields (icy-metaint) here.
        self.headers: Mapping[str, str] = answer.headers if answer is not None else {}
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
        started = time.monotonic()
        while n < want and (n == 0 or time.monotonic() - started < _PIECE_TIME):
            try:
                data = self._raw.read1(want - n, decode_content=False)
            except NETWORK_ERRORS as exc:
                error = self._broke_at(self.position + n, exc)
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

    def read_piece(self, n: int) -> bytes:
        """``n`` bytes in one object (fewer only at the end; see ``WholePieces``): one call
        into http.client, whose buffered reader loops over socket reads and TLS records in C,
        straight into the object returned."""
        if self._raw is None:
            return b""
        return self._read_raw(self._raw.read, n)

    def readinto1(self, buf: memoryview) -> int:
        """What one socket read brings (at least 1 byte; 0 at the end), not a whole piece:
        the reader of a live stream must not wait for a piece of a slow station to fill."""
        if self._raw is None:
            return 0
        data = self._read_raw(self._raw.read1, len(buf))
        buf[: len(data)] = data
        return len(data)

    def _read_raw(self, read: Callable[..., bytes], n: int) -> bytes:
        """One urllib3 read of at most ``n`` bytes; a network error names the cut."""
        if self._broken is not None:
            raise self._broken
        try:
            data = read(n, decode_content=False)
        except NETWORK_ERRORS as exc:
            raise self._broke_at(self.position, exc) from exc
        self.position += len(data)
        return data

    def _broke_at(self, pos: int, exc: BaseException) -> ConnectionFailedError:
        return ConnectionFailedError(
            "connection broke while reading the body", url=self.url, byte_range=(pos, self.end), cause=exc
        )

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


def origin(url: str) -> Tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url``, the port made explicit: what credentials are
    given for (never sent to another origin)."""
    parsed = urllib3.util.parse_url(url)
    scheme = (parsed.scheme or "http").lower()
    return scheme, (parsed.host or "").lower(), parsed.port or (443 if scheme == "https" else 80)


CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


def without_credentials(headers: Mapping[str, str]) -> Dict[str, str]:
    """``headers`` less the credentials: what goes to an origin they were not given for."""
    return {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}


def connection_error(exc: BaseException, url: str, span: Optional[tuple]) -> StreamError:
    """The StreamError for a request that got no answer: a certificate that cannot be
    verified is its own, permanent error; a proxy refusing the tunnel is its HTTP status
    (407 is not retried, 5xx are); anything else is a (transient) connection failure."""
    failure = _certificate_failure(exc)
    if failure is not None:
        host = urllib3.util.parse_url(url).host
        reason = getattr(failure, "verify_message", None) or "certificate verify failed"
        # The reason in the user's terms; the library's wrappers stay in __cause__.
        return CertificateError(f"the TLS certificate of {host} could not be verified: {reason}", url=url, byte_range=span)
    if _speaks_no_tls(exc):
        parsed = urllib3.util.parse_url(url)
        where = f"{parsed.host}:{parsed.port or 443}"
        return TlsError(f"the server at {where} does not speak TLS (a plain http:// server?)", url=url, byte_range=span)
    refusal = _tunnel_refusal(exc)
    if refusal is not None:
        status, reason = refusal
        return HTTPStatusError(status, f"{reason} from the proxy".lstrip(), url=url, byte_range=span)
    return ConnectionFailedError("request failed", url=url, byte_range=span, cause=exc)


def _certificate_failure(exc: Optional[BaseException]) -> Optional[BaseException]:
    """The certificate verification failure in ``exc``'s chain: the ``ssl`` error itself,
    else a wrapper that says so; None if the failure was something else."""
    chain = cause_chain(exc)
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return link
    for link in chain:
        if isinstance(link, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)) and "CERTIFICATE_VERIFY_FAILED" in str(link):
            return link
    return None


# OpenSSL's reasons when the bytes that came back are no TLS record (an HTTP answer, mostly).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")


def _speaks_no_tls(exc: Optional[BaseException]) -> bool:
    """Whether the TLS handshake in ``exc``'s chain failed because the peer answered with
    something else than TLS (a plain-http server): retrying will not change it."""
    for link in cause_chain(exc):
        if isinstance(link, ssl.SSLError) and link.reason in _NOT_TLS:
            return True
        if isinstance(link, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)) and any(
            f"[SSL: {reason}]" in str(link) for reason in _NOT_TLS
        ):
            return True
    return False


# http.client's words when a proxy answers CONNECT with an error status.
_TUNNEL_FAILED = re.compile(r"^Tunnel connection failed: (\d{3})\b ?(.*)$")


def _tunnel_refusal(exc: Optional[BaseException]) -> Optional[Tuple[int, str]]:
    """(status, reason) if a proxy refused to open the tunnel."""
    for link in cause_chain(exc):
        if type(link) is OSError and link.args and isinstance(link.args[0], str):
            match = _TUNNEL_FAILED.match(link.args[0])
            if match:
                return int(match.group(1)), match.group(2).strip()
    return None
