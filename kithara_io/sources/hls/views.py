"""PipeView: an HLS stream read as a file that never seeks (``stream.hls.pipe()``).

Why: PyAV (FFmpeg's avio) asks a seekable file for its size at open. An EVENT playlist that
has not ended is seekable but has no size yet (``seek(0, SEEK_END)`` raises), so
``av.open(stream)`` fails while it grows; over a view that says it does not seek, FFmpeg
reads it as a pipe, as it reads a live stream. ``seekable()`` of the view is False for its
whole life, whether or not the playlist ends meanwhile.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .reader import HlsReader


class PipeView(io.RawIOBase):
    """Positional reads of ``reader`` from ``position`` on, with a cursor of its own."""

    def __init__(self, reader: "HlsReader", position: int = 0) -> None:
        super().__init__()
        if position < 0:
            raise ValueError(f"position must be >= 0, not {position}")
        self._reader = reader
        self._pos = position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        with memoryview(buffer) as view, view.cast("B") as out:
            n = self._reader.read_at(self._pos, out)
        self._pos += n
        return n

    def tell(self) -> int:
        """Position in the stream (the view's own cursor)."""
        return self._pos
