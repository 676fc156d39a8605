"""An in-memory HTTP/1.1 range server with scripted, per-request network faults.

Normal behaviour is a correct single-range server (``a-b``, ``a-``, ``-n``; 206 with
``Content-Range``; 416 with ``bytes */total``; HEAD; ``If-Range`` with strong ETag or exact
Last-Modified date, a mismatch answering 200 with the whole body; ``Accept-Ranges: bytes``).
Several ranges in one header, other units and bad syntax are ignored (200, whole body); Range on
HEAD is ignored (RFC 9110 14.2: range handling is defined for GET only).

Faults are small frozen dataclasses::

    with FaultServer() as srv:
        url = srv.add("/a.wav", data)
        srv.script("/a.wav", [Status(503, retry_after="1"), Reset(after_bytes=1000)])
        srv.always("/loop", Redirect("/loop"))
        ...
        assert srv.count("/a.wav") == 3

``script(path, faults)`` queues faults consumed one per request to ``path`` (any method, or only
``method=`` if given), after which the ``always(path, fault)`` fault (if any) applies, else normal
behaviour. A script item may be ``None``/``Normal()`` (this request is normal) or a tuple of
faults combined in one response, e.g. ``(Latency(0.2), Throttle(50_000), Reset(10_000))``.

Where a fault acts:
  before headers    Latency, Disconnect, Status, Redirect, HtmlPage (these replace the answer)
  in the headers    IgnoreRange, CapRange, WrongContentRange, BadContentRange, NoContentRange,
                    ChangedLength, ChangedETag, Gzip, Chunked, NoContentLength
  in the body       Reset, Truncate, Stall, StallForever, Throttle (counted in payload bytes;
                    they also apply to the bodies of Status/HtmlPage answers)

Every wait (Latency, Stall, StallForever, Throttle) is on the server's stop event: ``stop()``
cuts it short and resets the connection. Threads are named ``test-server-...``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import email.utils
import errno
import gzip as _gzip
import hashlib
import http.server
import itertools
import math
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import ranged
from ._base import REGISTRY as _REGISTRY  # in-process servers, for the leak checker

__all__ = [
    "FaultServer",
    "running_fault_server",
    "RequestRecord",
    "Resource",
    "Fault",
    "Normal",
    "Reset",
    "Truncate",
    "Stall",
    "StallForever",
    "Status",
    "WrongContentRange",
    "BadContentRange",
    "NoContentRange",
    "IgnoreRange",
    "CapRange",
    "ChangedETag",
    "ChangedLength",
    "HtmlPage",
    "Gzip",
    "Redirect",
    "Latency",
    "Throttle",
    "Disconnect",
    "Chunked",
    "NoContentLength",
    "parse_range",
    "UNSATISFIABLE",
    "THREAD_PREFIX",
]

THREAD_PREFIX = "test-server-"
CHUNK = 256 * 1024

# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class _Plan:
    """What one response must do, assembled from the fault(s) of the request."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.answer: Optional[Fault] = None  # Disconnect / Status / Redirect / HtmlPage
        self.ignore_range = False
        self.cap: Optional[int] = None
        # (first, last, total) -> Content-Range value, or None to omit it; forces a 206
        self.content_range: Optional[Callable[[int, int, int], Optional[str]]] = None
        self.total: Optional[int] = None  # ChangedLength: the total shown in 416/HEAD
        self.etag: Optional[str] = None
        self.gzip = False
        self.extra_headers: List[Tuple[str, str]] = []
        self.chunked = False
        self.no_length = False
        self.stalls: List[Tuple[int, float]] = []  # (after_bytes, seconds; inf = until stop)
        self.cut: Optional[Tuple[int, str]] = None  # (after_bytes, "reset" | "truncate")
        self.rate: Optional[float] = None

    def set_cut(self, after: int, kind: str) -> None:
        if self.cut is None or after < self.cut[0]:
            self.cut = (after, kind)


