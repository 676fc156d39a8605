"""An answer as :mod:`http.client` reads it for us: past interim heads, its head paced.

``http.client`` skips only ``100 Continue``: a ``103 Early Hints`` or ``102 Processing``
would be taken for the answer, the real one left unread on the connection. And it reads a
head line by line from the socket, each socket read bounded by the read timeout alone, so
a server that drips a head (a byte every second, never silent for the timeout) holds a
request for as long as it likes: a 64 KiB header line alone takes 18 hours. libcurl's
transfer loop (:mod:`.curl`) holds heads to the speed limit; :class:`FinalResponse` does
the same here, with ``Timeout.speed_limit`` over ``speed_time`` from the head's first byte
(``retry.Pace``, as a body's), for every head of one answer (a proxy's CONNECT answer too).

A chunked body's framing is checked on the same file, before ``http.client`` decodes it
(:mod:`.chunks`: sizes read strictly, framing lines held to the speed limit, trailers
capped): ``http.client`` took a negative size and handed the framing over as body.

No private name of ``http.client`` is used: a connection's ``response_class`` is made with
the socket and reads it through ``sock.makefile("rb")`` (as every CPython 3 does). Ours
gets a stand-in whose ``makefile`` wraps the socket's own unbuffered file (``SocketIO``,
which keeps the socket open while the answer reads it) in :class:`_SocketFile`; once the
head is in, a chunked body's reads go through the framing check, any other's to that file
directly.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from typing import Any, Optional

from ..retry import FirstBytePace, Timeout
from .chunks import ChunkFraming, FramingError, final_head_end

_MAX_INTERIM = 32  # interim (1xx) answers read before one request's answer; more is an error


class _SocketFile(io.RawIOBase):
    """The socket's file as the answer's buffered reader reads it. Until :meth:`head_done`
    the heads' bytes are held to the speed limit (``pace``; None: not held) and kept, to
    find where the body starts; then a chunked body's framing is checked as it comes
    (:class:`.chunks.ChunkFraming`), and any other body reads the file directly."""

    def __init__(self, raw: Any, pace: Optional[Timeout]) -> None:
        super().__init__()
        self._raw = raw
        self._timeout = pace
        self._pace = FirstBytePace(pace)  # the heads'
        self._seen: Optional[bytearray] = bytearray()  # the raw bytes read until head_done
        self._framing: Optional[ChunkFraming] = None
        self._refused: Optional[ConnectionError] = None  # raised at the next read

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> Optional[int]:
        if self._refused is not None:
            raise self._refused
        n = self._raw.readinto(buf)
        if not n:
            return n
        framing = self._framing
        if framing is not None:  # a chunked body
            try:
                framing.feed(memoryview(buf)[:n])
            except FramingError as exc:
                if not exc.good:
                    raise
                self._refused = ConnectionError(str(exc))  # the sound bytes before it first
                return exc.good
            if framing.done:
                self._direct()
            return n
        if self._seen is not None:  # a head
            self._seen += memoryview(buf)[:n]
            if self._pace.slow(n):
                raise ConnectionError(f"the answer's head came too slowly: {self._pace.describe()}")
        return n

    def head_done(self, chunked: bool) -> None:
        """The heads are in. A chunked body's framing is checked from its first byte (some
        may have come with the head); any other body reads the socket's file directly (its
        pace is the fetch loop's)."""
        seen, self._seen = self._seen, None
        if not chunked or seen is None:
            self._direct()
            return
        start = final_head_end(bytes(seen))
        if start is None:  # http.client read a head this cannot find: do not guess
            raise ConnectionError("the answer's chunked body could not be followed")
        framing = ChunkFraming(self._timeout)
        framing.feed(seen[start:])
        if framing.done:
            self._direct()
        else:
            self._framing = framing

    def _direct(self) -> None:
        self._framing = None
        self.readinto = self._raw.readinto  # type: ignore[method-assign]

    def fileno(self) -> int:
        return int(self._raw.fileno())

    def close(self) -> None:
        try:
            self._raw.close()  # lets the socket close once nothing reads it
        finally:
            super().close()


class _Socket:
    """What ``http.client.HTTPResponse`` is made with: the socket, whose file it reads
    through ``_SocketFile``."""

    def __init__(self, sock: socket.socket, pace: Optional[Timeout]) -> None:
        self._sock = sock
        self._pace = pace
        self.file: Optional[_SocketFile] = None

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        self.file = _SocketFile(self._sock.makefile("rb", buffering=0), self._pace)
        return io.BufferedReader(self.file)


class FinalResponse(http.client.HTTPResponse):
    """``http.client``'s response, past any interim answer (read and dropped, as libcurl
    does: at most ``_MAX_INTERIM`` of them, within the read timeout), with its heads paced
    by ``timeout`` (None: not paced). ``101 Switching Protocols`` is an answer: it ends HTTP
    on the connection. Made by :meth:`HttpConnection.getresponse` (``response_class``)."""

    def __init__(self, sock: socket.socket, *args: Any, timeout: Optional[Timeout] = None, **kwargs: Any) -> None:
        shim = _Socket(sock, timeout)
        super().__init__(shim, *args, **kwargs)  # type: ignore[arg-type]  # it reads shim.makefile()
        self._file = shim.file
        self._interim_limit = sock.gettimeout() or 30.0  # seconds

    def begin(self) -> None:
        super().begin()
        began = time.monotonic()
        count = 1
        while 102 <= self.status < 200:
            elapsed = time.monotonic() - began
            if count > _MAX_INTERIM or elapsed > self._interim_limit:
                raise http.client.HTTPException(
                    f"{count} interim answers ({self.status} {self.reason}) in {elapsed:.1f} s, and no answer"
                )
            self.headers = None  # type: ignore[assignment]  # begin() then reads the next head
            super().begin()
            count += 1
        if self._file is not None:
            coding = self.headers.get("Transfer-Encoding") or ""
            self._file.head_done(coding.lower() == "chunked")  # as http.client decides


__all__ = ["FinalResponse"]
