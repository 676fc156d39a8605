"""Servers of the benchmark: nginx with a parseable access log, a delaying proxy, link shaping.

* :class:`BenchNginx` - the system nginx (as ``tests.servers.NginxServer``: inherited listening
  socket, private prefix), with one worker, sendfile, keep-alive and an access log that records
  status, body bytes sent, Range header and the request line (the query string carries a tag
  per run, so every request is attributed to one client and one run). It runs in the process
  group of the benchmark process, so killing that group takes nginx with it.
  :func:`bench_nginx` starts it over http or https (certificates made per run, ``trustme``).
* :class:`DelayProxy` - a TCP proxy that turns loopback into a long link (see its docstring).
* :func:`shape_loopback` - ``tc tbf`` on ``lo`` inside a private network namespace.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional

from _common import parse_access_log, settle
from tests.servers.nginx import NginxServer
from tests.servers.tls import TlsFiles, make_tls_files

_LIVE: "set[Any]" = set()  # servers and proxies running in this process
_LIVE_LOCK = threading.Lock()


def _register(obj: Any) -> None:
    with _LIVE_LOCK:
        _LIVE.add(obj)


def _unregister(obj: Any) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(obj)


def stop_all() -> None:
    """Stop every server and proxy of this process (signal handlers call it before unwinding,
    in case the exception they raise is swallowed by a C callback such as soundfile's)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for obj in live:
        try:
            obj.stop()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


_CONF = """\
daemon off;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$msec $status $body_bytes_sent $request_time "$http_range" "$request"';
    access_log {d}/access.log bench;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{ audio/wav wav; audio/flac flac; audio/ogg ogg; audio/mpeg mp3; }}
    default_type application/octet-stream;
    sendfile on;
    # tcp_nopush stays off (nginx's default): with it, every keep-alive range response
    # stalled ~44 ms on this kernel's loopback (TCP_CORK), which would dominate case 2.
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    {limit_rate}
    server {{
        listen 127.0.0.1:{port}{ssl};
        server_name localhost;
        {tls}
        root {root};
        location / {{ }}
        # /t/<tag>/<file> is /<file>: obstore's shared store names the run in the path
        location /t/ {{ rewrite ^/t/[^/]+/(.*)$ /$1 break; }}
    }}
}}
"""


class BenchNginx(NginxServer):
    """The test suite's nginx with the bench's configuration: an access log that attributes
    requests and bytes to a run, ``limit_rate`` (bytes/s, per connection), and https with
    ``tls`` (the test suite's TLS settings: TLS 1.2/1.3, a shared session cache)."""

    config_template = _CONF

    def __init__(
        self,
        root: Path,
        *,
        limit_rate: Optional[int] = None,
        tls: Optional[TlsFiles] = None,
        start_timeout: float = 10.0,
    ) -> None:
        self._limit_rate = limit_rate
        _register(self)
        super().__init__(root, start_timeout, tls=tls)

    def _config_values(self) -> dict:
        rate = f"limit_rate {int(self._limit_rate)};" if self._limit_rate else ""
        return {**super()._config_values(), "limit_rate": rate}

    def requests(self, tag: Optional[str] = None) -> List[Dict[str, Any]]:
        """The logged requests (whose query carries ``bench=<tag>``, or whose path starts with
        ``/t/<tag>/``, if given)."""
        entries = parse_access_log(self.access_log)
        if tag is None:
            return entries
        needle, prefix = f"bench={tag} ", f" /t/{tag}/"
        return [e for e in entries if needle in e["request"] + " " or prefix in e["request"]]

    def settled_requests(self, tag: str) -> List[Dict[str, Any]]:
        """``requests(tag)`` once nginx has logged the requests a closed client aborted."""
        settle(lambda: (len(self.requests(tag)), sum(e["bytes"] for e in self.requests(tag))))
        return self.requests(tag)

    def tls_version(self) -> Optional[str]:
        """The TLS version a default client context negotiates with this server (None: http)."""
        if self.tls is None:
            return None
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls.client_context())
        try:
            conn.connect()
            return conn.sock.version()
        finally:
            conn.close()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        _unregister(self)


@contextlib.contextmanager
def bench_nginx(root: Path, *, https: bool = False, limit_rate: Optional[int] = None) -> Iterator[BenchNginx]:
    """A :class:`BenchNginx` over http, or over https with a CA and certificate made for this
    run (``srv.tls``: what the clients must trust)."""
    if not https:
        with BenchNginx(root, limit_rate=limit_rate) as srv:
            yield srv
        return
    with tempfile.TemporaryDirectory(prefix="kithara-bench-tls-") as d:
        with BenchNginx(root, limit_rate=limit_rate, tls=make_tls_files(Path(d))) as srv:
            yield srv