class Fault:
    """Base class of every fault."""

    def _apply(self, plan: _Plan) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Normal(Fault):
    """No fault: use in a script to let one request through normally (same as ``None``)."""

    def _apply(self, plan: _Plan) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Reset(Fault):
    """Send the headers and ``after_bytes`` body bytes, then abort the connection with a TCP RST
    (SO_LINGER 0 + close). With ``after_bytes`` >= the body, the whole body goes out first."""

    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.set_cut(self.after_bytes, "reset")


@dataclasses.dataclass(frozen=True)
class Truncate(Fault):
    """Send ``after_bytes`` body bytes, then close cleanly (FIN) although the framing
    (Content-Length / chunked) promised more."""

    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.set_cut(self.after_bytes, "truncate")


@dataclasses.dataclass(frozen=True)
class Stall(Fault):
    """After the headers and ``after_bytes`` body bytes, send nothing for ``seconds``, then go on
    (a stall point beyond the body or a Reset/Truncate point never happens)."""

    seconds: float
    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.stalls.append((self.after_bytes, float(self.seconds)))


@dataclasses.dataclass(frozen=True)
class StallForever(Fault):
    """After the headers and ``after_bytes`` body bytes, stall until the server stops (then the
    connection is reset)."""

    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.stalls.append((self.after_bytes, math.inf))


@dataclasses.dataclass(frozen=True)
class Status(Fault):
    """Answer ``code`` (503, 429, 404, 403, 500, 408, ...) instead of the resource, with an
    optional ``Retry-After``, body and extra headers; ``close`` adds ``Connection: close``."""

    code: int
    retry_after: Optional[str] = None
    body: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    close: bool = False

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class WrongContentRange(Fault):
    """206 whose Content-Range first/last are off by ``shift``; the bytes are the requested ones.
    A request without Range is treated as ``bytes=0-``."""

    shift: int

    def _apply(self, plan: _Plan) -> None:
        s = self.shift
        plan.content_range = lambda a, b, total: f"bytes {a + s}-{b + s}/{total}"


@dataclasses.dataclass(frozen=True)
class BadContentRange(Fault):
    """206 with literally ``Content-Range: value`` (garbage, wrong total, ...) and the requested
    bytes. A request without Range is treated as ``bytes=0-``."""

    value: str

    def _apply(self, plan: _Plan) -> None:
        v = self.value
        plan.content_range = lambda a, b, total: v


@dataclasses.dataclass(frozen=True)
class NoContentRange(Fault):
    """206 with the requested bytes but no Content-Range header at all."""

    def _apply(self, plan: _Plan) -> None:
        plan.content_range = lambda a, b, total: None


@dataclasses.dataclass(frozen=True)
class ChangedLength(Fault):
    """Content-Range (206 and 416) and HEAD's Content-Length show ``new_total`` as the total;
    the bytes are the requested ones. A GET without Range is treated as ``bytes=0-``."""

    new_total: int

    def _apply(self, plan: _Plan) -> None:
        n = self.new_total
        plan.content_range = lambda a, b, total: f"bytes {a}-{b}/{n}"
        plan.total = n


@dataclasses.dataclass(frozen=True)
class IgnoreRange(Fault):
    """A server without range support: 200 with the whole body, no Accept-Ranges."""

    def _apply(self, plan: _Plan) -> None:
        plan.ignore_range = True


@dataclasses.dataclass(frozen=True)
class CapRange(Fault):
    """A legal but surprising server (CDN slice limit): a 206 carries at most ``max_bytes``, with
    an honest Content-Range. Requests without Range are unaffected."""

    max_bytes: int

    def _apply(self, plan: _Plan) -> None:
        plan.cap = self.max_bytes


@dataclasses.dataclass(frozen=True)
class ChangedETag(Fault):
    """Correct bytes, but a different ETag header (``etag``, or a fresh strong one each time).
    If-Range is still evaluated against the real ETag."""

    etag: Optional[str] = None

    def _apply(self, plan: _Plan) -> None:
        plan.etag = self.etag or f'"changed-{next(_ETAG_COUNTER)}"'


