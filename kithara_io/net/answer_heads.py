"""An answer as :mod:`http.client` reads it for us: past interim heads, its head paced.

``http.client`` skips only ``100 Continue``: a ``103 Early Hints`` or ``102 Processing``
would be taken for the answer, the real one left unread on the connection. And it reads a
head line by line from the socket, each socket read bounded by the read timeout alone, so
a server that drips a head (a byte every second, never silent for the timeout) holds a
request for as long as it likes: a 64 KiB header line alone takes 18 hours. libcurl's
transfer loop (:mod:`.curl`) holds heads to the speed limit; :class:`FinalResponse` does
the same here, with ``Timeout.speed_limit`` over ``speed_time`` from the head's first byte
(``retry.Pace``, as a body's), for every head of one answer (a proxy's CONNECT answer too).

The lines of chunk framing are ours too. A chunk size is read strictly (``1*HEXDIG``, then
extensions): ``http.client`` reads it with ``int(line, 16)``, which takes ``-2`` (it then
handed every byte after it over as body, the framing included), ``+a``, ``0x1f`` or ``1_0``.
A framing line (a size, a trailer) is held to the speed limit from its first byte, and a
last chunk takes at most ``_MAX_TRAILERS`` trailer lines: inside one read of the body,
``http.client`` read a dripped size line (64 KiB at a byte a second) or trailer lines that
never end for as long as they came. These are the two private methods overridden
(``_read_next_chunk_size``, ``_read_and_discard_trailer``, unchanged since Python 3.5; a
ValueError from the first is how ``http.client`` itself fails a body: ``IncompleteRead``).

Otherwise no private name of ``http.client`` is used: a connection's ``response_class`` is made with
the socket and reads it through ``sock.makefile("rb")`` (as every CPython 3 does). Ours
gets a stand-in whose ``makefile`` wraps the socket's own unbuffered file (``SocketIO``,
which keeps the socket open while the answer reads it) in :class:`_PacedHead`; once the
head is in, the body's reads go to that file directly.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import time
from typing import Any, Optional

from ..retry import Pace, Timeout

_MAX_INTERIM = 32  # interim (1xx) answers read before one request's answer; more is an error
_MAX_LINE = 65536  # a chunk-size or trailer line, as http.client's _MAXLINE
_MAX_TRAILERS = 100  # trailer lines after the last chunk, as http.client's _MAXHEADERS
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]+")


class _PacedHead(io.RawIOBase):
    """The socket's file as the answer's buffered reader reads it: the head's bytes held to
    the speed limit, then (:meth:`head_done`) nothing in the way of the body's reads."""

    def __init__(self, raw: Any, timeout: Timeout) -> None:
        super().__init__()
        self._raw = raw
        self._timeout = timeout
        self._pace: Optional[Pace] = None  # from the head's first byte: waiting for it is the read timeout's

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> Optional[int]:
        n = self._raw.readinto(buf)
        if n:
            now = time.monotonic()
            if self._pace is None:
                self._pace = Pace(self._timeout, now)
            elif self._pace.slow(n, now):
                raise ConnectionError(f"the answer's head came too slowly: {self._pace.describe()}")
        return n

    def head_done(self) -> None:
        """The head is in: the body reads the socket's file without this layer (its pace is
        the fetch loop's)."""
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
    through ``_PacedHead``."""

    def __init__(self, sock: socket.socket, timeout: Timeout) -> None:
        self._sock = sock
        self._timeout = timeout
        self.head: Optional[_PacedHead] = None

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        self.head = _PacedHead(self._sock.makefile("rb", buffering=0), self._timeout)
        return io.BufferedReader(self.head)


class FinalResponse(http.client.HTTPResponse):
    """``http.client``'s response, past any interim answer (read and dropped, as libcurl
    does: at most ``_MAX_INTERIM`` of them, within the read timeout), with its heads paced
    by ``timeout`` (None: not paced). ``101 Switching Protocols`` is an answer: it ends HTTP
    on the connection. Made by :meth:`HttpConnection.getresponse` (``response_class``)."""

    def __init__(self, sock: socket.socket, *args: Any, timeout: Optional[Timeout] = None, **kwargs: Any) -> None:
        self._head: Optional[_PacedHead] = None
        self._pace_timeout = timeout
        if timeout is not None and timeout.speed_limit > 0:
            shim = _Socket(sock, timeout)
            super().__init__(shim, *args, **kwargs)  # type: ignore[arg-type]  # it reads shim.makefile()
            self._head = shim.head
        else:
            super().__init__(sock, *args, **kwargs)
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
        if self._head is not None:
            self._head.head_done()

    def _read_next_chunk_size(self) -> int:
        """The next chunk's size: hex digits only, then optional blanks and extensions
        (RFC 9112); a ValueError (``IncompleteRead`` to the caller) for anything else."""
        line = self._framing_line("chunk size")
        size = line.split(b";", 1)[0].strip(b" \t\r\n")
        if not _CHUNK_SIZE.fullmatch(size):
            raise ValueError(f"invalid chunk size line {line[:40]!r}")
        return int(size, 16)

    def _read_and_discard_trailer(self) -> None:
        """The trailer lines after the last chunk, up to the blank line (or the end)."""
        for _ in range(_MAX_TRAILERS + 1):
            line = self._framing_line("trailer")
            if line in (b"\r\n", b"\n", b""):
                return
        raise http.client.HTTPException(f"more than {_MAX_TRAILERS} trailer lines after the last chunk")

    def _framing_line(self, what: str) -> bytes:
        """One line of chunk framing (with its end of line; b"" at the end of the body), at
        most ``_MAX_LINE`` bytes, held to the speed limit from its first byte: each wait is
        for one read of the socket, never for a whole line a server drips."""
        fp = self.fp
        line = b""
        pace: Optional[Pace] = None
        while True:
            ahead = fp.peek(1)  # what is buffered, else what one read of the socket brings
            if not ahead:
                return line
            end = ahead.find(b"\n")
            piece = fp.read(end + 1 if end >= 0 else len(ahead))
            line += piece
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong(what)
            if end >= 0:
                return line
            timeout = self._pace_timeout
            if timeout is not None and timeout.speed_limit > 0:
                now = time.monotonic()
                if pace is None:
                    pace = Pace(timeout, now)
                elif pace.slow(len(piece), now):
                    raise ConnectionError(f"a {what} line came too slowly: {pace.describe()}")


__all__ = ["FinalResponse"]
