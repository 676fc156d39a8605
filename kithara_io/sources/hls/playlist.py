"""HLS playlists (RFC 8216) read with the ``m3u8`` library into plain, immutable data.

Pure: text in, dataclasses out. ``parse_playlist`` tells a master playlist (variants) from a
media playlist (segments); URIs come out absolute (resolved against the playlist's URL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from ...errors import InvalidResponseError
from ...extras import missing_extra
from ...headers import decimal

if TYPE_CHECKING:
    import m3u8

#: Largest media sequence number: RFC 8216 decimal-integers are below 2**64.
MAX_SEQUENCE = (1 << 64) - 1
#: Largest end of a byte range accepted (as for a Content-Range total).
MAX_OFFSET = 1 << 62
#: Longest segment or target duration accepted (a year; waits longer than ~292 years
#: overflow ``threading``'s timeouts: the live reload thread died of one).
MAX_SECONDS = 366 * 86400.0

_BYTERANGE = re.compile(r"([0-9]+)(?:@([0-9]+))?")
_IV = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,32})")

#: Content types that name an HLS playlist (RFC 8216 section 4, and the older audio one).
PLAYLIST_TYPES = frozenset(
    {"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"}
)


@dataclass(frozen=True)
class Variant:
    """One ``#EXT-X-STREAM-INF`` entry of a master playlist (or, for a master whose audio
    is in renditions, the audio rendition read for it: see :mod:`.renditions`)."""

    bandwidth: int  # bits per second, as the playlist declares
    codecs: Optional[str]
    uri: str  # absolute URL of its media playlist
    audio: Optional[str] = None  # the GROUP-ID of its ``AUDIO`` renditions, if any


@dataclass(frozen=True)
class Rendition:
    """One ``#EXT-X-MEDIA:TYPE=AUDIO`` entry: an audio rendition of a group."""

    group: str
    name: str
    language: Optional[str]
    default: bool
    autoselect: bool
    channels: Optional[str]
    uri: Optional[str]  # absolute URL of its media playlist; None: in the variant's own stream


@dataclass(frozen=True)
class Key:
    """An ``#EXT-X-KEY``: ``method`` NONE, AES-128, SAMPLE-AES...; ``iv`` None: derive it."""

    method: str
    uri: Optional[str]
    iv: Optional[bytes]


@dataclass(frozen=True)
class Resource:
    """Bytes of one URL: all of it (``byterange`` None) or ``(offset, length)`` of it."""

    uri: str
    byterange: Optional[Tuple[int, int]] = None


@dataclass(frozen=True)
class Segment:
    """One media segment: where its bytes are, how long it plays, how it is encrypted."""

    sequence: int  # media sequence number (EXT-X-MEDIA-SEQUENCE + index)
    duration: float
    resource: Resource
    key: Optional[Key]  # None or method NONE: clear
    init: Optional[Resource]  # the EXT-X-MAP in force (fMP4), None for MPEG-TS
    discontinuity: bool = False  # #EXT-X-DISCONTINUITY before it: timestamps, codec may change


@dataclass(frozen=True)
class MediaPlaylist:
    uri: str
    segments: Tuple[Segment, ...]
    target_duration: float
    media_sequence: int
    ended: bool  # #EXT-X-ENDLIST seen: no segment will be added
    playlist_type: Optional[str]  # "vod", "event" or None
    start: Optional[Tuple[float, bool]] = None  # #EXT-X-START: (TIME-OFFSET, PRECISE)

    @property
    def live(self) -> bool:
        return not self.ended


@dataclass(frozen=True)
class MasterPlaylist:
    uri: str
    variants: Tuple[Variant, ...]
    renditions: Tuple[Rendition, ...] = ()  # the audio ones
    start: Optional[Tuple[float, bool]] = None  # #EXT-X-START, for media playlists without one


