"""Chunked framing, checked on the raw bytes of a body before ``http.client`` decodes them.

``http.client`` reads a chunk size with ``int(line, 16)``, which takes ``-2`` (it then
hands every byte after it over as body, the framing included), ``+a``, ``0x1f`` or ``1_0``,
and reads a framing line (a size, a trailer) whole, each socket read bounded by the read
timeout alone: a size line dripped a byte a second (up to 64 KiB: hours) or trailer lines
that never end held one read of the body for as long as they came. :class:`ChunkFraming`
follows the same bytes, as ``http.client`` does (a size line, its data, the two bytes after
it, ..., a last chunk, trailer lines up to a blank one), and refuses what it should not
take: a size that is not hex digits (RFC 9112: ``1*HEXDIG``, then extensions), anything
but CRLF after a chunk's data, a line over 64 KiB, more than 100 trailer lines, and a
framing line slower than the speed limit. It only refuses (``ConnectionError``: the
connection is broken, as any cut), after the sound bytes before what it refuses;
``http.client`` still decodes.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..retry import FirstBytePace, Timeout

MAX_LINE = 65536  # a size or trailer line (http.client's _MAXLINE)
MAX_TRAILERS = 100  # trailer lines after the last chunk (as http.client's header limit)
_WINDOW = 256  # bytes looked at for a line's end at a time (framing lines are short)
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_SIZE, _DATA, _CRLF, _TRAILER = range(4)


class FramingError(ConnectionError):
    """Framing refused; ``good``: how many of the bytes just fed came before the framing
    it is in (the body up to there is sound)."""

    def __init__(self, message: str, good: int) -> None:
        super().__init__(message)
        self.good = good


class ChunkFraming:
    """The framing of one chunked body, fed its raw bytes in order (:meth:`feed`); ``done``
    once the blank line after the trailers has come (what follows is not this body's)."""

    def __init__(self, pace: Optional[Timeout]) -> None:
        self.done = False
        self._state = _SIZE
        self._line = bytearray()  # the framing line (or the two bytes after a chunk) so far
        self._left = 0  # of the current chunk's data
        self._trailers = 0
        self._pace = FirstBytePace(pace)  # the current line's

    def feed(self, data: Any) -> None:
        """The body's next raw bytes (a bytes-like object). Raises FramingError for the
        first framing it refuses, saying where that framing began in ``data``."""
        view = memoryview(data).cast("B")
        i, n = 0, len(view)
        mark = 0  # where the framing being read began in ``data`` (0: before it)
        try:
            while i < n and not self.done:
                state = self._state
                if state == _DATA:
                    k = min(self._left, n - i)
                    self._left -= k
                    i += k
                    if not self._left:
                        self._state, mark = _CRLF, i
                elif state == _CRLF:
                    k = min(2 - len(self._line), n - i)
                    self._line += view[i : i + k]
                    i += k
                    if len(self._line) == 2:
                        if self._line != b"\r\n":
                            raise ConnectionError(f"chunk data followed by {bytes(self._line)!r}, not CRLF")
                        self._line.clear()
                        self._state, mark = _SIZE, i
                else:
                    i = self._line_piece(view, i, n)
                    if not self._line:  # a line ended: the next framing begins here
                        mark = i
        except ConnectionError as exc:
            raise FramingError(str(exc), mark) from None

    def _line_piece(self, view: memoryview, i: int, n: int) -> int:
        """Take the next piece of a size or trailer line from ``view[i:n]``; returns where
        the piece ended. A whole line is judged; a line in pieces is held to the pace."""
        window = bytes(view[i : min(n, i + _WINDOW)])
        end = window.find(b"\n")
        piece = window if end < 0 else window[: end + 1]
        self._line += piece
        what = "chunk size" if self._state == _SIZE else "trailer"
        if len(self._line) > MAX_LINE:
            raise ConnectionError(f"a {what} line longer than {MAX_LINE} bytes")
        if end < 0:
            if self._pace.slow(len(piece)):
                raise ConnectionError(f"a {what} line came too slowly: {self._pace.describe()}")
            return i + len(piece)
        line = bytes(self._line)
        self._line.clear()
        self._pace.reset()
        if self._state == _SIZE:
            self._size(line)
        elif line in (b"\r\n", b"\n"):
            self.done = True
        else:
            self._trailers += 1
            if self._trailers > MAX_TRAILERS:
                raise ConnectionError(f"more than {MAX_TRAILERS} trailer lines after the last chunk")
        return i + len(piece)

    def _size(self, line: bytes) -> None:
        size = line.split(b";", 1)[0].strip(b" \t\r\n")
        if not _HEX.fullmatch(size):
            raise ConnectionError(f"invalid chunk size line {line[:40]!r}")
        self._left = int(size, 16)
        self._state = _DATA if self._left else _TRAILER


def final_head_end(data: bytes) -> Optional[int]:
    """Where the body starts in ``data``, the raw bytes an answer began with: after the
    blank line of its first head that is not an interim one (``1xx`` but ``101``), as
    ``http.client`` (and ``answer_heads.FinalResponse``) read heads. None if it is not in
    ``data``."""
    pos = 0
    while True:
        first = data.find(b"\n", pos)
        if first < 0:
            return None
        fields = data[pos:first].split()
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        line = first + 1
        while True:
            end = data.find(b"\n", line)
            if end < 0:
                return None
            if data[line : end + 1] in (b"\r\n", b"\n"):
                break
            line = end + 1
        pos = end + 1
        if not (100 <= status < 200 and status != 101):
            return pos


__all__ = ["ChunkFraming", "FramingError", "MAX_LINE", "MAX_TRAILERS", "final_head_end"]
