"""Variant switching of an HlsReader: ABR at segment boundaries, ``select``, and the restart
points an fMP4 switch or an ``#EXT-X-DISCONTINUITY`` (MPEG-TS) creates.

A mixin of :class:`~.reader.HlsReader` (same lock rules: every ``_locked`` method runs with
``self._cond`` held; events go to ``self._pending`` and are published once it is released).

fMP4: a switch puts the new variant's init segment (``EXT-X-MAP``) before its first segment.
One mp4 demuxer cannot be relied on to take a second init segment mid-stream (FFmpeg skips a
duplicate ``moov`` and decodes the new fragments with the first variant's codec parameters:
right only when both share codec configuration, track ID and timescale). So ``auto`` switches
fMP4 only for a reader that said it re-opens its demuxer at every init segment
(``enable_restarts``; the Player's PyAV decoder does). For such a reader a read never crosses
a restart offset: it stops before it (a short read), and the next read starts with the init
segment. A restart offset is reported once its boundary is fixed: the init part is fetched or
being fetched, so ABR no longer re-plans it.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Tuple

from ...events import Discontinuity, VariantSwitched
from . import abr
from .plan import is_init
from .playlist import Variant
from .state import ReaderState

log = logging.getLogger(__name__)


class SwitchingMixin(ReaderState):
    """ABR, ``select``, restart offsets and the rest of the variant API of the HlsReader
    (see the module doc)."""

    @property
    def variants(self) -> Tuple[Variant, ...]:
        return self._variants

    @property
    def variant(self) -> int:
        with self._cond:
            return self._plan.parts[min(self._cursor_part, len(self._plan.parts) - 1)][0] if self._plan.parts else 0

    def segments(self) -> List[Tuple[int, float, Optional[int], int, bool]]:
        """``(sequence, duration, byte offset or None, variant, discontinuity)`` of the planned media segments."""
        with self._cond:
            return self._plan.media_segments()

    def offset_of(self, seconds: float) -> int:
        """Byte offset of the segment holding ``seconds`` (waits for the sizes before it);
        live: see :mod:`.window`."""
        if not self._kind.seekable:
            return self.live_offset_of(seconds)
        with self._cond:
            target = self._plan.index_at(seconds)
            if target is None:
                return 0
            self._size_waiters += 1
            try:
                offset = self._plan.layout.offset(target)
                while offset is None:
                    self._check_usable_locked()
                    self._schedule_locked()
                    self._cond.wait()
                    offset = self._plan.layout.offset(target)
                return offset
            finally:
                self._size_waiters -= 1

    def select(self, index: int) -> None:
        """Pin variant ``index`` from the next segment boundary on (adaptive switching ends)."""
        if not 0 <= index < len(self._variants):
            raise ValueError(f"variant {index} out of range: the playlist has {len(self._variants)} variant(s)")
        if index not in self._plan.media:
            self.add_media(index, self._load_media(index))
        with self._cond:
            self._auto = False
            self._switch_locked(self._cursor_part + 1, index, "selected")
            self._schedule_locked()
            self._cond.notify_all()
        self._flush_events()

    def enable_restarts(self) -> None:
        """The reader re-opens its demuxer at every offset in ``restarts()``: fMP4 variants
        may then switch under ``auto``, and reads stop at each restart offset."""
        with self._cond:
            self._restartable = True

    def restarts(self) -> List[int]:
        """Byte offsets after the start where an init segment or a discontinuity begins (a
        fresh demuxer must be opened there), for the boundaries fixed so far, in order."""
        with self._cond:
            return [
                offset
                for index in range(1, len(self._plan.parts))
                if self._fixed_restart_locked(index) and (offset := self._plan.layout.offset(index)) is not None
            ]

    def discontinuities(self) -> List[Tuple[Optional[int], float]]:
        """``(byte offset or None, seconds)`` of each ``#EXT-X-DISCONTINUITY`` planned."""
        with self._cond:
            return self._plan.discontinuities()

    def _fixed_restart_locked(self, index: int) -> bool:
        key = self._plan.parts[index]
        return self._plan.restarts_at(index) and (key in self._data or any(j.key == key for j in self._active()))

    def _announce_discontinuities_locked(self, start: int, end: int) -> None:
        """A read returned ``[start, end)``: publish each discontinuity it reached first."""
        for offset, seconds in self._plan.discontinuities():
            if offset is not None and start <= offset < end and offset not in self._announced:
                self._announced.add(offset)
                self._pending.append(Discontinuity(offset, seconds))

    def _stops_before_locked(self, pos: int) -> bool:
        """Must a read that has copied bytes stop at ``pos`` (a fixed restart offset)?"""
        if not self._restartable:
            return False
        found = self._plan.layout.locate(pos)
        return found is not None and found[0] > 0 and found[1] == 0 and self._fixed_restart_locked(found[0])

    def _switch_locked(self, start: int, target: int, reason: str) -> None:
        """Re-plan from part ``start`` on, and announce it (VOD playlists only)."""
        if not self._kind.switchable:
            return
        previous = self._plan.switch(start, target)
        if previous is None:
            if start < len(self._plan.parts) and self._plan.parts[start][0] != target:
                log.warning("%s: variant %d does not list the same segments: not switching", self.url, target)
            return
        self._pending.append(VariantSwitched(previous, target, reason))
        log.info("%s: variant %d -> %d (%s)", self.url, previous, target, reason)

    def _adapt_locked(self, index: int, deferrable: bool = False) -> bool:
        """ABR at the boundary before part ``index``, if nothing of it is fetched yet. False
        (only when ``deferrable``, for read-ahead): not decided, because no throughput sample
        exists yet but a download that will give one is running; read-ahead then waits at
        the boundary (an fMP4 stream's first part, its init segment, is too small to be one)."""
        key = self._plan.parts[index]
        if key in self._data or any(j.key == key for j in self._active()):
            return True
        if index > 0 and is_init(self._plan.parts[index - 1]):
            return True  # decided at the init segment before (a switch there would orphan it)
        if is_init(self._plan.parts[0]) and not self._restartable:
            return True  # fMP4 for a reader that cannot re-open its demuxer (module doc)
        estimate = self._estimator.estimate
        if estimate is None and deferrable and any(j.kind == "data" for j in self._active()):
            return False
        bandwidths = [v.bandwidth for v in self._variants]
        target = abr.choose_variant(bandwidths, estimate, key[0])
        if target != key[0] and target in self._plan.media:
            self._switch_locked(index, target, "throughput")
        return True
