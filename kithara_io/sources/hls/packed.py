"""Packed audio (RFC 8216 3.4): the ID3 tags that lead its segments are not stream bytes.

A packed audio segment (MP3, AAC in ADTS, AC-3, E-AC-3 frames) starts with an ID3v2 tag whose
PRIV frame ``com.apple.streaming.transportStreamTimestamp`` gives the time of its first
sample; producers write one at the start of every segment (FFmpeg's segment muxer writes its
own ID3v2 tag there too). Concatenated, those tags sit between audio frames: FFmpeg's ADTS
demuxer skips them, its MP3 demuxer stops ("Header missing"). So the byte stream of an HLS
presentation leaves out every leading tag, the first segment's too (one rule for every part,
so a part's size does not depend on where the plan puts it): the stream is the elementary
audio stream the segments carry, as their frames decode joined. The timestamps are not kept.

Which segments: only a segment's own first bytes tell (``ID3``); an init segment, an fMP4
segment (it has one) and a URI naming an MPEG-TS or MP4 file never start with a tag, so their
sizes stay those of their files (a HEAD tells). For the others the tag length is learned from
the first bytes: from a data fetch that starts at the segment's first byte (``HeadSkipper``),
or from a short ranged GET (``probe``) before a fetch from elsewhere or to learn the size.

Pure, but for ``probe`` (one or a few requests over the Transport it is given).
"""

from __future__ import annotations

import posixpath
import urllib.parse
from typing import Optional, Tuple

from .playlist import Resource

_PROBE = 1024  # first bytes asked to find the tags' length (a timestamp tag is 73 bytes)
_MAX_TAGS = 8  # leading tags looked at, one after another
_HEADER = 10
_PLAIN_SUFFIXES = frozenset({".ts", ".m2ts", ".mts", ".m4s", ".mp4", ".m4a", ".m4v", ".cmfa", ".cmfv", ".fmp4"})


def may_be_tagged(uri: str) -> bool:
    """Can a segment (without an init segment) at ``uri`` start with an ID3 tag? Not one
    whose path names an MPEG-TS or MP4 file; any other may be packed audio."""
    suffix = posixpath.splitext(urllib.parse.urlsplit(uri).path)[1].lower()
    return suffix not in _PLAIN_SUFFIXES


def _tag_length(header: bytes) -> Optional[int]:
    """Length of the ID3v2 tag whose 10-byte header this is, footer included; None if it is
    not one (a tag's size is four 7-bit bytes, its version below 0xFF)."""
    if header[:3] != b"ID3" or header[3] == 0xFF or header[4] == 0xFF or any(b & 0x80 for b in header[6:10]):
        return None
    size = (header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9]
    footer = _HEADER if header[5] & 0x10 else 0
    return _HEADER + size + footer


def tags_length(head: bytes, final: bool) -> Tuple[Optional[int], int]:
    """Bytes of the ID3v2 tags at the start of ``head`` (the first bytes of a segment; all
    of it when ``final``): ``(length, 0)``, or ``(None, n)`` when the first ``n`` bytes are
    needed to tell. A tag cut by the end of the segment ends with it."""
    pos = 0
    for _ in range(_MAX_TAGS):
        header = head[pos : pos + _HEADER]
        if len(header) < _HEADER and not final and b"ID3".startswith(header[:3]):
            return None, pos + _HEADER  # could still be a tag
        length = _tag_length(header) if len(header) == _HEADER else None
        if length is None:
            return pos, 0
        pos += length
        if final and pos >= len(head):
            return len(head), 0
    return pos, 0


class HeadSkipper:
    """Maps a part's bytes as fetched (positions in its file) to stream bytes: those before
    ``skip`` (the tags) are dropped. With ``skip`` unknown, the bytes must come in order from
    the first: they are held until the tags' end is known (``total``, the part's length in
    its file once known, tells a part that ends within them). One per fetch, on its thread."""

    def __init__(self, skip: Optional[int]) -> None:
        self.skip = skip
        self.total: Optional[int] = None
        self._held = bytearray()

    def feed(self, raw_pos: int, data: bytes) -> Optional[Tuple[int, bytes]]:
        """``(stream position, bytes)`` of the bytes ``data`` fetched at ``raw_pos``, or None
        (tag bytes only, or held). ``feed(end, b"")`` after ``total`` is set ends the wait."""
        if self.skip is None:
            self._held += data
            final = self.total is not None and len(self._held) >= self.total
            skip, _ = tags_length(bytes(self._held), final)
            if skip is None:
                return None
            self.skip, raw_pos, data = skip, 0, bytes(self._held)
            self._held = bytearray()
        cut = max(0, self.skip - raw_pos)
        if cut >= len(data):
            return None
        return raw_pos + cut - self.skip, data[cut:]


def probe(transport, resource: Resource, abort) -> Tuple[Optional[int], int]:
    """``(length of the segment's bytes or None, length of its leading tags)`` from its
    first bytes (a ranged GET; again with more when a tag is longer than asked)."""
    base, limit = resource.byterange if resource.byterange is not None else (0, None)
    want = _PROBE
    while True:
        stop = want if limit is None else min(want, limit)
        body = transport.open(resource.uri, base, base + stop, abort)
        try:
            total = limit if limit is not None else body.total
            head = bytearray()
            while len(head) < stop:
                data = body.read(stop - len(head))
                if not data:
                    break
                head += data
        finally:
            body.close()
        final = len(head) < stop or (total is not None and len(head) >= total)
        skip, needed = tags_length(bytes(head), final)
        if skip is not None:
            return total, skip
        want = max(2 * want, needed)
