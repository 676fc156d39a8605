"""Kept-alive connections per origin (and proxy), over ``http.client``'s public API.

What the client needs of a connection is the :class:`Connection` Protocol; ``http.client``
was chosen for it by measurement (bench/README.md, "The transport": the least CPU per byte,
since a body is received straight into the caller's buffer, and 1.1-1.2x its bare cost per
64 KiB request; pycurl is cheaper per small request but hands every piece over as a new
``bytes``: 3-4.4x the CPU on 4 MiB bodies over http, 1.0-1.3x over https). Small range
requests go over pycurl's connections (:mod:`.curl`), kept in the same pool under their own
keys.

A :class:`Pool` belongs to one source (its ``close`` closes them all). A connection is taken
for one request and comes back only when its answer was read to its end and the server keeps
it open; one that the server closed while idle is dropped when taken. ``shutdown_all`` breaks
every connection the pool has in use, also those whose request still waits for its answer
(a source closing).

Idle connections under a :class:`SharedKey` are kept in one store that the pools of every
ranged source share (:data:`SHARED`), as a requests ``Session`` or obstore's client shares
its pool: a second stream of an origin starts on a connection the first one left, without
a TCP and TLS handshake. The key names everything a connection is bound to (origin, proxy
and its credentials, CA bundle and client certificate), so no source ever uses a
connection set up under another's settings. A connection in the store belongs to no pool
(a source closing does not break it); it belongs to the pool that takes it. The store is
emptied when the last sharing pool closes: no socket outlives the streams.

After ``os.fork()`` the child forgets the parent's connections without touching them (no
shutdown, which the parent's peers would see): its requests open fresh ones.

Thread safety: a pool's ``_lock`` guards its ``_idle`` and ``_open``, the store's its own
``_idle`` and user count; no I/O under either, and neither is held while taking the other.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import weakref
from typing import Any, Dict, Hashable, List, Mapping, Optional, Protocol, Tuple, Union

from .answer_heads import FinalResponse

_MAX_IDLE = 8  # per key: a stream keeps at most its max_outstanding fetches busy
_MAX_SHARED = 32  # per key in the shared store: the idle connections of many streams at once


class _Kept:
    """What our ``http.client`` connections add: the socket kept reachable for aborts (on a
    ``Connection: close`` answer http.client forgets ``sock`` once the headers are in, the
    response alone reading it), and the pool's liveness check."""

    sock: Optional[socket.socket]
    kept_sock: Optional[socket.socket] = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.kept_sock = self.sock

    def dropped(self) -> bool:
        """Whether the server closed this idle connection (readable: EOF, or bytes nobody
        asked for)."""
        sock = self.sock
        if sock is None:
            return True
        try:
            return readable(sock)
        except OSError:
            return True


class HttpConnection(_Kept, http.client.HTTPConnection):
    response_class = FinalResponse


class HttpsConnection(_Kept, http.client.HTTPSConnection):
    response_class = FinalResponse


Piece = Union[bytes, memoryview]  # a read of an answer: new bytes, or a view of its body's memory (libcurl's)


class Answer(Protocol):
    """An answer on a connection: status line, headers, and its body read into the caller's
    memory (``readinto``) or as what arrived (``read1``)."""

    status: int
    reason: str
    headers: Any  # case-insensitive mapping (http.client.HTTPMessage)

    def readinto(self, buf: memoryview) -> int: ...

    def read1(self, n: int = -1) -> Piece: ...

    def read(self, n: Optional[int] = None) -> Piece: ...

    def isclosed(self) -> bool: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """One connection to an origin (or through a proxy's tunnel). ``kept_sock`` is its socket
    once connected, which :func:`shutdown` breaks from any thread (an abort); ``dropped``:
    an idle one in the pool that must not be used again."""

    sock: Optional[socket.socket]
    kept_sock: Any
    response_class: Any  # what getresponse() makes: an answer_heads.FinalResponse

    def connect(self) -> None: ...

    def dropped(self) -> bool: ...

    def request(self, method: str, url: str, body: None = None, headers: Mapping[str, str] = ...) -> None: ...

    def getresponse(self) -> Answer: ...

    def close(self) -> None: ...


def new_connection(
    host: str,
    port: int,
    *,
    tls: Optional[ssl.SSLContext],
    timeout: Optional[float],
    tunnel: Optional[Tuple[str, int, Dict[str, str]]] = None,
) -> Connection:
    """A connection (not yet connected) to ``host:port``; through a CONNECT tunnel to
    ``tunnel``'s ``(host, port, headers)`` when ``host`` is a proxy."""
    conn: Any
    if tls is not None:
        conn = HttpsConnection(host, port, timeout=timeout, context=tls)
    else:
        conn = HttpConnection(host, port, timeout=timeout)
    if tunnel is not None:
        conn.set_tunnel(tunnel[0], tunnel[1], headers=tunnel[2])
    return conn


