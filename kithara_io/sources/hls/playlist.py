"""HLS playlists (RFC 8216) read with the ``m3u8`` library into plain, immutable data.

Pure: text in, dataclasses out. ``parse_playlist`` tells a master playlist (variants) from a
media playlist (segments); URIs come out absolute (resolved against the playlist's URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import m3u8

from ...errors import InvalidResponseError

#: Content types that name an HLS playlist (RFC 8216 section 4, and the older audio one).
PLAYLIST_TYPES = frozenset({"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl"})


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

    @property
    def live(self) -> bool:
        return not self.ended


@dataclass(frozen=True)
class MasterPlaylist:
    uri: str
    variants: Tuple[Variant, ...]
    renditions: Tuple[Rendition, ...] = ()  # the audio ones


def looks_like_playlist(content_type: Optional[str], head: bytes) -> bool:
    """Is this an HLS playlist? A body starting ``#EXTM3U`` that carries ``#EXT-X-`` tags
    (a plain M3U list of URLs is not HLS), whatever the content type; or an HLS content type
    with an ``#EXTM3U`` body."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"#EXTM3U"):
        return False
    kind = (content_type or "").split(";")[0].strip().lower()
    return b"#EXT-X-" in text or kind in PLAYLIST_TYPES


def parse_playlist(text: str, url: str) -> Union[MasterPlaylist, MediaPlaylist]:
    """Parse a playlist fetched from ``url``; raises InvalidResponseError if it is neither
    a master playlist with variants nor a media playlist."""
    try:
        parsed = m3u8.loads(text, uri=url)
    except Exception as exc:  # m3u8 raises assorted errors on malformed input
        raise InvalidResponseError("not a valid HLS playlist", url=url, cause=exc) from None
    if parsed.is_variant:
        variants = tuple(
            Variant(p.stream_info.bandwidth or 0, p.stream_info.codecs, p.absolute_uri, p.stream_info.audio or None)
            for p in parsed.playlists
        )
        if not variants:
            raise InvalidResponseError("HLS master playlist without variants", url=url)
        return MasterPlaylist(url, variants, _renditions(parsed))
    if parsed.iframe_playlists and not parsed.segments:  # m3u8 calls it a media playlist
        raise InvalidResponseError("HLS master playlist with only I-frame streams", url=url)
    if (parsed.media_sequence or 0) < 0:
        raise InvalidResponseError(f"HLS media sequence {parsed.media_sequence} is negative", url=url)
    try:
        return _media(parsed, url)
    except ValueError as exc:  # a BYTERANGE or IV that is not a number
        raise InvalidResponseError("not a valid HLS playlist", url=url, cause=exc) from None


def _renditions(parsed: m3u8.M3U8) -> Tuple[Rendition, ...]:
    return tuple(
        Rendition(
            m.group_id or "",
            m.name or "",
            m.language or None,
            (m.default or "").upper() == "YES",
            (m.autoselect or "").upper() == "YES",
            m.channels or None,
            m.absolute_uri if m.uri else None,
        )
        for m in parsed.media
        if (m.type or "").upper() == "AUDIO"
    )


def _media(parsed: m3u8.M3U8, url: str) -> MediaPlaylist:
    first = parsed.media_sequence or 0
    segments: List[Segment] = []
    next_offset = {}  # a BYTERANGE without @offset continues the previous sub-range of its URI
    for index, seg in enumerate(parsed.segments):
        if not seg.uri:  # LL-HLS: parts of a segment still being made, not a segment yet
            continue
        uri = seg.absolute_uri
        byterange = _byterange(seg.byterange, next_offset.get(uri, 0))
        if byterange is not None:
            next_offset[uri] = byterange[0] + byterange[1]
        init = None
        if seg.init_section is not None:
            init = Resource(seg.init_section.absolute_uri, _byterange(seg.init_section.byterange, 0))
        segments.append(
            Segment(first + index, float(seg.duration or 0.0), Resource(uri, byterange), _key(seg.key), init, bool(seg.discontinuity))
        )
    if not segments and parsed.is_endlist:
        raise InvalidResponseError("HLS media playlist without segments", url=url)
    return MediaPlaylist(
        url,
        tuple(segments),
        float(parsed.target_duration or 0.0) or max((s.duration for s in segments), default=1.0),
        first,
        bool(parsed.is_endlist),
        (parsed.playlist_type or "").lower() or None,
    )


def _byterange(spec: Optional[str], default_offset: int) -> Optional[Tuple[int, int]]:
    """``"length@offset"`` or ``"length"`` -> ``(offset, length)``."""
    if not spec:
        return None
    length, _, offset = str(spec).partition("@")
    return (int(offset) if offset else default_offset, int(length))


def _key(key) -> Optional[Key]:
    if key is None or not key.method or key.method.upper() == "NONE":
        return None
    iv = None
    if key.iv:
        text = key.iv[2:] if key.iv[:2].lower() == "0x" else key.iv
        iv = bytes.fromhex(text.rjust(32, "0"))
    return Key(key.method.upper(), key.absolute_uri if key.uri else None, iv)


def live_start(playlist: MediaPlaylist, edge_durations: float = 3.0) -> int:
    """Index of the segment to start a live playlist at: the one holding the time
    ``edge_durations`` target durations before the end (RFC 8216 6.3.3)."""
    remaining = edge_durations * playlist.target_duration
    index = len(playlist.segments)
    while index > 0 and remaining > 0:
        index -= 1
        remaining -= playlist.segments[index].duration
    return index
