"""A small forward HTTP proxy for the tests: absolute-URI requests and CONNECT tunnels.

``ProxyServer(auth="Basic ...")`` listens on 127.0.0.1 and logs every request it gets (a
:class:`ProxyRecord`: method, target, the ``Proxy-Authorization`` it carried). With ``auth``
set, a request without exactly that ``Proxy-Authorization`` is answered 407. A ``GET``/``HEAD``
with an absolute ``http://`` target is forwarded over a keep-alive upstream connection (per
client connection) without the hop-by-hop and proxy headers; a chunked upstream body is
re-framed with a length, a close-delimited one (a radio station's) is relayed as it comes,
close-delimited; ``CONNECT host:port`` opens a TCP tunnel and copies bytes both ways until one
side closes.

Threads are named ``test-server-proxy-...``; ``stop()`` shuts every socket (client and
upstream) down, which ends every tunnel and forward at once, and joins the threads.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import itertools
import select
import socket
import socketserver
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ._base import REGISTRY, THREAD_PREFIX, is_disconnect

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_PIECE = 256 * 1024
_MAX_UNFRAMED = 64 * 1024 * 1024  # an upstream body without Content-Length is buffered, up to this


@dataclasses.dataclass(frozen=True)
class ProxyRecord:
    """One request the proxy received."""

    method: str
    target: str  # absolute URI, or host:port for CONNECT
    proxy_authorization: Optional[str]
    headers: Any  # the request's headers (http.client.HTTPMessage)
    connection: int  # 1, 2, ... per accepted client connection


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TestProxy/1.0"
    sys_version = ""
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.conn_id = self.server.owner._next_conn_id()
        self.upstreams: Dict[Tuple[str, int], http.client.HTTPConnection] = {}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            for conn in self.upstreams.values():
                self.server.owner._forget(conn.sock)
                conn.close()
            self.upstreams.clear()

    def handle(self) -> None:
        try:
            super().handle()
        except Exception as exc:
            if not is_disconnect(exc):
                self.server.owner._record_error(exc)
            self.close_connection = True

    # -- requests ----------------------------------------------------------------------------

    def _admit(self) -> bool:
        """Log the request; answer 407 unless it carries the proxy credentials asked for."""
        owner = self.server.owner
        given = self.headers.get("Proxy-Authorization")
        owner._log_request(ProxyRecord(self.command, self.path, given, self.headers, self.conn_id))
        if owner.auth is None or given == owner.auth:
            return True
        self._reply(407, [("Proxy-Authenticate", 'Basic realm="test-proxy"')], b"proxy credentials needed\n")
        return False

    def _reply(self, code: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        self.send_response(code)
        for name, value in headers + [("Content-Length", str(len(body))), ("Content-Type", "text/plain")]:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        if not self._admit():
            return
        split = urllib.parse.urlsplit(self.path)
        if split.scheme != "http" or not split.hostname:
            self._reply(400, [], b"absolute http:// URI expected\n")
            return
        path = (split.path or "/") + (f"?{split.query}" if split.query else "")
        try:
            upstream = self._upstream(split.hostname, split.port or 80)
            upstream.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders()
            response = upstream.getresponse()
        except OSError as exc:
            self._drop_upstream(split.hostname, split.port or 80)
            self._reply(502, [], f"upstream failed: {exc}\n".encode())
            return
        self._relay(response)
        if response.will_close:
            self._drop_upstream(split.hostname, split.port or 80)

    def _upstream(self, host: str, port: int) -> http.client.HTTPConnection:
        conn = self.upstreams.get((host, port))
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.connect()
            self.server.owner._track(conn.sock)
            self.upstreams[(host, port)] = conn
        return conn

    def _drop_upstream(self, host: str, port: int) -> None:
        conn = self.upstreams.pop((host, port), None)
        if conn is not None:
            self.server.owner._forget(conn.sock)
            conn.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        length = response.getheader("Content-Length")
        chunked = "chunked" in (response.getheader("Transfer-Encoding") or "").lower()
        if length is None and not chunked and self.command != "HEAD":
            self._relay_until_close(response, headers)
            return
        body: Optional[bytes] = None
        if length is None and self.command != "HEAD":
            body = response.read(_MAX_UNFRAMED)  # unframed or chunked upstream: re-frame it
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        self.send_response(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if body is not None:
            self.wfile.write(body)
            return
        for _ in range(int(length or 0) // _PIECE + 2):  # bounded by the announced length
            piece = response.read(_PIECE)
            if not piece:
                break
            self.wfile.write(piece)

    def _relay_until_close(self, response: http.client.HTTPResponse, headers: List[Tuple[str, str]]) -> None:
        """A body delimited by the upstream closing (endless for a station): relayed piece by
        piece, then this connection closed too (bounded: ends when either side does)."""
        self.send_response(response.status, response.reason)
        for name, value in headers + [("Connection", "close")]:
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        for _ in range(1 << 24):
            piece = response.read1(_PIECE)
            if not piece:
                return
            self.wfile.write(piece)
            self.wfile.flush()

    def do_CONNECT(self) -> None:
        if not self._admit():
            self.close_connection = True
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError) as exc:
            self._reply(502, [], f"tunnel failed: {exc}\n".encode())
            self.close_connection = True
            return
        owner = self.server.owner
        owner._track(upstream)
        try:
            upstream.settimeout(None)
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            _pipe(self.connection, upstream)
        finally:
            owner._forget(upstream)
            upstream.close()
            self.close_connection = True


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes or fails (stop() shuts both down)."""
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select([a, b], [], [])
        for sock in readable:
            try:
                data = sock.recv(_PIECE)
                if not data:
                    return
                peers[sock].sendall(data)
            except OSError:
                return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: "ProxyServer"

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        owner = self.owner
        with owner._lock:
            if owner._stopping:
                request.close()
                return
            owner._socks.add(request)
            n = next(owner._thread_ids)
            thread = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                name=f"{THREAD_PREFIX}proxy-{self.server_port}-conn-{n}",
                daemon=True,
            )
            owner._threads = [t for t in owner._threads if t.is_alive()]
            owner._threads.append(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        self.owner._forget(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if exc is not None and not is_disconnect(exc):
            self.owner._record_error(exc)


class ProxyServer:
    """A forward proxy on 127.0.0.1 (see the module docstring). ``url`` is its address;
    ``proxy_url(user, password)`` the same with credentials in it."""

    def __init__(self, *, auth: Optional[str] = None, join_timeout: float = 5.0) -> None:
        self.auth = auth
        self._join_timeout = join_timeout
        self._lock = threading.Lock()
        self._stopping = False
        self._log: List[ProxyRecord] = []
        self._socks: set = set()
        self._threads: List[threading.Thread] = []
        self._thread_ids = itertools.count(1)
        self._conn_ids = itertools.count(1)
        self.errors: List[BaseException] = []
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        REGISTRY.add(self.port, Path(f"/nonexistent/proxy-{self.port}"))
        self._serve = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{THREAD_PREFIX}proxy-{self.port}-serve",
            daemon=True,
        )
        self._serve.start()

    def proxy_url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def requests(self) -> List[ProxyRecord]:
        with self._lock:
            return list(self._log)

    def stop(self) -> None:
        """Stop accepting, shut every client and upstream socket down, join the threads."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            self.httpd.shutdown()
            self._serve.join(self._join_timeout)
            self.httpd.server_close()
            with self._lock:
                for sock in self._socks:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                threads = list(self._threads)
            deadline = time.monotonic() + self._join_timeout
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        finally:
            REGISTRY.remove(self.port)

    def __enter__(self) -> "ProxyServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler -------------------------------------------------------------------

    def _next_conn_id(self) -> int:
        with self._lock:
            return next(self._conn_ids)

    def _log_request(self, record: ProxyRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _track(self, sock: Any) -> None:
        with self._lock:
            self._socks.add(sock)

    def _forget(self, sock: Any) -> None:
        with self._lock:
            self._socks.discard(sock)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def __repr__(self) -> str:
        return f"<ProxyServer {self.url}>"
