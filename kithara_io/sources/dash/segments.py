"""The media segments of one Representation in one Period: the SegmentTemplate (with
``$Number$`` or a SegmentTimeline), SegmentList or SegmentBase (its ``sidx``) expanded into
URLs, byte ranges and durations, the form the HLS engine reads (:mod:`..hls.playlist`).

Pure but for ``read``: a SegmentBase's index is fetched through the callable handed in.
A live (dynamic) MPD's ``$Number$`` template lists the segments complete at ``now`` within
the time-shift buffer (ISO/IEC 23009-1 5.3.9.5.3: segment ``k`` is available from
``availabilityStartTime + Period@start + (k + 1) * duration - availabilityTimeOffset``).
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from ...errors import InvalidResponseError
from ..hls.playlist import Resource
from .mpd import Addressing, ByteRange, Mpd, Representation
from .sidx import parse_sidx
from .template import fill

#: Most segments one Representation may list (a hostile ``r="1000000000"`` stops here).
MAX_SEGMENTS = 1_000_000
_EPSILON = 1e-6  # of a segment: what rounding in a duration may leave over

ReadRange = Callable[[str, ByteRange], bytes]  # (url, (offset, length)) -> those bytes


@dataclass(frozen=True)
class Media:
    """One media segment: its number (``$Number$``: stable across reloads of a live MPD),
    its start in seconds from the period's start, its duration and where its bytes are."""

    number: int
    start: float
    duration: float
    resource: Resource


def expand(
    mpd: Mpd, period: int, rep: Representation, now: float, read: ReadRange
) -> Tuple[Optional[Resource], List[Media]]:
    """``(init segment or None, media segments)`` of ``rep`` in period ``period`` (``now``:
    seconds since the epoch, for a live MPD)."""
    return _Expansion(mpd, period, rep, now).run(read)


