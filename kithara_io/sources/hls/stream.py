"""HlsStream: the Stream of an HLS presentation (``stream.hls``; live playlists like a pipe)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Optional

from ...stream import Stream
from .info import HlsInfo

if TYPE_CHECKING:
    from .reader import HlsReader


class HlsStream(Stream):
    """A :class:`~kithara_io.stream.Stream` over an :class:`~.reader.HlsReader`.

    ``hls`` tells the variants and segments. A VOD playlist is an ordinary seekable file
    (``size`` blocks until every segment size is known). A live playlist is like a pipe for
    its whole life: ``size`` is None and ``seekable()`` is False; it ends once
    ``#EXT-X-ENDLIST`` appears. Still, ``seek`` moves within what its window lists
    (``hls.offset_of(seconds)``) and raises ``LiveWindowError`` (an
    ``io.UnsupportedOperation``) for a place that left it (see :mod:`.window`). An EVENT
    playlist is seekable within what it lists (a read past it waits for a reload); ``size``
    is None until ``#EXT-X-ENDLIST`` appears, so a seek from the end raises
    ``io.UnsupportedOperation`` until then.
    """

    _reader: HlsReader
    _info: Optional[HlsInfo] = None

    @property
    def hls(self) -> HlsInfo:
        # Kept here, not in the reader: the reader then holds nothing that holds it, so a
        # closed stream is freed at once rather than by the garbage collector.
        info = self._info
        if info is None:
            info = self._info = self._reader.hls
        return info

    def seekable(self) -> bool:
        self._check_closed()
        return self._reader.seekable

    @property
    def size(self) -> Optional[int]:
        """Total length once every segment size is known; None for a live playlist, and for
        an EVENT playlist until it ends."""
        self._check_closed()
        return self._reader.size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_closed()
        if not self._reader.seekable:
            here = self.tell()
            if whence == io.SEEK_END:
                raise io.UnsupportedOperation("seek from the end: a live HLS stream has no end")
            target = offset if whence == io.SEEK_SET else here + offset if whence == io.SEEK_CUR else None
            if target is None:
                raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
            if target != here and target >= 0:  # (a negative one: EINVAL, below)
                self._reader.check_window(target)  # within the live window, or LiveWindowError
            return super().seek(target) if target != here else here
        if whence == io.SEEK_END and self._reader.size is None:
            raise io.UnsupportedOperation("seek from the end: the HLS EVENT playlist has not ended yet")
        return super().seek(offset, whence)