@dataclasses.dataclass(frozen=True)
class HtmlPage(Fault):
    """A captive-portal / proxy error page (text/html) with ``status`` for any request."""

    status: int = 200

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class Gzip(Fault):
    """The body that would be sent (206 slice or whole) gzip-compressed, with
    ``Content-Encoding: gzip``, whatever Accept-Encoding said. Content-Range is unchanged."""

    def _apply(self, plan: _Plan) -> None:
        plan.gzip = True


@dataclasses.dataclass(frozen=True)
class Header(Fault):
    """An extra response header, the body unchanged (e.g. ``Content-Encoding: gzip`` on a
    stored ``.gz``, as werkzeug and twisted send it)."""

    name: str
    value: str

    def _apply(self, plan: _Plan) -> None:
        plan.extra_headers.append((self.name, self.value))


@dataclasses.dataclass(frozen=True)
class Redirect(Fault):
    """Redirect to ``location`` (relative or absolute) with ``code`` (301/302/303/307/308)."""

    location: str
    code: int = 302

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class Latency(Fault):
    """Wait ``seconds`` before the headers (``math.inf``: until the server stops)."""

    seconds: float

    def _apply(self, plan: _Plan) -> None:
        plan.latency += float(self.seconds)


@dataclasses.dataclass(frozen=True)
class Throttle(Fault):
    """Token-bucket body rate of ``bytes_per_second`` (burst: 1/20 s of data)."""

    bytes_per_second: float

    def _apply(self, plan: _Plan) -> None:
        plan.rate = float(self.bytes_per_second)


@dataclasses.dataclass(frozen=True)
class Disconnect(Fault):
    """Read the request, then close without any response (FIN; ``rst=True``: RST) - like a
    keep-alive connection the server dropped, or a crashed backend."""

    rst: bool = False

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class Chunked(Fault):
    """``Transfer-Encoding: chunked`` instead of Content-Length (body faults count payload)."""

    def _apply(self, plan: _Plan) -> None:
        plan.chunked = True


@dataclasses.dataclass(frozen=True)
class NoContentLength(Fault):
    """No Content-Length: the body is delimited by closing the connection (HTTP/1.0 style)."""

    def _apply(self, plan: _Plan) -> None:
        plan.no_length = True


FaultSpec = Union[None, Fault, Sequence[Fault]]

_ETAG_COUNTER = itertools.count(1)

_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sign in to Wi-Fi</title></head>\n"
    b"<body><h1>Welcome to Free Wi-Fi</h1><p>Please accept the terms of use to continue.</p>\n"
    b"<form method=\"post\" action=\"/login\"><button>Connect</button></form></body></html>\n"
)


def _make_plan(fault: FaultSpec) -> _Plan:
    plan = _Plan()
    if fault is None:
        return plan
    faults = fault if isinstance(fault, (tuple, list)) else (fault,)
    for f in faults:
        if f is None:
            continue
        if not isinstance(f, Fault):
            raise TypeError(f"not a fault: {f!r}")
        f._apply(plan)
    return plan


# --------------------------------------------------------------------------------------------
# Ranges and validators
# --------------------------------------------------------------------------------------------

UNSATISFIABLE = "unsatisfiable"


def parse_range(value: str, total: int) -> Union[None, str, Tuple[int, int]]:
    """One ``Range`` header against ``total`` bytes: inclusive ``(first, last)``, ``None`` to
    ignore the header (other unit, several ranges, bad syntax), or :data:`UNSATISFIABLE`.
    The ranged server's parser, with the 416 case as a value."""
    try:
        return ranged.parse_range(value, total)
    except ranged.RangeNotSatisfiable:
        return UNSATISFIABLE


def _if_range_matches(value: str, etag: Optional[str], last_modified: Optional[str]) -> bool:
    v = value.strip()
    if v.startswith("W/"):
        return False  # weak validators never match If-Range
    if v.startswith('"'):
        return etag is not None and not etag.startswith("W/") and v == etag
    return last_modified is not None and v == last_modified


