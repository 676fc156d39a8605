"""RestartWindow: what one demuxer reads of a stream that has restart offsets.

An fMP4 HLS stream that switched variants carries the new variant's init segment at each
switch (``stream.hls.restarts``); a fresh demuxer must be opened there. A window is the
stream from one restart offset (or the start) up to the next one, which reads as its end:
the demuxer of the window before never sees the next init segment. The next restart offset is
found as the reads reach it (the HLS stream stops a read short before a restart offset, and
lists the offset once the boundary is fixed), so a window's end is known only then.
"""

from __future__ import annotations

import io
from typing import Any, Callable, List, Optional


class RestartWindow(io.RawIOBase):
    """Positions ``0..`` of this file are ``start..`` of ``reader``, up to the first restart
    offset after ``start`` (``end``, None while not reached)."""

    def __init__(self, reader: Any, start: int, restarts: Callable[[], List[int]]) -> None:
        super().__init__()
        self._reader = reader
        self.start = start
        self._restarts = restarts
        self._pos = 0
        self.end: Optional[int] = None  # stream offset where the next window begins

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._reader.seekable())

    def _find_end(self) -> Optional[int]:
        if self.end is None:
            later = [r for r in self._restarts() if r > self.start]
            if later:
                self.end = min(later)
        return self.end

    def readinto(self, buffer: Any) -> int:
        here = self.start + self._pos
        end = self._find_end()
        with memoryview(buffer) as view, view.cast("B") as out:
            if end is not None:
                if here >= end:
                    return 0
                out = out[: end - here]
            self._reader.seek(here)
            n = self._reader.readinto(out) or 0
        end = self._find_end()  # this read may have fixed the next restart offset
        if end is not None:
            n = max(0, min(n, end - here))  # bytes from the init segment on: the next window's
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            end = self._find_end()
            if end is None:  # not reached: the stream's end bounds it
                here = self._reader.tell()
                end = self._reader.seek(0, io.SEEK_END)
                self._reader.seek(here)
            pos = end - self.start + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        self._pos = max(0, pos)
        return self._pos

    def tell(self) -> int:
        return self._pos
