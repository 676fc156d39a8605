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
  in the headers    IgnoreRange, DatesFailIfRange, CapRange, RangeAs200, WrongContentRange,
                    BadContentRange, NoContentRange, ChangedLength, ChangedETag, Gzip, Chunked,
                    NoContentLength
  in the body       Reset, Truncate, Stall, StallForever, Throttle (counted in payload bytes;
                    they also apply to the bodies of Status/HtmlPage answers)

Every wait (Latency, Stall, StallForever, Throttle) is on the server's stop event: ``stop()``
cuts it short and resets the connection. Threads are named ``test-server-...``.

The faults live in ``fault_kinds.py``, the HTTP server and handler in ``fault_handler.py``,
the request log in ``fault_log.py``; every name above is importable from this module.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import email.utils
import hashlib
import itertools
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from ._base import REGISTRY as _REGISTRY  # in-process servers, for the leak checker
from ._base import THREAD_PREFIX
from .fault_handler import UNSATISFIABLE, _Handler, _HTTPServer, parse_range
from .fault_kinds import (
    BadContentRange,
    CapRange,
    ChangedETag,
    ChangedLength,
    Chunked,
    DatesFailIfRange,
    Disconnect,
    Fault,
    FaultSpec,
    Gzip,
    Header,
    HtmlPage,
    IgnoreRange,
    Latency,
    NoContentLength,
    NoContentRange,
    Normal,
    RangeAs200,
    Redirect,
    Reset,
    Stall,
    StallForever,
    Status,
    Throttle,
    Truncate,
    WrongContentRange,
    _make_plan,
)
from .fault_log import RequestRecord, _RequestLog

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
    "DatesFailIfRange",
    "CapRange",
    "RangeAs200",
    "ChangedETag",
    "ChangedLength",
    "HtmlPage",
    "Gzip",
    "Header",
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

# --------------------------------------------------------------------------------------------
# Resources
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


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class FaultServer(_RequestLog):
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

    # -- connections -----------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Number of TCP connections accepted so far."""
        with self._lock:
            return self._conn_threads_started

    # -- internals used by the handler -----------------------------------------------------

    def _next_conn_id(self) -> int:
        with self._lock:
            return next(self._conn_ids)

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