def scheme_note(srv: BenchNginx) -> str:
    """``", TLSv1.3 (...)"`` for an https server, ``""`` for http: the cases' set-up notes."""
    version = srv.tls_version()
    return f", {version} (a CA and certificate made for the run)" if version else ""


# -- a long link ------------------------------------------------------------------------------
class _Conn:
    def __init__(self, client_writer: asyncio.StreamWriter) -> None:
        self.client_writer = client_writer
        self.upstream_writer: Optional[asyncio.StreamWriter] = None
        self.downq: Deque[Optional[bytes]] = collections.deque()  # None: upstream EOF
        self.queued = 0  # bytes in downq plus in flight on the link, not yet delivered
        self.space = asyncio.Event()
        self.space.set()
        self.closed = False
        self.tasks: List[asyncio.Task] = []


class DelayProxy:
    """TCP proxy on 127.0.0.1 in front of ``upstream_port`` that models one long link.

    The model (netem-like, done in user space because this kernel has no ``sch_netem``):

    * **Propagation**: every chunk is delivered ``rtt / 2`` after it arrived, in each direction
      (a per-packet delay, not a per-request one: a keep-alive request costs 1 RTT to first
      byte, pipelined or concurrent requests overlap their delays).
    * **Handshake**: the kernel accepts the client's TCP connection at once, so the first bytes
      a connection sends are held until ``rtt`` after it was accepted (then the ``rtt / 2``
      propagation): a request on a fresh connection sees its first byte after 2 RTT, as with a
      real TCP handshake. TLS is not modelled, nor TCP slow start (large transfers on fresh
      connections are therefore a little faster than on a real link). Over https, the TLS
      handshake's round trips cross the proxy like any other bytes (TLS 1.3: one more RTT
      before a fresh connection's first response).
    * **Bandwidth**: ``bandwidth`` bytes/s downstream (server -> client), shared by all
      connections through one link that serves the connections' queues round-robin
      (fair queuing, like ``fq_codel``), one chunk of at most ``chunk`` bytes at a time. Each
      connection has at most ``window`` bytes queued or in flight (its TCP window); upstream
      traffic (requests) is not limited.
    * A connection closed by the client is closed towards the server ``rtt / 2`` later; what
      was queued for it is dropped (its bytes no longer occupy the link).
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        rtt: float,
        bandwidth: Optional[float] = None,
        window: int = 1 << 20,
        chunk: int = 16 * 1024,
        scheme: str = "http",
    ) -> None:
        self.upstream_port = upstream_port
        self.scheme = scheme  # of the URLs it hands out: TLS passes through the proxy untouched
        self.rtt = rtt
        self.one_way = rtt / 2
        self.bandwidth = bandwidth
        self.window = window
        self.chunk = chunk
        self.connections = 0
        self._conns: "set[_Conn]" = set()
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="bench-delay-proxy", daemon=True)
        self._thread.start()
        _register(self)
        if not self._ready.wait(10) or self._error is not None:
            self.stop()
            raise RuntimeError(f"delay proxy did not start: {self._error}")

    # -- lifecycle ---------------------------------------------------------------------
    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        # stop(): close everything that is left, then the loop
        for conn in list(self._conns):
            self._close(conn)
        self._server.close()
        pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.wait(pending, timeout=5))
        self._loop.close()

    async def _start(self) -> None:
        self._link_wakeup = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"
        if self.bandwidth:
            self._link_task = asyncio.ensure_future(self._link())

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name.lstrip('/')}"

    def stop(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except RuntimeError:  # loop already closed
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(10)
        _unregister(self)

    def __enter__(self) -> "DelayProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one connection ----------------------------------------------------------------
    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        conn = _Conn(client_writer)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        conn.upstream_writer = up_writer
        self._conns.add(conn)
        for sock_writer in (client_writer, up_writer):
            sock = sock_writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.tasks = [
            asyncio.ensure_future(self._uplink(conn, client_reader, accepted)),
            asyncio.ensure_future(self._downlink_reader(conn, up_reader)),
        ]
        try:
            await asyncio.wait(conn.tasks)
        except asyncio.CancelledError:  # stop()
            for t in conn.tasks:
                t.cancel()

    async def _uplink(self, conn: _Conn, reader: asyncio.StreamReader, accepted: float) -> None:
        loop = asyncio.get_running_loop()
        handshake_done = accepted + self.rtt
        try:
            while not conn.closed:
                data = await reader.read(64 * 1024)
                due = max(loop.time(), handshake_done) + self.one_way
                if not data:
                    loop.call_at(due, self._close, conn)
                    return
                loop.call_at(due, self._deliver_up, conn, data)
        except (OSError, asyncio.IncompleteReadError):
            loop.call_at(loop.time() + self.one_way, self._close, conn)

    def _deliver_up(self, conn: _Conn, data: bytes) -> None:
        if conn.closed or conn.upstream_writer is None:
            return
        if conn.upstream_writer.transport.is_closing():
            self._close(conn)
            return
        conn.upstream_writer.write(data)

    async def _downlink_reader(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not conn.closed:
                while conn.queued >= self.window and not conn.closed:
                    conn.space.clear()
                    await conn.space.wait()
                if conn.closed:
                    return
                data = await reader.read(self.chunk)
                if not self.bandwidth:
                    if not data:
                        loop.call_at(loop.time() + self.one_way, self._close, conn)
                        return
                    conn.queued += len(data)
                    loop.call_at(loop.time() + self.one_way, self._deliver_down, conn, data)
                    continue
                conn.downq.append(data or None)
                conn.queued += len(data)
                self._link_wakeup.set()
                if not data:
                    return
        except OSError:
            loop.call_soon(self._close, conn)

    async def _link(self) -> None:
        """The bottleneck: serves the connections' queues round-robin at ``bandwidth``."""
        loop = asyncio.get_running_loop()
        free_at = loop.time()
        rr: Deque[_Conn] = collections.deque()
        while True:
            rr.extend(c for c in self._conns if c.downq and c not in rr)
            rr = collections.deque(c for c in rr if c.downq and not c.closed)
            if not rr:
                self._link_wakeup.clear()
                await self._link_wakeup.wait()
                free_at = max(free_at, loop.time())
                continue
            conn = rr.popleft()
            data = conn.downq.popleft()
            if conn.downq:
                rr.append(conn)
            if data is None:  # upstream EOF, after everything queued before it
                loop.call_at(max(free_at, loop.time()) + self.one_way, self._close, conn)
                continue
            free_at = max(free_at, loop.time()) + len(data) / self.bandwidth
            loop.call_at(free_at + self.one_way, self._deliver_down, conn, data)
            delay = free_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    def _deliver_down(self, conn: _Conn, data: bytes) -> None:
        conn.queued -= len(data)
        conn.space.set()
        if conn.closed:
            return
        if conn.client_writer.transport.is_closing():  # the client went away
            self._close(conn)
            return
        try:
            conn.client_writer.write(data)
        except (OSError, RuntimeError):
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.downq.clear()
        conn.space.set()
        self._conns.discard(conn)
        for w in (conn.client_writer, conn.upstream_writer):
            if w is not None:
                try:
                    w.close()
                except (OSError, RuntimeError):
                    pass


