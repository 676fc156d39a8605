"""Seeking within a live window: the HlsReader's side (:class:`WindowMixin`).

A live stream (a sliding window, no ``#EXT-X-PLAYLIST-TYPE:EVENT``) is not seekable for its
whole life (``seekable()`` False, ``size`` None): a decoder reads it as a pipe, as it would a
radio station. Its byte offsets still grow from its first planned segment (``live_start``),
and a caller may move within what the window still lists: ``stream.seek(pos)`` to any
position in a planned segment that the last playlist loaded still lists (an fMP4 init segment
always), or to the end of the planned segments; ``stream.hls.offset_of(seconds)`` gives the
offset of the segment holding ``seconds`` (seconds from the stream's start). A position in a
segment that left the window raises :class:`~kithara_io.errors.LiveWindowError` (also an
``io.UnsupportedOperation``); so does one past the segments planned so far.

A mixin of :class:`~.reader.HlsReader`: it uses the reader's state under its condition
(``self._cond``). Sizes a seek needs are learned here (HEAD requests at High priority, or the
whole part when encrypted), only for segments still listed: the reader's background size
learning is for seekable kinds only.
"""

from __future__ import annotations

from typing import Optional, Tuple

from ...errors import LiveWindowError
from ...reading.planning import Priority
from .plan import INIT
from .state import ReaderState

_SIZE_JOBS = 8  # size requests in flight at once for one seek


class WindowMixin(ReaderState):
    """The live-window checks of the HlsReader (see the module doc)."""

    def check_window(self, pos: int) -> None:
        """Return once ``pos`` is a place a live stream may seek to (waits for the sizes
        that place it); raise LiveWindowError if it is not."""
        with self._cond:
            self._size_waiters += 1
            try:
                while True:
                    self._check_usable_locked()
                    found = self._plan.layout.locate(pos)
                    if found is None:
                        if self._plan.layout.total() == pos:
                            return  # the end of the planned segments: the next one comes there
                        raise LiveWindowError(
                            f"position {pos} is past the segments of the live window listed so far", url=self.url
                        )
                    index, offset = found
                    self._check_listed_locked(index, f"position {pos}")
                    if offset == 0 or self._plan.layout.size(index) is not None:
                        return
                    self._await_sizes_locked(index + 1)
            finally:
                self._size_waiters -= 1

    def live_offset_of(self, seconds: float) -> int:
        """``offset_of`` for a live stream: the segment must still be listed."""
        with self._cond:
            target = self._plan.index_at(seconds)
            if target is None:
                return 0
            self._size_waiters += 1
            try:
                while True:
                    self._check_usable_locked()
                    self._check_listed_locked(target, f"{seconds:g} s")
                    offset = self._plan.layout.offset(target)
                    if offset is not None:
                        return offset
                    self._await_sizes_locked(target)
            finally:
                self._size_waiters -= 1

    def window_seconds(self) -> Tuple[float, float]:
        """``(from, to)`` in seconds from the stream's start: the planned segments the last
        playlist loaded still lists (all of them for VOD and EVENT playlists)."""
        with self._cond:
            elapsed, first = 0.0, None
            for variant, seq in self._plan.parts:
                if seq == INIT:
                    continue
                listed = self._window_first_locked(variant)
                if first is None and (self._kind.seekable or listed is None or seq >= listed):
                    first = elapsed
                elapsed += self._plan.segments[variant][seq].duration
            return (elapsed if first is None else first, elapsed)

    # -- self._cond held -------------------------------------------------------------------
    def _window_first_locked(self, variant: int) -> Optional[int]:
        playlist = self._plan.media[variant]
        return playlist.segments[0].sequence if playlist.segments else None

    def _check_listed_locked(self, index: int, where: str) -> None:
        """Raise unless part ``index`` is an init segment or still listed (``where``: what
        the caller asked, for the message)."""
        variant, seq = self._plan.parts[index]
        first = self._window_first_locked(variant)
        if seq == INIT or (first is not None and seq >= first):
            return
        raise LiveWindowError(
            f"{where} is in segment {seq}, which has left the live window (it now starts at segment {first})",
            url=self.url,
        )

    def _await_sizes_locked(self, end: int) -> None:
        """Ask the sizes of the parts before ``end`` not known yet, then wait once."""
        running = sum(1 for j in self._active() if j.kind == "size" or j.end is None)
        for index in range(end):
            key = self._plan.parts[index]
            if key in self._plan.sizes or any(j.key == key for j in self._active()):
                continue
            self._check_listed_locked(
                index, f"the place of segment {self._plan.parts[end - 1][1]}"
            )  # gone: no size to learn
            if running >= _SIZE_JOBS:
                break
            kind = "data" if self._plan.encrypted(key) else "size"
            self._submit_locked(key, 0, None, kind, Priority.HIGH)
            running += 1
        self._cond.wait()
