"""Shared machinery for the in-process test HTTP servers.

Every in-process server runs its accept loop and each connection in threads named
``test-server-...`` and registers its port and served directory in :data:`REGISTRY`, so the
``no_leaks`` fixture can tell server-side resources from the client-side ones under test.
"""

from __future__ import annotations

import dataclasses
import errno
import http.server
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Optional, TypeVar

#: Prefix of the name of every thread started by an in-process test server.
THREAD_PREFIX = "test-server-"

_S = TypeVar("_S", bound="ServerBase")

_QUIET_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.EBADF}


def is_disconnect(exc: BaseException) -> bool:
    """True for the errors a server sees when its client goes away (or stop() cuts it off)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _QUIET_ERRNOS


class _Registry:
    """Ports and directories of the in-process servers that are running (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: dict[int, Path] = {}

    def add(self, port: int, root: Path) -> None:
        with self._lock:
            self._servers[port] = root

    def remove(self, port: int) -> None:
        with self._lock:
            self._servers.pop(port, None)

    def ports(self) -> set[int]:
        with self._lock:
            return set(self._servers)

    def roots(self) -> set[Path]:
        with self._lock:
            return set(self._servers.values())


REGISTRY = _Registry()


@dataclasses.dataclass
class RequestRecord:
    """One request as the server answered it.

    ``bytes_sent`` counts body bytes handed to the socket; it is updated *before* each write,
    so once a client holds a complete body the record already shows all of it.
    """

    method: str
    path: str
    range: Optional[str]
    if_range: Optional[str]
    status: int
    bytes_sent: int = 0


class RequestLog:
    """Thread-safe list of :class:`RequestRecord`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> RequestRecord:
        with self._lock:
            self._records.append(record)
        return record

    def count_bytes(self, record: RequestRecord, n: int) -> None:
        with self._lock:
            record.bytes_sent += n

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return [dataclasses.replace(r) for r in self._records]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class TrackingHTTPServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose connection threads are named, tracked and always joined.

    ``stop_event`` is set when stopping; handlers wait on it instead of sleeping, and
    ``close_connections()`` shuts down every open connection socket so no handler can keep the
    server alive (a client holding an idle keep-alive connection, a stalled throttled body).
    """

    daemon_threads = False
    block_on_close = True

    def __init__(self, handler: Any, name: str, host: str = "127.0.0.1") -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, 0), handler)
        self.name = name
        self.stop_event = threading.Event()
        self.log = RequestLog()
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_threads: list[threading.Thread] = []
        self._conn_count = 0
        self.root: Optional[Path] = None  # set by ServerBase
        self.config: Any = None  # handler settings, set by ServerBase

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (simulated network time), or less if the server is stopping."""
        if seconds > 0:
            self.stop_event.wait(seconds)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._conn_count += 1
            self._conns.add(request)
            self._conn_threads = [t for t in self._conn_threads if t.is_alive()]
            t = threading.Thread(
                target=self.process_request_thread,
                args=(request, client_address),
                name=f"{THREAD_PREFIX}{self.name}-{self.server_port}-conn-{self._conn_count}",
                daemon=False,
            )
            self._conn_threads.append(t)
        t.start()

    def shutdown_request(self, request: Any) -> None:
        # Forget the socket under the lock before it is closed, so close_connections() never
        # touches a closed (and possibly reused) file descriptor.
        with self._conn_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def join_connections(self, timeout: float) -> None:
        with self._conn_lock:
            threads = list(self._conn_threads)
        for t in threads:
            t.join(timeout)
            if t.is_alive():
                raise RuntimeError(f"{t.name} did not finish within {timeout} s")

    def server_close(self) -> None:
        # Threads are joined explicitly by ServerBase.stop(); skip ThreadingMixIn's join.
        http.server.HTTPServer.server_close(self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and is_disconnect(exc):
            return
        super().handle_error(request, client_address)


class ServerBase:
    """Runs a :class:`TrackingHTTPServer` in a background thread; context manager."""

    kind = "base"
    supports_ranges = False

    def __init__(
        self,
        root: "str | Path",
        handler: Any,
        config: Any = None,
        join_timeout: float = 10.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.root = Path(root).resolve()
        self._join_timeout = join_timeout
        self._stop_lock = threading.Lock()
        self._stopped = False
        self.httpd = TrackingHTTPServer(handler, self.kind, host)
        self.httpd.root = self.root
        self.httpd.config = config
        self.port: int = self.httpd.server_port
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
        REGISTRY.add(self.port, self.root)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{THREAD_PREFIX}{self.kind}-{self.port}-serve",
            daemon=False,
        )
        self._thread.start()

    def url(self, name: str) -> str:
        """URL of ``name`` (a path relative to the served directory)."""
        return f"{self.base_url}/{name.lstrip('/')}"

    @property
    def requests(self) -> list[RequestRecord]:
        """Copy of the request log."""
        return self.httpd.log.snapshot()

    def reset_log(self) -> None:
        self.httpd.log.clear()

    def stop(self) -> None:
        """Stop serving, cut open connections, join every thread. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            self.httpd.stop_event.set()
            self.httpd.shutdown()
            self._thread.join(self._join_timeout)
            self.httpd.server_close()
            self.httpd.close_connections()
            self.httpd.join_connections(self._join_timeout)
            REGISTRY.remove(self.port)

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url} root={self.root}>"
