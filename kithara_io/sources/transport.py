"""The wire under HttpSource: abort handles, answers and bodies over the network layer.

Every request of a source goes through :mod:`kithara_io.net` (one :class:`~kithara_io.net.Client`
per source: redirects, environment proxies, netrc, cookies, credentials per origin, one TLS
context, kept-alive connections). Here: what a fetch holds of it.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from ..errors import ConnectionFailedError
from ..net.connections import Piece
from ..net.connections import shutdown as _shutdown
from ..net.errors import connection_error
from ..net.policy import CREDENTIAL_HEADERS, without_credentials
from ..net.response import Response
from ..net.urls import origin

NETWORK_ERRORS = (
    http.client.HTTPException,
    OSError,  # ConnectionError, socket.timeout, ssl.SSLError
)

_PIECE_TIME = 0.05  # a piece returns after this long with what it has: waiting readers see it


class AbortHandle:
    """Lets another thread break the request one fetch is making.

    Before the request is sent, an abort means it is never sent; from the moment its
    connection is connected (the network layer's ``on_connect``) the handle knows it, and an
    abort shuts its socket down, so a request waiting for its answer or a blocked body read
    fails at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self.aborted = False

    def attach(self, conn: Any) -> None:
        """The request's connection is known: an abort from now on shuts it down."""
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


@dataclass
class Answer:
    """The status line and headers of one response (a :class:`~kithara_io.net.Response`)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    url: str
    raw: Any  # kithara_io.net.Response

    @classmethod
    def of(cls, response: Response) -> "Answer":
        return cls(response.status, response.reason, response.headers, response.url, response)

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
        # An old Shoutcast answer (``ICY 200 OK``): a live reader reconnects that way at once.
        self.icy: bool = answer is not None and getattr(answer.raw, "icy", False)
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

    def read_piece(self, n: int) -> Piece:
        """``n`` bytes in one object (fewer only at the end; see ``WholePieces``): one call
        into http.client, whose buffered reader loops over socket reads and TLS records in C,
        straight into the object returned."""
        if self._raw is None:
            return b""
        return self._read_raw(self._raw.read, n)

    def readinto_piece(self, buf: memoryview) -> int:
        """Fill ``buf`` in one call, straight from the socket into the caller's memory (no
        intermediate ``bytes``): http.client's C loop over socket reads and TLS records. It
        blocks until ``buf`` is full (fewer bytes only at the end of the body), so, like
        :meth:`read_piece`, it suits a link whose rate is known to fill it quickly."""
        if self._raw is None:
            return 0
        if self._broken is not None:
            raise self._broken
        try:
            n = self._raw.readinto(buf)
        except NETWORK_ERRORS as exc:
            raise self._broke_at(self.position, exc) from exc
        self.position += n
        return n

    def break_off(self) -> None:
        """See ``WholePieces.break_off``: the answer's connection is shut down."""
        raw = self._raw
        if raw is not None:
            raw.shutdown()

    @property
    def paces_itself(self) -> bool:
        raw = self._raw
        return raw is not None and getattr(raw.connection, "paces_itself", False)

    def readinto1(self, buf: memoryview) -> int:
        """What one socket read brings (at least 1 byte; 0 at the end), not a whole piece:
        the reader of a live stream must not wait for a piece of a slow station to fill."""
        if self._raw is None:
            return 0
        data = self._read_raw(self._raw.read1, len(buf))
        buf[: len(data)] = data
        return len(data)

    def _read_raw(self, read: Callable[..., Piece], n: int) -> Piece:
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


__all__ = [
    "CREDENTIAL_HEADERS",
    "NETWORK_ERRORS",
    "AbortHandle",
    "Answer",
    "HttpBody",
    "connection_error",
    "origin",
    "without_credentials",
]