# --------------------------------------------------------------------------------------------
# Resources and the request log
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Resource:
    data: bytes
    etag: Optional[str]
    last_modified: Optional[str]
    content_type: str


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()


@dataclasses.dataclass
class RequestRecord:
    """One request. ``status`` is set before the headers go out, ``bytes_sent`` (body bytes)
    before each write, so a client holding data already sees it counted. ``outcome``: ``None``
    while in progress, then "ok", "reset", "truncated", "disconnected", "client-gone" or
    "stopped"."""

    method: str
    path: str  # without query, percent-decoded
    target: str  # the request target as sent
    range: Optional[str]
    if_range: Optional[str]
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    connection: int  # 1, 2, ... per accepted TCP connection (keep-alive reuse keeps the id)
    fault: FaultSpec = None
    status: Optional[int] = None
    bytes_sent: int = 0
    outcome: Optional[str] = None
    response_headers: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.outcome is not None


class _Stopped(Exception):
    pass


_QUIET_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.EBADF}


def _is_disconnect(exc: BaseException) -> bool:
    # Over TLS a client that goes away mid-response shows as an EOF in the TLS layer.
    return isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, ssl.SSLEOFError, ssl.SSLZeroReturnError)) or (
        isinstance(exc, OSError) and exc.errno in _QUIET_ERRNOS
    )