def looks_like_playlist(content_type: Optional[str], head: bytes) -> bool:
    """Is this an HLS playlist? A body starting ``#EXTM3U`` that carries ``#EXT-X-`` tags
    (a plain M3U list of URLs is not HLS), whatever the content type; or an HLS content type
    with an ``#EXTM3U`` body."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"#EXTM3U"):
        return False
    kind = (content_type or "").split(";")[0].strip().lower()
    return b"#EXT-X-" in text or kind in PLAYLIST_TYPES


def _m3u8() -> Any:
    """The m3u8 module, imported here: the rest of this module (and the sniffing of
    ``open()``, which uses it) works without the ``hls`` extra."""
    try:
        import m3u8
    except ModuleNotFoundError as exc:
        raise missing_extra("hls", "HLS streams", exc) from exc
    return m3u8


def parse_playlist(text: str, url: str) -> Union[MasterPlaylist, MediaPlaylist]:
    """Parse a playlist fetched from ``url``; raises InvalidResponseError if it is neither
    a master playlist with variants nor a media playlist."""
    loads = _m3u8().loads
    try:
        parsed = loads(text, uri=url)
    except Exception as exc:  # noqa: BLE001 - m3u8 raises assorted errors on malformed input
        raise InvalidResponseError("not a valid HLS playlist", url=url, cause=exc) from None
    if parsed.is_variant:
        variants = tuple(
            Variant(
                _bandwidth(p.stream_info.bandwidth, url),
                p.stream_info.codecs,
                _uri(p, url),
                p.stream_info.audio or None,
            )
            for p in parsed.playlists
        )
        if not variants:
            raise InvalidResponseError("HLS master playlist without variants", url=url)
        return MasterPlaylist(url, variants, _renditions(parsed, url), _start(parsed))
    if parsed.iframe_playlists and not parsed.segments:  # m3u8 calls it a media playlist
        raise InvalidResponseError("HLS master playlist with only I-frame streams", url=url)
    return _media(parsed, url)


def _renditions(parsed: m3u8.M3U8, url: str) -> Tuple[Rendition, ...]:
    return tuple(
        Rendition(
            m.group_id or "",
            m.name or "",
            m.language or None,
            (m.default or "").upper() == "YES",
            (m.autoselect or "").upper() == "YES",
            m.channels or None,
            _uri(m, url) if m.uri else None,
        )
        for m in parsed.media
        if (m.type or "").upper() == "AUDIO"
    )


def _media(parsed: m3u8.M3U8, url: str) -> MediaPlaylist:
    first = parsed.media_sequence or 0
    if not isinstance(first, int) or not 0 <= first <= MAX_SEQUENCE - len(parsed.segments):
        raise InvalidResponseError(f"HLS media sequence {first!r} out of range", url=url)
    segments: List[Segment] = []
    next_offset: Dict[str, int] = {}  # a BYTERANGE without @offset continues the previous sub-range of its URI
    for index, seg in enumerate(parsed.segments):
        if not seg.uri:  # LL-HLS: parts of a segment still being made, not a segment yet
            continue
        uri = _uri(seg, url)
        byterange = _byterange(seg.byterange, next_offset.get(uri, 0), url)
        if byterange is not None:
            next_offset[uri] = byterange[0] + byterange[1]
        init = None
        if seg.init_section is not None:
            init = Resource(_uri(seg.init_section, url), _byterange(seg.init_section.byterange, 0, url))
        duration = _seconds(seg.duration, "segment duration", url)
        segments.append(
            Segment(
                first + index, duration, Resource(uri, byterange), _key(seg.key, url), init, bool(seg.discontinuity)
            )
        )
    if not segments and parsed.is_endlist:
        raise InvalidResponseError("HLS media playlist without segments", url=url)
    return MediaPlaylist(
        url,
        tuple(segments),
        _seconds(parsed.target_duration, "target duration", url) or max((s.duration for s in segments), default=1.0),
        first,
        bool(parsed.is_endlist),
        (parsed.playlist_type or "").lower() or None,
        _start(parsed),
    )


def _start(parsed: m3u8.M3U8) -> Optional[Tuple[float, bool]]:
    """``#EXT-X-START:TIME-OFFSET=..[,PRECISE=YES]`` as ``(seconds, precise)``."""
    start = parsed.start
    if start is None or start.time_offset is None:
        return None
    try:
        offset = float(start.time_offset)
    except (TypeError, ValueError):
        return None  # malformed: ignored, as players do
    if offset != offset or abs(offset) == float("inf"):
        return None
    return (offset, str(start.precise or "").upper() == "YES")


def _byterange(spec: Optional[str], default_offset: int, url: str) -> Optional[Tuple[int, int]]:
    """``"length@offset"`` or ``"length"`` -> ``(offset, length)``; a length of at least one
    byte, and an end below :data:`MAX_OFFSET`."""
    if not spec:
        return None
    match = _BYTERANGE.fullmatch(str(spec).strip())
    if match:
        length, offset = decimal(match.group(1)), decimal(match.group(2))
        offset = default_offset if offset is None else offset
        if length and offset + length <= MAX_OFFSET:
            return offset, length
    raise InvalidResponseError(f"HLS BYTERANGE {str(spec)[:60]!r} is not a valid byte range", url=url)


def _key(key, url: str) -> Optional[Key]:
    if key is None or not key.method or key.method.upper() == "NONE":
        return None
    iv = None
    if key.iv:
        match = _IV.fullmatch(str(key.iv).strip())
        if not match:
            raise InvalidResponseError(
                f"HLS key IV {str(key.iv)[:60]!r} is not a hexadecimal number of at most 128 bits", url=url
            )
        iv = bytes.fromhex(match.group(1).rjust(32, "0"))
    return Key(key.method.upper(), _uri(key, url) if key.uri else None, iv)


def _uri(item, url: str) -> str:
    """The absolute URI of a playlist item (m3u8 resolves it: ``urljoin``, which refuses
    some malformed URIs with ValueError)."""
    try:
        return item.absolute_uri
    except ValueError as exc:
        raise InvalidResponseError(
            f"HLS playlist names a malformed URI {str(item.uri)[:100]!r}", url=url, cause=exc
        ) from None


def _seconds(value, what: str, url: str) -> float:
    """A duration (EXTINF, TARGETDURATION): 0 to :data:`MAX_SECONDS`; absent is 0, and so is
    a segment's ``-1`` (plain M3U's "unknown", which real playlists carry over into HLS)."""
    try:
        seconds = float(value or 0.0)
    except (TypeError, ValueError):
        seconds = float("nan")
    if what == "segment duration" and seconds == -1.0:
        return 0.0
    if not 0.0 <= seconds <= MAX_SECONDS:
        raise InvalidResponseError(f"HLS {what} {value!r} is not a duration", url=url)
    return seconds


def _bandwidth(value, url: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or value < 0:
        raise InvalidResponseError(f"HLS variant BANDWIDTH {value!r} is not a number of bits/s", url=url)
    return value


def live_start(playlist: MediaPlaylist, edge_durations: float = 3.0) -> int:
    """Index of the segment to start a live playlist at: the one holding the time
    ``edge_durations`` target durations before the end (RFC 8216 6.3.3)."""
    remaining = edge_durations * playlist.target_duration
    index = len(playlist.segments)
    while index > 0 and remaining > 0:
        index -= 1
        remaining -= playlist.segments[index].duration
    return index
