"""``stream.hls``: the variants, the segments and their offsets, and the variant controls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

from .playlist import Rendition, Variant
from .views import PipeView

if TYPE_CHECKING:
    from .reader import HlsReader


@dataclass(frozen=True)
class SegmentInfo:
    """A planned media segment: ``offset`` is its byte offset in the stream (None while a
    size before it is unknown); ``variant`` the variant it is read from."""

    sequence: int
    duration: float
    offset: Optional[int]
    variant: int
    start: float  # seconds from the start of the stream
    discontinuity: bool = False  # a fresh demuxer starts here (#EXT-X-DISCONTINUITY, MPEG-TS)


class HlsInfo:
    """What ``stream.hls`` tells about an HLS stream, and the variant controls."""

    def __init__(self, reader: "HlsReader") -> None:
        self._reader = reader

    @property
    def variants(self) -> Tuple[Variant, ...]:
        """The master playlist's variants in its order (one entry for a media playlist)."""
        return self._reader.variants

    @property
    def variant(self) -> int:
        """Index of the variant being read now."""
        return self._reader.variant

    @property
    def renditions(self) -> Tuple[Rendition, ...]:
        """The master playlist's audio renditions (``#EXT-X-MEDIA:TYPE=AUDIO``): group,
        name, language, default, autoselect, channels, uri. Empty when it has none."""
        return self._reader.renditions

    @property
    def audio(self) -> Optional[Rendition]:
        """The audio rendition being read now; None when the variant's own stream is read."""
        reading = self._reader.reading
        index = self._reader.variant
        return reading[index] if index < len(reading) else None

    @property
    def segments(self) -> List[SegmentInfo]:
        out, start = [], 0.0
        for sequence, duration, offset, variant, discontinuity in self._reader.segments():
            out.append(SegmentInfo(sequence, duration, offset, variant, start, discontinuity))
            start += duration
        return out

    def offset_of(self, seconds: float) -> int:
        """Byte offset of the segment holding ``seconds`` from the stream's start (waits
        until it is known). Live: the segment must still be listed, else ``LiveWindowError``."""
        return self._reader.offset_of(seconds)

    @property
    def window(self) -> Tuple[float, float]:
        """``(from, to)`` seconds from the stream's start where ``offset_of`` and ``seek``
        may go: for a live stream, its planned segments still listed (the window moves);
        for VOD and EVENT playlists, all of them so far."""
        return self._reader.window_seconds()

    @property
    def start_offset(self) -> Optional[float]:
        """The media playlist's ``#EXT-X-START`` TIME-OFFSET in seconds (negative: from its
        end), or None without one. Where the stream starts: ``open(url, live_start=...)``."""
        declared = self._reader.start.declared
        return declared[0] if declared is not None else None

    @property
    def start_precise(self) -> bool:
        """``#EXT-X-START``'s PRECISE=YES: presentation should begin at the offset itself,
        not at the start of the segment holding it (see ``start_skip``)."""
        declared = self._reader.start.declared
        return declared is not None and declared[1]

    @property
    def start_skip(self) -> float:
        """Seconds from the start of the stream (its first segment) to the point it was
        asked to start at: a player that starts exactly there drops that much. 0 unless
        seconds were asked, or ``#EXT-X-START`` with PRECISE=YES was honoured."""
        return self._reader.start.skip

    def pipe(self, position: int = 0) -> "PipeView":
        """This stream from ``position`` on as a file that never seeks: what a decoder that
        asks a seekable file for its end (PyAV) reads of an EVENT playlist that has not
        ended. It reads through this stream's reader (same fetches and cache) with a cursor
        of its own; closing it leaves the stream open."""
        return PipeView(self._reader, position)

    @property
    def discontinuities(self) -> List[Tuple[Optional[int], float]]:
        """``(byte offset, seconds)`` of each ``#EXT-X-DISCONTINUITY`` of an MPEG-TS stream,
        and of an fMP4 one whose ``#EXT-X-MAP`` changes there (the offset is then that of the
        new init segment; None while a size before it is unknown). Timestamps restart there and
        the codec or rate may change: each offset is also in ``restarts`` once fixed, and
        an ``events.Discontinuity`` is published when a read reaches it."""
        return self._reader.discontinuities()

    @property
    def restarts(self) -> List[int]:
        """Byte offsets after the start where an init segment begins (an fMP4 variant
        switch, an ``#EXT-X-MAP`` that changes) or an MPEG-TS discontinuity: a fresh demuxer
        must be opened at each. Only
        boundaries already fixed are listed (the stream has read or is fetching that part)."""
        return self._reader.restarts()

    def enable_restarts(self) -> None:
        """Say that the reader re-opens its demuxer at every offset in ``restarts``: with
        ``variant="auto"`` fMP4 variants then switch too, and a read stops short before a
        restart offset (the next read starts with the init segment)."""
        self._reader.enable_restarts()

    def select(self, index: int) -> None:
        """Read variant ``index`` from the next segment on; adaptive switching stops."""
        self._reader.select(index)

    def __repr__(self) -> str:
        return f"<HlsInfo variant={self.variant} of {len(self.variants)}>"