# --------------------------------------------------------------------------------------------
# Handler
# --------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FaultServer/1.0"
    sys_version = ""
    server: "_HTTPServer"

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.conn_id = self.server.owner._next_conn_id()
        self.tls_failed = False
        if isinstance(self.connection, ssl.SSLSocket):
            # The handshake runs here, on the connection's thread, not in the accept loop.
            try:
                self.connection.do_handshake()
            except (OSError, ValueError) as exc:  # refused by the client, or cut by stop()
                self.tls_failed = True
                self.server.owner._record_tls_failure(exc)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def version_string(self) -> str:
        return self.server_version

    def handle(self) -> None:
        if self.tls_failed:
            return
        try:
            super().handle()
        except Exception as exc:
            if not _is_disconnect(exc):
                self.server.owner._record_error(exc)
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    # -- request ---------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        owner = self.server.owner
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path) or "/"
        fault = owner._take_fault(path, method)
        rec = RequestRecord(
            method=method,
            path=path,
            target=self.path,
            range=self.headers.get("Range"),
            if_range=self.headers.get("If-Range"),
            headers=self.headers,
            connection=self.conn_id,
            fault=fault,
        )
        owner._begin(rec)
        outcome = "ok"
        try:
            if owner.auth is not None and self.headers.get("Authorization") != owner.auth:
                headers = [("WWW-Authenticate", 'Basic realm="faults"'), ("Content-Type", "text/plain")]
                outcome = self._send(rec, method, 401, headers, b"unauthorized\n", _Plan()) or "ok"
                return
            outcome = self._respond(rec, method, path, _make_plan(fault)) or "ok"
        except _Stopped:
            outcome = "stopped"
            self._cut(rst=True)
        except Exception as exc:
            self.close_connection = True
            if not _is_disconnect(exc):
                outcome = "error"
                owner._record_error(exc)
            else:
                outcome = "client-gone"
        finally:
            owner._end(rec, outcome)

    def _wait(self, seconds: float) -> None:
        if seconds <= 0:
            return
        stop = self.server.owner._stop_event
        if stop.wait(None if math.isinf(seconds) else seconds):
            raise _Stopped

    def _respond(self, rec: RequestRecord, method: str, path: str, plan: _Plan) -> Optional[str]:
        self._wait(plan.latency)
        answer = plan.answer
        if isinstance(answer, Disconnect):
            self._cut(rst=answer.rst)
            return "disconnected"
        if isinstance(answer, Status):
            headers = [(k, v) for k, v in answer.headers.items()]
            if answer.retry_after is not None:
                headers.append(("Retry-After", answer.retry_after))
            if answer.body and not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("Content-Type", "text/plain; charset=utf-8"))
            if answer.close:
                headers.append(("Connection", "close"))
            return self._send(rec, method, answer.code, headers, answer.body, plan)
        if isinstance(answer, Redirect):
            headers = [("Location", answer.location), ("Content-Type", "text/plain")]
            return self._send(rec, method, answer.code, headers, b"", plan)
        if isinstance(answer, HtmlPage):
            headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
            return self._send(rec, method, answer.status, headers, _HTML_PAGE, plan)

        res = self.server.owner.resource(path)
        if res is None:
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            return self._send(rec, method, 404, headers, b"not found\n", plan)

        data, total = res.data, len(res.data)
        headers = [("Content-Type", res.content_type)]
        etag = plan.etag if plan.etag is not None else res.etag
        if etag is not None:
            headers.append(("ETag", etag))
        if res.last_modified is not None:
            headers.append(("Last-Modified", res.last_modified))
        if not plan.ignore_range:
            headers.append(("Accept-Ranges", "bytes"))

        selected: Union[None, str, Tuple[int, int]] = None
        rng = self.headers.get("Range")
        if method == "GET" and rng is not None and not plan.ignore_range:
            if_range = self.headers.get("If-Range")
            if if_range is None or _if_range_matches(if_range, res.etag, res.last_modified):
                selected = parse_range(rng, total)
        if selected == UNSATISFIABLE:
            shown = plan.total if plan.total is not None else total
            headers.append(("Content-Range", f"bytes */{shown}"))
            return self._send(rec, method, 416, headers, b"", plan)
        if selected is None and plan.content_range is not None and method == "GET" and total:
            selected = (0, total - 1)
        if selected is None:
            head_length = plan.total if method == "HEAD" else None
            return self._send(rec, method, 200, headers, data, plan, head_length=head_length)
        assert isinstance(selected, tuple)
        first, last = selected
        if plan.cap is not None:
            last = min(last, first + max(1, plan.cap) - 1)
        if plan.content_range is not None:
            value = plan.content_range(first, last, total)
        else:
            value = f"bytes {first}-{last}/{total}"
        if value is not None:
            headers.append(("Content-Range", value))
        body = memoryview(data)[first : last + 1]
        return self._send(rec, method, 206, headers, body, plan)

    # -- response --------------------------------------------------------------------------

    def _send(
        self,
        rec: RequestRecord,
        method: str,
        code: int,
        headers: List[Tuple[str, str]],
        body: Union[bytes, memoryview],
        plan: _Plan,
        head_length: Optional[int] = None,
    ) -> Optional[str]:
        headers = list(headers) + plan.extra_headers
        if plan.gzip:
            body = _gzip.compress(bytes(body), mtime=0)
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        if plan.chunked and method != "HEAD":
            headers.append(("Transfer-Encoding", "chunked"))
        elif plan.no_length:
            headers.append(("Connection", "close"))
        else:
            n = head_length if head_length is not None else len(body)
            headers.append(("Content-Length", str(n)))
        self._chunked = plan.chunked and method != "HEAD"
        rec.status = code
        rec.response_headers = headers
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if method == "HEAD":
            body = b""
        return self._write_body(rec, memoryview(body), plan)

    def _write_body(self, rec: RequestRecord, body: memoryview, plan: _Plan) -> Optional[str]:
        stop = self.server.owner._stop_event
        n = len(body)
        limit, cut = n, None
        if plan.cut is not None:
            limit, cut = min(plan.cut[0], n), plan.cut[1]
        bucket = _Bucket(plan.rate, self._wait) if plan.rate else None
        step_max = bucket.burst if bucket else CHUNK
        points = sorted((a, s) for a, s in plan.stalls if a <= limit) + [(limit, 0.0)]
        pos = 0
        for at, seconds in points:
            while pos < at:
                if stop.is_set():
                    raise _Stopped
                step = min(at - pos, step_max)
                if bucket:
                    bucket.take(step)
                self._write_payload(rec, body[pos : pos + step])
                pos += step
            self._wait(seconds)
        if cut is not None:
            self._cut(rst=(cut == "reset"))
            return "reset" if cut == "reset" else "truncated"
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")
        return None

    def _write_payload(self, rec: RequestRecord, chunk: memoryview) -> None:
        rec.bytes_sent += len(chunk)
        if self._chunked:
            self.wfile.write(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
        else:
            self.wfile.write(chunk)

    def _cut(self, rst: bool) -> None:
        """End the connection now: RST (SO_LINGER 0 + close) or FIN (shutdown for writing)."""
        self.close_connection = True
        sock = self.connection
        if rst:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.server.owner._forget_conn(sock)
            try:
                self.rfile.close()  # drops the makefile reference so close() is real
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        else:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class _Bucket:
    """Token bucket for one response body."""

    def __init__(self, rate: float, wait: Callable[[float], None]) -> None:
        self.rate = rate
        self.burst = int(max(1, min(64 * 1024, rate / 20)))
        self.tokens = float(self.burst)
        self.last = time.monotonic()
        self.wait = wait

    def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        if self.tokens < 0:
            self.wait(-self.tokens / self.rate)


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    owner: "FaultServer"

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        owner = self.owner
        with owner._lock:
            if owner._stop_event.is_set():
                request.close()
                return
            owner._conns.add(request)
            n = owner._conn_threads_started = owner._conn_threads_started + 1
            t = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                name=f"{THREAD_PREFIX}faults-{self.server_port}-conn-{n}",
                daemon=True,
            )
            owner._threads = [x for x in owner._threads if x.is_alive()]
            owner._threads.append(t)
        t.start()

    def shutdown_request(self, request: Any) -> None:
        self.owner._forget_conn(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and not _is_disconnect(exc):
            self.owner._record_error(exc)


class FaultServer:
    """In-memory HTTP/1.1 keep-alive range server on 127.0.0.1 with scripted faults.

    Starts serving on construction; use as a context manager or call :meth:`stop`.
    ``host``: the loopback address to listen on (``127.0.0.2`` for a second "host").
    ``tls``: an ``ssl.SSLContext`` (server side) or an object with ``server_context()``
    (``tests.servers.tls.TlsFiles``): serve https; each connection's handshake runs on its
    own thread, and a failed one is counted in ``tls_failures``, not in ``errors``.
    ``auth``: the exact ``Authorization`` value every request must carry, else 401.
    """

    def __init__(
        self,
        *,
        join_timeout: float = 5.0,
        host: str = "127.0.0.1",
        tls: Any = None,
        auth: Optional[str] = None,
    ) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        self._stopped_event = threading.Event()
        self._stopping = False
        self._join_timeout = join_timeout
        self._resources: Dict[str, Resource] = {}
        self._scripts: Dict[Tuple[str, Optional[str]], Deque[FaultSpec]] = {}
        self._always: Dict[Tuple[str, Optional[str]], FaultSpec] = {}
        self._log: List[RequestRecord] = []
        self._inflight = 0
        self._conns: set = set()
        self._threads: List[threading.Thread] = []
        self._conn_threads_started = 0
        self._conn_ids = itertools.count(1)
        self._version = itertools.count(1)
        self.errors: List[BaseException] = []  # unexpected server-side exceptions (bugs)
        self.tls_failures: List[BaseException] = []  # handshakes that failed (client refused us)
        self.auth = auth

        self.httpd = _HTTPServer((host, 0), _Handler)
        self.httpd.owner = self
        if tls is not None:
            context = tls if isinstance(tls, ssl.SSLContext) else tls.server_context()
            self.httpd.socket = context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.host = host
        self.port: int = self.httpd.server_address[1]
        self.base_url = f"{'https' if tls is not None else 'http'}://{host}:{self.port}"
        _REGISTRY.add(self.port, Path(f"/nonexistent/fault-server-{self.port}"))
        self._serve_thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{THREAD_PREFIX}faults-{self.port}-serve",
            daemon=True,
        )
        self._serve_thread.start()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "FaultServer":
        """No-op (the server starts in the constructor); for symmetry with other servers."""
        return self

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Unblock every stall, stop accepting, cut open connections, join all threads
        (bounded by ``join_timeout``). Idempotent and safe to call from several threads."""
        with self._lock:
            first = not self._stopping
            self._stopping = True
        if not first:
            self._stopped_event.wait(self._join_timeout * 2 + 1)
            return
        try:
            self._stop_event.set()
            self.httpd.shutdown()
            self._serve_thread.join(self._join_timeout)
            self.httpd.server_close()
            with self._lock:
                # Under the lock: handlers forget a socket (under the lock) before closing it,
                # so no closed, possibly reused, descriptor is touched here.
                for conn in self._conns:
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                threads = list(self._threads)
            deadline = time.monotonic() + self._join_timeout
            me = threading.current_thread()
            for t in threads:
                if t is not me:
                    t.join(max(0.0, deadline - time.monotonic()))
        finally:
            _REGISTRY.remove(self.port)
            self._stopped_event.set()

    @property
    def stopped(self) -> bool:
        return self._stopped_event.is_set()

    def alive_threads(self) -> List[threading.Thread]:
        """Server threads still running (empty after a successful stop())."""
        with self._lock:
            threads = list(self._threads)
        return [t for t in threads + [self._serve_thread] if t.is_alive()]

    # -- resources -------------------------------------------------------------------------

    def url(self, path: str = "/") -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def add(
        self,
        path: str,
        data: bytes,
        *,
        etag: Optional[str] = AUTO,
        last_modified: Optional[str] = AUTO,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Serve ``data`` at ``path``; returns its URL. ``etag``/``last_modified``: ``None`` for
        no header, default a fresh strong ETag and the current time."""
        path = self._norm(path)
        with self._lock:
            old = self._resources.get(path)
            self._resources[path] = self._make(bytes(data), etag, last_modified, content_type, old)
        return self.url(path)

    def replace(
        self,
        path: str,
        new_data: bytes,
        *,
        etag: Optional[str] = AUTO,
        last_modified: Optional[str] = AUTO,
    ) -> Resource:
        """Replace the bytes like a file replaced on the server: the ETag and Last-Modified change
        too (unless the resource had none). Responses already under way keep the old bytes."""
        path = self._norm(path)
        with self._lock:
            old = self._resources[path]
            if etag is AUTO and old.etag is None:
                etag = None
            if last_modified is AUTO and old.last_modified is None:
                last_modified = None
            res = self._make(bytes(new_data), etag, last_modified, old.content_type, old)
            self._resources[path] = res
            return res

    def remove(self, path: str) -> None:
        with self._lock:
            self._resources.pop(self._norm(path), None)

    def resource(self, path: str) -> Optional[Resource]:
        with self._lock:
            return self._resources.get(self._norm(path))

    def etag(self, path: str) -> Optional[str]:
        res = self.resource(path)
        return res.etag if res else None

    def last_modified(self, path: str) -> Optional[str]:
        res = self.resource(path)
        return res.last_modified if res else None

    def _make(
        self,
        data: bytes,
        etag: Optional[str],
        last_modified: Optional[str],
        content_type: str,
        old: Optional[Resource],
    ) -> Resource:
        version = next(self._version)
        if etag is AUTO:
            etag = f'"{hashlib.sha1(data).hexdigest()[:16]}-{version}"'
        if last_modified is AUTO:
            ts = int(time.time())
            if old is not None and old.last_modified is not None:
                prev = email.utils.parsedate_to_datetime(old.last_modified).timestamp()
                ts = max(ts, int(prev) + 1)
            last_modified = email.utils.formatdate(ts, usegmt=True)
        return Resource(data, etag, last_modified, content_type)

    @staticmethod
    def _norm(path: str) -> str:
        return "/" + path.lstrip("/")

    # -- faults ----------------------------------------------------------------------------

    def script(
        self, path: str, faults: Sequence[FaultSpec], *, method: Optional[str] = None
    ) -> None:
        """Queue ``faults``, consumed one per request to ``path`` (only ``method`` requests if
        given), in order; afterwards the ``always`` fault or normal behaviour applies.
        Appends to what is already queued."""
        for f in faults:
            _make_plan(f)  # validate now, not in a handler thread
        key = (self._norm(path), method.upper() if method else None)
        with self._lock:
            self._scripts.setdefault(key, collections.deque()).extend(faults)

    def always(self, path: str, fault: FaultSpec, *, method: Optional[str] = None) -> None:
        """Apply ``fault`` to every request to ``path`` (not consumed); ``None`` clears it."""
        _make_plan(fault)
        key = (self._norm(path), method.upper() if method else None)
        with self._lock:
            if fault is None:
                self._always.pop(key, None)
            else:
                self._always[key] = fault

    def pending(self, path: str, *, method: Optional[str] = None) -> int:
        """How many scripted faults for ``path`` (and ``method``) are not consumed yet."""
        key = (self._norm(path), method.upper() if method else None)
        with self._lock:
            return len(self._scripts.get(key, ()))

    def clear_faults(self, path: Optional[str] = None) -> None:
        with self._lock:
            if path is None:
                self._scripts.clear()
                self._always.clear()
            else:
                p = self._norm(path)
                for d in (self._scripts, self._always):
                    for key in [k for k in d if k[0] == p]:
                        del d[key]

    def _take_fault(self, path: str, method: str) -> FaultSpec:
        with self._lock:
            for key in ((path, method), (path, None)):
                q = self._scripts.get(key)
                if q:
                    return q.popleft()
            for key in ((path, method), (path, None)):
                if key in self._always:
                    return self._always[key]
        return None

    # -- request log -----------------------------------------------------------------------

    @property
    def requests(self) -> List[RequestRecord]:
        """Copy of the request log (records of requests still in progress keep changing)."""
        with self._lock:
            return list(self._log)

    def count(self, path: Optional[str] = None, method: Optional[str] = None) -> int:
        """Number of requests received (to ``path``, with ``method``)."""
        p = self._norm(path) if path is not None else None
        with self._lock:
            return sum(
                1
                for r in self._log
                if (p is None or r.path == p) and (method is None or r.method == method.upper())
            )

    def last(self, path: Optional[str] = None) -> Optional[RequestRecord]:
        p = self._norm(path) if path is not None else None
        with self._lock:
            for r in reversed(self._log):
                if p is None or r.path == p:
                    return r
        return None

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    clear_requests = reset_log

    @property
    def connections(self) -> int:
        """Number of TCP connections accepted so far."""
        with self._lock:
            return self._conn_threads_started

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is in progress (records final); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def wait_requests(self, n: int, path: Optional[str] = None, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests (to ``path``) have arrived; False on timeout."""
        p = self._norm(path) if path is not None else None
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for r in self._log if p is None or r.path == p) >= n, timeout
            )

    # -- internals used by the handler -----------------------------------------------------

    def _next_conn_id(self) -> int:
        with self._lock:
            return next(self._conn_ids)

    def _begin(self, rec: RequestRecord) -> None:
        with self._cond:
            self._log.append(rec)
            self._inflight += 1
            self._cond.notify_all()

    def _end(self, rec: RequestRecord, outcome: str) -> None:
        with self._cond:
            rec.outcome = outcome
            self._inflight -= 1
            self._cond.notify_all()

    def _forget_conn(self, sock: Any) -> None:
        with self._lock:
            self._conns.discard(sock)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def _record_tls_failure(self, exc: BaseException) -> None:
        with self._lock:
            self.tls_failures.append(exc)

    def __repr__(self) -> str:
        return f"<FaultServer {self.base_url}>"


@contextlib.contextmanager
def running_fault_server(**options: Any) -> Iterator[FaultServer]:
    """A FaultServer(**options), stopped afterwards; fails if the server itself hit an error."""
    server = FaultServer(**options)
    try:
        yield server
    finally:
        server.stop()
        assert server.errors == [], server.errors
