"""The HTTP side of :class:`~tests.servers.faults.FaultServer`: the threading server that accepts
connections (a thread each) and the handler that answers each request from its fault plan."""

from __future__ import annotations

import gzip as _gzip
import http.server
import math
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple, Union

from . import ranged
from ._base import THREAD_PREFIX, is_disconnect
from .fault_kinds import _HTML_PAGE, Disconnect, HtmlPage, Redirect, Status, _make_plan, _Plan
from .fault_log import RequestRecord

if TYPE_CHECKING:
    from .faults import FaultServer

CHUNK = 256 * 1024

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


class _Stopped(Exception):
    pass


def _is_disconnect(exc: BaseException) -> bool:
    # Over TLS a client that goes away mid-response shows as an EOF in the TLS layer.
    return is_disconnect(exc) or isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))


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
            dated = if_range is not None and not if_range.strip().startswith(('"', "W/"))
            if if_range is None or (
                _if_range_matches(if_range, res.etag, res.last_modified) and not (dated and plan.dates_fail_if_range)
            ):
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
        body = memoryview(data)[first : last + 1]
        if plan.slice_as_200:
            return self._send(rec, method, 200, headers, body, plan)
        if value is not None:
            headers.append(("Content-Range", value))
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