# -- link shaping in a network namespace ------------------------------------------------------
def can_shape_in_netns() -> bool:
    """Root with ``unshare`` and ``tc``: the throttled case runs in a private network
    namespace whose loopback is shaped (the machine's own ``lo`` is never touched)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("tc") is not None


def in_private_netns() -> bool:
    return os.environ.get("KITHARA_BENCH_NETNS") == "1"


def loopback_up() -> None:
    """Bring ``lo`` of the private network namespace up (unshaped)."""
    if not in_private_netns():
        raise RuntimeError("not in a private network namespace")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)


def shape_loopback(rate_bytes: int) -> str:
    """Bring ``lo`` up and put a token bucket on it: every byte on loopback (both directions,
    all connections) shares ``rate_bytes``/s, like one link. Call only inside a private
    network namespace. Returns the qdisc description."""
    if not in_private_netns():
        raise RuntimeError("refusing to shape the loopback of the host's own network namespace")
    rate_bits = rate_bytes * 8
    cmds = [
        ["ip", "link", "set", "lo", "up"],
        # burst above lo's 64 KiB MTU (GSO packets); 20 ms of queue
        ["tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", f"{rate_bits}bit",
         "burst", "256kb", "latency", "20ms"],
    ]
    for cmd in cmds:
        subprocess.run(cmd, check=True, capture_output=True, timeout=10)
    out = subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def terminate_group(proc: subprocess.Popen, grace: float = 8.0) -> None:
    """SIGTERM a child's process group, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(grace)
