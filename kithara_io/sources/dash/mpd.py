"""MPEG-DASH MPDs (ISO/IEC 23009-1) read into plain, immutable data.

Pure: text in, dataclasses out. Why the standard library's ElementTree (through
``defusedxml``) and ``isodate`` rather than the ``mpegdash`` package: ``mpegdash`` maps the
XML onto objects one to one but resolves nothing (no BaseURL chain, no inheritance of
``SegmentTemplate``/``SegmentList``/``SegmentBase`` attributes from Period to AdaptationSet
to Representation, no durations as numbers) and parses with ``xml.dom.minidom``, which
expands entities: the MPD comes from a server. What this module adds is that resolution,
which is the part a player needs; ``defusedxml`` refuses entity tricks (a billion laughs)
and ``isodate`` reads the ISO 8601 durations and dates.

URLs come out absolute: each ``BaseURL`` (the first of a level) is resolved against the one
above it, the MPD's own against the URL that answered it (after redirects).
"""

from __future__ import annotations

import calendar
import re
import urllib.parse
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import isodate
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ...errors import InvalidResponseError
from ...headers import decimal

#: Longest duration accepted (a year), as for HLS.
MAX_SECONDS = 366 * 86400.0
#: Largest value accepted for a timescale-based number (time, duration, start number).
MAX_NUMBER = 1 << 62

_RANGE = re.compile(r"\s*([0-9]+)\s*-\s*([0-9]+)\s*")
_KINDS = ("SegmentTemplate", "SegmentList", "SegmentBase")

ByteRange = Tuple[int, int]  # (offset, length), as for HLS


@dataclass(frozen=True)
class TimelineEntry:
    """One ``<S t= d= r=>`` of a SegmentTimeline (``t`` None: continues the previous)."""

    t: Optional[int]
    d: int
    r: int  # repeats after the first; -1: until the next entry's t or the period's end


@dataclass(frozen=True)
class Addressing:
    """How a Representation's segments are named: the SegmentTemplate, SegmentList or
    SegmentBase in force for it, with the attributes it inherits from the levels above."""

    kind: str  # "SegmentTemplate", "SegmentList" or "SegmentBase"
    timescale: int = 1
    duration: Optional[int] = None  # of each segment, in timescale units
    start_number: int = 1
    presentation_time_offset: int = 0
    media: Optional[str] = None  # template pattern
    initialization: Optional[str] = None  # template pattern, or an Initialization sourceURL
    init_range: Optional[ByteRange] = None  # Initialization@range
    index_range: Optional[ByteRange] = None  # SegmentBase@indexRange: the sidx box
    timeline: Tuple[TimelineEntry, ...] = ()
    urls: Tuple[Tuple[Optional[str], Optional[ByteRange]], ...] = ()  # SegmentList: (media, mediaRange)
    availability_time_offset: float = 0.0


@dataclass(frozen=True)
class Representation:
    id: str
    bandwidth: int  # bits per second, as the MPD declares
    codecs: Optional[str]
    mime_type: Optional[str]
    channels: Optional[str]  # AudioChannelConfiguration@value
    sample_rate: Optional[int]  # audioSamplingRate
    base_url: str  # absolute
    addressing: Optional[Addressing]
    protected: bool = False  # a ContentProtection (DRM, CENC) on it or its AdaptationSet


@dataclass(frozen=True)
class AdaptationSet:
    id: Optional[str]
    content_type: Optional[str]
    mime_type: Optional[str]
    lang: Optional[str]
    roles: Tuple[str, ...]  # Role@value (main, alternate, commentary, dub, description...)
    label: Optional[str]
    representations: Tuple[Representation, ...]

    @property
    def kind(self) -> str:
        """``"audio"``, ``"video"``, ``"text"`` or ``""``, from contentType, else mimeType
        (of the set or of its representations)."""
        if self.content_type:
            return self.content_type.lower()
        types = [self.mime_type] + [r.mime_type for r in self.representations]
        for kind in ("video", "audio", "text"):
            if any(t and t.lower().startswith(kind + "/") for t in types):
                return kind
        return ""


@dataclass(frozen=True)
class Period:
    id: Optional[str]
    start: float  # seconds from the presentation's start (availabilityStartTime when live)
    duration: Optional[float]  # None: until the next period or the presentation's end
    adaptation_sets: Tuple[AdaptationSet, ...]


@dataclass(frozen=True)
class Mpd:
    url: str  # the URL that answered it (after redirects)
    dynamic: bool  # type="dynamic": live, reloaded
    availability_start: Optional[float]  # availabilityStartTime, seconds since the epoch
    media_duration: Optional[float]  # mediaPresentationDuration
    minimum_update_period: Optional[float]
    time_shift_buffer_depth: Optional[float]
    suggested_presentation_delay: Optional[float]
    max_segment_duration: Optional[float]
    periods: Tuple[Period, ...]
    location: Optional[str] = None  # Location: where to reload it from (absolute)
    utc_timing: Tuple[Tuple[str, str], ...] = ()  # UTCTiming (schemeIdUri, value), in MPD order

    def period_end(self, index: int) -> Optional[float]:
        """Where period ``index`` ends (seconds): its duration, the next one's start, or the
        presentation's duration; None when none says (a live period still going)."""
        period = self.periods[index]
        if period.duration is not None:
            return period.start + period.duration
        if index + 1 < len(self.periods):
            return self.periods[index + 1].start
        return self.media_duration