class _Expansion:
    def __init__(self, mpd: Mpd, period: int, rep: Representation, now: float) -> None:
        self.mpd, self.rep, self.url = mpd, rep, mpd.url
        self.start = mpd.periods[period].start
        end = mpd.period_end(period)
        self.length = None if end is None else max(0.0, end - self.start)  # of the period
        self.live_edge: Optional[float] = None  # seconds into the period that are out (live)
        if mpd.dynamic and mpd.availability_start is not None:
            self.live_edge = now - mpd.availability_start - self.start

    def run(self, read: ReadRange) -> Tuple[Optional[Resource], List[Media]]:
        a = self.rep.addressing
        if a is None:  # a BaseURL alone: the whole file is the one segment
            return None, [Media(1, 0.0, self.length or 0.0, Resource(self.rep.base_url))]
        if a.kind == "SegmentTemplate":
            return self._template(a), self._window(self._template_media(a))
        if a.kind == "SegmentList":
            return self._list_init(a), self._window(self._list_media(a))
        return self._base(a, read)

    # -- SegmentTemplate ---------------------------------------------------------------------
    def _template(self, a: Addressing) -> Optional[Resource]:
        if not a.initialization:
            return None
        return Resource(self._join(fill(a.initialization, self._values(), self.url)))

    def _values(self, **more) -> dict:
        return {"RepresentationID": self.rep.id, "Bandwidth": self.rep.bandwidth, **more}

    def _template_media(self, a: Addressing) -> List[Media]:
        if not a.media:
            raise InvalidResponseError(
                f"DASH SegmentTemplate of representation {self.rep.id!r} has no media attribute", url=self.url
            )
        out = []
        for number, time, duration in self._times(a):
            uri = self._join(fill(a.media, self._values(Number=number, Time=time), self.url))
            out.append(
                Media(number, (time - a.presentation_time_offset) / a.timescale, duration / a.timescale, Resource(uri))
            )
        return out

    def _times(self, a: Addressing) -> List[Tuple[int, int, int]]:
        """``(number, time, duration)`` of each segment, in timescale units."""
        if a.timeline:
            return self._timeline(a)
        if not a.duration:
            raise InvalidResponseError(
                f"DASH representation {self.rep.id!r} has neither a segment duration nor a SegmentTimeline",
                url=self.url,
            )
        seconds = a.duration / a.timescale
        first, count = 0, None
        if self.length is not None:
            count = max(1, math.ceil(self.length / seconds - _EPSILON))
        if self.live_edge is not None:  # live: the complete segments, within the time-shift buffer
            out_now = max(0, math.floor((self.live_edge + a.availability_time_offset) / seconds + _EPSILON))
            count = out_now if count is None else min(count, out_now)
            depth = self.mpd.time_shift_buffer_depth
            if depth is not None:
                first = max(0, math.floor((self.live_edge - depth) / seconds))
        if count is None:
            raise InvalidResponseError(f"DASH period of representation {self.rep.id!r} has no known end", url=self.url)
        self._check_count(count - first)
        base = a.presentation_time_offset
        return [
            (a.start_number + k, base + k * a.duration, self._clip(k * a.duration, a.duration, a))
            for k in range(first, count)
        ]

    def _clip(self, at: int, duration: int, a: Addressing) -> int:
        """The last segment ends with the period (its nominal duration may overrun it)."""
        if self.length is None:
            return duration
        return max(0, min(duration, round(self.length * a.timescale) - at))

    def _timeline(self, a: Addressing) -> List[Tuple[int, int, int]]:
        out: List[Tuple[int, int, int]] = []
        time, number = a.presentation_time_offset, a.start_number
        entries = a.timeline
        for index, entry in enumerate(entries):
            if entry.t is not None:
                time = entry.t
            repeat = entry.r
            if repeat < 0:
                following = entries[index + 1].t if index + 1 < len(entries) else None
                repeat = self._open_repeat(a, time, entry.d, following)
            self._check_count(len(out) + repeat + 1)
            for _ in range(repeat + 1):
                out.append((number, time, entry.d))
                time += entry.d
                number += 1
        return out

    def _open_repeat(self, a: Addressing, time: int, d: int, following: Optional[int]) -> int:
        """The repeats of an ``r="-1"`` entry at ``time``: up to the next entry's time, else
        to the period's end (the last segment may end with it) and, live, only the segments
        complete at the live edge."""
        if following is not None:
            return max(0, math.ceil((following - time) / d - _EPSILON) - 1)
        counts = []
        if self.length is not None:
            end = a.presentation_time_offset + self.length * a.timescale
            counts.append(math.ceil((end - time) / d - _EPSILON))
        if self.live_edge is not None:
            edge = a.presentation_time_offset + self.live_edge * a.timescale
            counts.append(math.floor((edge - time) / d + _EPSILON))
        if not counts:
            raise InvalidResponseError("DASH SegmentTimeline repeats to a period end that is not known", url=self.url)
        return max(0, min(counts) - 1)

    # -- SegmentList -------------------------------------------------------------------------
    def _list_init(self, a: Addressing) -> Optional[Resource]:
        if a.initialization is None and a.init_range is None:
            return None
        uri = self._join(a.initialization) if a.initialization else self.rep.base_url
        return Resource(uri, a.init_range)

    def _list_media(self, a: Addressing) -> List[Media]:
        times = self._timeline(a) if a.timeline else None
        out, start = [], 0.0
        for index, (media, span) in enumerate(a.urls):
            if times is not None and index < len(times):
                duration = times[index][2] / a.timescale
                start = (times[index][1] - a.presentation_time_offset) / a.timescale
            elif a.duration:
                duration = a.duration / a.timescale
                if self.length is not None:
                    duration = max(0.0, min(duration, self.length - start))
            else:
                duration = (self.length or 0.0) if len(a.urls) == 1 else 0.0
            uri = self._join(media) if media else self.rep.base_url
            out.append(Media(a.start_number + index, start, duration, Resource(uri, span)))
            start += duration
        return out

    # -- SegmentBase ---------------------------------------------------------------------------
    def _base(self, a: Addressing, read: ReadRange) -> Tuple[Optional[Resource], List[Media]]:
        uri = self.rep.base_url
        if a.index_range is None:  # no index: the file is one segment
            init = Resource(uri, a.init_range) if a.init_range else None
            return init, [Media(1, 0.0, self.length or 0.0, Resource(uri))]
        init_span = a.init_range or ((0, a.index_range[0]) if a.index_range[0] > 0 else None)
        init = Resource(self._join(a.initialization) if a.initialization else uri, init_span) if init_span else None
        subsegments = parse_sidx(read(uri, a.index_range), a.index_range[0], uri)
        self._check_count(len(subsegments))
        out, start = [], 0.0
        for index, sub in enumerate(subsegments):
            out.append(Media(a.start_number + index, start, sub.duration, Resource(uri, (sub.offset, sub.size))))
            start += sub.duration
        return init, out

    # -- shared -----------------------------------------------------------------------------
    def _window(self, media: List[Media]) -> List[Media]:
        """A live MPD's segments still in the time-shift buffer, and out by now."""
        if self.live_edge is None:
            return media
        depth = self.mpd.time_shift_buffer_depth
        low = None if depth is None else self.live_edge - depth
        return [m for m in media if (low is None or m.start + m.duration > low)]

    def _check_count(self, count: int) -> None:
        if count > MAX_SEGMENTS:
            raise InvalidResponseError(
                f"DASH representation {self.rep.id!r} lists more than {MAX_SEGMENTS} segments", url=self.url
            )

    def _join(self, ref: str) -> str:
        try:
            return urllib.parse.urljoin(self.rep.base_url, ref.strip())
        except ValueError as exc:
            raise InvalidResponseError(
                f"DASH MPD names a malformed URL {ref[:100]!r}", url=self.url, cause=exc
            ) from None