def readable(sock: socket.socket) -> bool:
    """Has ``sock`` something to read now (bytes, EOF or an error)? On an idle connection,
    that is nothing a request of ours asked for. OSError if it cannot be polled."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def shutdown(conn: Optional[Connection]) -> None:
    """Break ``conn`` from any thread: a blocked read or write on it fails at once."""
    shutdown_socket(None if conn is None else (getattr(conn, "kept_sock", None) or conn.sock))


def shutdown_socket(sock: Any) -> None:
    """Shut ``sock`` down from any thread, its TLS state left alone. ``ssl.SSLSocket.shutdown``
    drops that state first, and a read racing it (or the next read on the thread using the
    socket) then takes the raw TLS records waiting in the kernel as plaintext: a body that
    continues with ciphertext. Shut down at the socket level, such a read decrypts what
    already came, then ends (or raises), as on a plain socket."""
    if sock is None:
        return
    try:
        if isinstance(sock, ssl.SSLSocket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class SharedKey(tuple):
    """A pool key whose idle connections go to the shared store (see the module docstring);
    the caller builds it from everything the connection is bound to."""

    __slots__ = ()


class SharedIdle:
    """Idle connections shared by the pools that ask for it, per :class:`SharedKey`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: Dict[Hashable, List[Connection]] = {}
        self._users = 0

    def attach(self) -> None:
        with self._lock:
            self._users += 1

    def detach(self) -> None:
        """A sharing pool closed; the last one closes every idle connection."""
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def take(self, key: Hashable) -> Optional[Connection]:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give_back(self, key: Hashable, conn: Connection) -> bool:
        """Keep ``conn`` for the next taker of ``key``; False if there is no room (or no
        sharing pool is left), then the caller closes it."""
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if self._users <= 0 or len(idle) >= _MAX_SHARED:
                return False
            idle.append(conn)
            return True

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._idle = {}


SHARED = SharedIdle()


class Pool:
    """Idle connections per key, and every connection in use (see the module docstring).
    ``shared``: connections under a :class:`SharedKey` are kept in that store instead."""

    def __init__(self, keep_alive: bool = True, shared: Optional[SharedIdle] = None) -> None:
        self._keep_alive = keep_alive
        self._lock = threading.Lock()
        self._idle: Dict[Hashable, List[Connection]] = {}
        self._open: "weakref.WeakSet[Connection]" = weakref.WeakSet()
        self._closed = False
        self._shared = shared if keep_alive else None
        self._detach: Optional[weakref.finalize] = None
        if self._shared is not None:
            self._shared.attach()
            # Called by close(), or when a pool nobody closed is collected: it never keeps
            # the shared connections open for good.
            self._detach = weakref.finalize(self, self._shared.detach)
        _POOLS.add(self)

    def take(self, key: Hashable) -> Optional[Connection]:
        """An idle connection for ``key`` that is still usable (``Connection.dropped``), or None."""
        shared = self._shared if type(key) is SharedKey else None
        while True:
            if shared is not None:
                conn = shared.take(key)
                if conn is not None:
                    self.opened(conn)  # ours from now: shutdown_all reaches it
            else:
                with self._lock:
                    idle = self._idle.get(key)
                    conn = idle.pop() if idle else None
            if conn is None or not conn.dropped():
                return conn
            conn.close()

    def opened(self, conn: Connection) -> None:
        """Track a new connection (``shutdown_all`` reaches it from now on)."""
        with self._lock:
            self._open.add(conn)
            closed = self._closed
        if closed:
            shutdown(conn)

    def give_back(self, key: Hashable, conn: Connection) -> None:
        """A connection whose answer was read to its end, still open."""
        shared = self._shared if type(key) is SharedKey else None
        with self._lock:
            keep = self._keep_alive and not self._closed and conn.sock is not None
            if shared is not None:
                self._open.discard(conn)  # the store's now: this source closing leaves it alone
            else:
                idle = self._idle.setdefault(key, [])
                if keep and len(idle) < _MAX_IDLE:
                    idle.append(conn)
                    return
        if not (keep and shared is not None and shared.give_back(key, conn)):
            conn.close()

    def shutdown_all(self) -> None:
        """Break every connection, idle or in use (requests waiting for their answer too)."""
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            shutdown(conn)

    def close(self) -> None:
        """Close the idle connections; connections in use are closed by their answers."""
        with self._lock:
            self._closed = True
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()
        if self._detach is not None:
            self._detach()  # once: a finalizer runs at most once

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._idle = {}
        self._open = weakref.WeakSet()


_POOLS: "weakref.WeakSet[Pool]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    SHARED._forget_after_fork()
    for pool in list(_POOLS):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = [
    "Answer",
    "Connection",
    "HttpConnection",
    "HttpsConnection",
    "Pool",
    "SHARED",
    "SharedIdle",
    "SharedKey",
    "new_connection",
    "readable",
    "shutdown",
    "shutdown_socket",
]