def parse_mpd(text: str, url: str) -> Mpd:
    """Parse an MPD fetched from ``url``; InvalidResponseError if it is not one or names
    something that cannot be read (a malformed duration, range or number)."""
    try:
        root = ElementTree.fromstring(text.encode("utf-8"), forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as exc:
        raise InvalidResponseError("not a valid DASH MPD (XML)", url=url, cause=exc) from None
    if _local(root.tag) != "MPD":
        raise InvalidResponseError("not a DASH MPD: the XML root is not MPD", url=url)
    p = _Parser(url)
    base = p.base(root, url)
    dynamic = (root.get("type") or "static").strip().lower() == "dynamic"
    periods: List[Period] = []
    for element in _children(root, "Period"):
        start = p.duration(element.get("start"), "Period start")
        if start is None:
            start = 0.0 if not periods else periods[-1].start + (periods[-1].duration or 0.0)
        periods.append(p.period(element, base, start))
    if not periods:
        raise InvalidResponseError("DASH MPD without a Period", url=url)
    location = next((_text(e) for e in _children(root, "Location") if _text(e)), None)
    return Mpd(
        url,
        dynamic,
        p.date(root.get("availabilityStartTime")),
        p.duration(root.get("mediaPresentationDuration"), "mediaPresentationDuration"),
        p.duration(root.get("minimumUpdatePeriod"), "minimumUpdatePeriod"),
        p.duration(root.get("timeShiftBufferDepth"), "timeShiftBufferDepth"),
        p.duration(root.get("suggestedPresentationDelay"), "suggestedPresentationDelay"),
        p.duration(root.get("maxSegmentDuration"), "maxSegmentDuration"),
        tuple(periods),
        p.join(url, location) if location else None,
        tuple(
            ((e.get("schemeIdUri") or "").strip(), (e.get("value") or "").strip()) for e in _children(root, "UTCTiming")
        ),
    )


class _Parser:
    """The parsing of one MPD (its URL, for messages)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def period(self, element, base: str, start: float) -> Period:
        base = self.base(element, base)
        inherited = _addressing_elements(element, {})
        sets = tuple(self.adaptation_set(a, base, inherited) for a in _children(element, "AdaptationSet"))
        return Period(element.get("id"), start, self.duration(element.get("duration"), "Period duration"), sets)

    def adaptation_set(self, element, base: str, inherited: Dict[str, list]) -> AdaptationSet:
        base = self.base(element, base)
        inherited = _addressing_elements(element, inherited)
        roles = tuple((r.get("value") or "").strip().lower() for r in _children(element, "Role") if r.get("value"))
        label = next((_text(e) for e in _children(element, "Label") if _text(e)), element.get("label"))
        channels = _channels(element)
        reps = tuple(
            self.representation(r, base, inherited, element, channels) for r in _children(element, "Representation")
        )
        return AdaptationSet(
            element.get("id"),
            element.get("contentType"),
            element.get("mimeType"),
            element.get("lang"),
            roles,
            label,
            reps,
        )

    def representation(
        self, element, base: str, inherited: Dict[str, list], parent, channels: Optional[str]
    ) -> Representation:
        base = self.base(element, base)
        levels = _addressing_elements(element, inherited)
        rep_id = element.get("id") or ""
        bandwidth = self.count(element.get("bandwidth"), "bandwidth", 0)
        rate = element.get("audioSamplingRate") or parent.get("audioSamplingRate")
        return Representation(
            rep_id,
            bandwidth,
            element.get("codecs") or parent.get("codecs"),
            element.get("mimeType") or parent.get("mimeType"),
            _channels(element) or channels,
            decimal(rate.split()[0]) if rate and rate.split() else None,
            base,
            self.addressing(levels),
            bool(_children(element, "ContentProtection") or _children(parent, "ContentProtection")),
        )

    def addressing(self, levels: Dict[str, list]) -> Optional[Addressing]:
        """The addressing of the deepest level that has one, inheriting attributes (and a
        SegmentTimeline, an Initialization) from the same kind of element above it."""
        deepest = max((k for k in _KINDS if levels.get(k)), key=lambda k: levels[k][-1][0], default=None)
        if deepest is None:
            return None
        attrs: Dict[str, str] = {}
        timeline: Tuple[TimelineEntry, ...] = ()
        init = None
        urls: Tuple[Tuple[Optional[str], Optional[ByteRange]], ...] = ()
        for _, element in levels[deepest]:  # outermost first: deeper ones override
            attrs.update(element.attrib)
            found = next(iter(_children(element, "SegmentTimeline")), None)
            if found is not None:
                timeline = self.timeline(found)
            init = next(iter(_children(element, "Initialization")), init)
            listed = tuple(
                (u.get("media"), self.range(u.get("mediaRange"), "mediaRange"))
                for u in _children(element, "SegmentURL")
            )
            urls = listed or urls
        timescale = self.count(attrs.get("timescale"), "timescale", 1) or 1
        return Addressing(
            deepest,
            timescale,
            self.number(attrs.get("duration"), "segment duration", None),
            self.count(attrs.get("startNumber"), "startNumber", 1),
            self.count(attrs.get("presentationTimeOffset"), "presentationTimeOffset", 0),
            attrs.get("media"),
            attrs.get("initialization") or (init.get("sourceURL") if init is not None else None),
            self.range(init.get("range"), "Initialization range") if init is not None else None,
            self.range(attrs.get("indexRange"), "indexRange"),
            timeline,
            urls,
            _float(attrs.get("availabilityTimeOffset")),
        )

    def timeline(self, element) -> Tuple[TimelineEntry, ...]:
        out = []
        for s in _children(element, "S"):
            d = self.number(s.get("d"), "SegmentTimeline duration", None)
            if not d:
                raise InvalidResponseError("DASH SegmentTimeline entry without a duration", url=self.url)
            r = (s.get("r") or "0").strip()
            repeat = -1 if r == "-1" else self.count(r, "SegmentTimeline repeat", 0)
            out.append(TimelineEntry(self.number(s.get("t"), "SegmentTimeline time", None), d, repeat))
        return tuple(out)

    def base(self, element, base: str) -> str:
        found = next((_text(e) for e in _children(element, "BaseURL") if _text(e)), None)
        return self.join(base, found) if found else base

    def join(self, base: str, ref: str) -> str:
        try:
            return urllib.parse.urljoin(base, ref.strip())
        except ValueError as exc:
            raise InvalidResponseError(
                f"DASH MPD names a malformed URL {ref[:100]!r}", url=self.url, cause=exc
            ) from None

    def number(self, value: Optional[str], what: str, default: Optional[int]) -> Optional[int]:
        """A non-negative integer attribute; ``default`` when absent or blank."""
        if value is None or not value.strip():
            return default
        number = decimal(value)
        if number is None or number > MAX_NUMBER:
            raise InvalidResponseError(f"DASH {what} {value[:40]!r} is not a number", url=self.url)
        return number

    def count(self, value: Optional[str], what: str, default: int) -> int:
        """:meth:`number` of an attribute that has a default."""
        number = self.number(value, what, default)
        return default if number is None else number

    def range(self, value: Optional[str], what: str) -> Optional[ByteRange]:
        """``"first-last"`` (inclusive, as in HTTP) -> ``(offset, length)``."""
        if value is None:
            return None
        match = _RANGE.fullmatch(value)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if first <= last < MAX_NUMBER:
                return first, last - first + 1
        raise InvalidResponseError(f"DASH {what} {value[:40]!r} is not a byte range", url=self.url)

    def duration(self, value: Optional[str], what: str) -> Optional[float]:
        if value is None or not value.strip():
            return None
        try:
            parsed = isodate.parse_duration(value.strip())
            seconds = parsed.total_seconds() if hasattr(parsed, "total_seconds") else None
        except (isodate.ISO8601Error, ValueError, TypeError, OverflowError):
            seconds = None
        if seconds is None or not 0.0 <= seconds <= MAX_SECONDS:
            raise InvalidResponseError(f"DASH {what} {value[:40]!r} is not a duration", url=self.url)
        return float(seconds)

    def date(self, value: Optional[str]) -> Optional[float]:
        if value is None or not value.strip():
            return None
        seconds = parse_date(value)
        if seconds is None:
            raise InvalidResponseError(f"DASH availabilityStartTime {value[:40]!r} is not a date", url=self.url)
        return seconds


def parse_date(value: str) -> Optional[float]:
    """An ISO 8601 date and time as seconds since the epoch; None if it is not one. One
    without a zone is read as UTC, as DASH clients read it."""
    try:
        when = isodate.parse_datetime(value.strip())
        return calendar.timegm(when.utctimetuple()) + when.microsecond / 1e6
    except (isodate.ISO8601Error, ValueError, TypeError, OverflowError):
        return None


def _addressing_elements(element, inherited: Dict[str, list]) -> Dict[str, list]:
    """The addressing elements of each kind from the Period down to ``element``, each with
    its depth (deeper: more specific)."""
    depth = 1 + max((d for kinds in inherited.values() for d, _ in kinds), default=0)
    out = {k: list(v) for k, v in inherited.items()}
    for kind in _KINDS:
        for found in _children(element, kind):
            out.setdefault(kind, []).append((depth, found))
    return out


def _channels(element) -> Optional[str]:
    found = next(iter(_children(element, "AudioChannelConfiguration")), None)
    return found.get("value") if found is not None else None


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element, name: str) -> Iterable:
    return [child for child in element if _local(child.tag) == name]


def _text(element) -> str:
    return (element.text or "").strip()


def _float(value: Optional[str]) -> float:
    try:
        number = float(value) if value is not None else 0.0
    except ValueError:
        return 0.0
    return number if 0.0 <= number < MAX_SECONDS else 0.0
