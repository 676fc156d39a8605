"""Plan: which part sits at each place of the stream, and the layout of their bytes.

A part is ``(variant, media sequence number)``; a negative sequence is an EXT-X-MAP init
segment of the variant: ``INIT`` (-1) its first, ``INIT - n`` the ``n``-th other one its
playlist names (``#EXT-X-MAP`` may change between segments: after a discontinuity, a codec
change). The plan is the list of parts the stream is made of, in order: before each media
segment whose init segment differs from the one in force, that init segment (for fMP4 the
first part; for MPEG-TS none), then the media segments; the layout gives their offsets from
the sizes known so far. ``switch`` re-plans the tail on another variant at a segment
boundary by the same rule (the new variant's init segment goes in first, unless the switch
goes back to the variant, and init, in force).

Not thread-safe: the HlsReader's condition guards it.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .layout import Layout
from .packed import may_be_tagged
from .playlist import Key, MediaPlaylist, Resource, Segment

PartKey = Tuple[int, int]
INIT = -1


def is_init(key: PartKey) -> bool:
    return key[1] < 0


class Plan:
    def __init__(self, media: Dict[int, MediaPlaylist]) -> None:
        self.media: Dict[int, MediaPlaylist] = {}
        self.segments: Dict[int, Dict[int, Segment]] = {}
        self._inits: Dict[int, List[Resource]] = {}  # per variant, in the order first named
        self.sizes: Dict[PartKey, int] = {}  # known sizes in the stream (plaintext, tags left out)
        self.raw: Dict[PartKey, int] = {}  # ... of parts that may lead with ID3 tags: in their file
        self.skips: Dict[PartKey, int] = {}  # their leading tags' length (packed audio, :mod:`.packed`)
        self.parts: List[PartKey] = []
        self.layout = Layout()
        for variant, playlist in media.items():
            self.add_media(variant, playlist)

    def build(self, variant: int, sequences: List[int]) -> None:
        for seq in sequences:
            self._append_segment(variant, seq)

    def init_key(self, variant: int, seq: int) -> Optional[PartKey]:
        """The init part in force for segment ``seq`` of ``variant`` (None: MPEG-TS)."""
        init = self.segments[variant][seq].init
        return None if init is None else (variant, INIT - self._inits[variant].index(init))

    def _in_force(self, parts: List[PartKey]) -> Optional[PartKey]:
        """The init part the last of ``parts`` is read with (None: none)."""
        return next((key for key in reversed(parts) if is_init(key)), None)

    def _append_segment(self, variant: int, seq: int) -> None:
        init = self.init_key(variant, seq)
        if init is not None and init != self._in_force(self.parts):
            self.append(init)
        self.append((variant, seq))

    def append(self, key: PartKey) -> None:
        self._size_from_playlist(key)
        self.parts.append(key)
        self.layout.append(self.sizes.get(key))

    def _size_from_playlist(self, key: PartKey) -> None:
        resource = self.resource(key)
        if resource.byterange is not None and not self.encrypted(key) and self.raw_size(key) is None:
            self.learn_raw(key, resource.byterange[1])

    def add_media(self, variant: int, playlist: MediaPlaylist) -> None:
        self.media[variant] = playlist
        self.segments.setdefault(variant, {}).update({s.sequence: s for s in playlist.segments})
        inits = self._inits.setdefault(variant, [])
        inits.extend(dict.fromkeys(s.init for s in playlist.segments if s.init is not None and s.init not in inits))

    def resource(self, key: PartKey) -> Resource:
        variant, seq = key
        if is_init(key):
            return self._inits[variant][INIT - seq]
        return self.segments[variant][seq].resource

    def secret(self, key: PartKey) -> Optional[Key]:
        return None if is_init(key) else self.segments[key[0]][key[1]].key

    def encrypted(self, key: PartKey) -> bool:
        return self.secret(key) is not None

    def tagged(self, key: PartKey) -> bool:
        """May the part start with ID3 tags (packed audio) that the stream leaves out?"""
        if key[1] < 0:  # an init segment
            return False
        segment = self.segments[key[0]][key[1]]
        return segment.init is None and may_be_tagged(segment.resource.uri)

    def skip(self, key: PartKey) -> Optional[int]:
        """Bytes at the start of the part's file that are not stream bytes; None: unknown yet."""
        return self.skips.get(key) if self.tagged(key) else 0

    def raw_size(self, key: PartKey) -> Optional[int]:
        """The part's length in its file (plaintext), if known."""
        return self.raw.get(key) if self.tagged(key) else self.sizes.get(key)

    def learn_raw(self, key: PartKey, raw: int) -> bool:
        """Record a part's length in its file; True if its stream size became news."""
        if not self.tagged(key):
            return self.learn(key, raw)
        self.raw[key] = raw
        return self._tagged_size(key)

    def learn_skip(self, key: PartKey, skip: int) -> bool:
        """Record the length of a part's leading tags; True if its stream size became news."""
        self.skips[key] = skip
        return self._tagged_size(key)

    def _tagged_size(self, key: PartKey) -> bool:
        raw, skip = self.raw.get(key), self.skips.get(key)
        return raw is not None and skip is not None and self.learn(key, max(0, raw - skip))

    def learn(self, key: PartKey, size: int) -> bool:
        """Record a part's size in the stream; True if it was news."""
        if self.sizes.get(key) == size:
            return False
        self.sizes[key] = size
        for index, planned in enumerate(self.parts):
            if planned == key:
                self.layout.set_size(index, size)
        return True

    def switch(self, start: int, target: int) -> Optional[int]:
        """Re-plan every part from ``start`` on the ``target`` variant; the variant it
        replaces, or None when nothing changed (same variant, or segments not aligned)."""
        if start >= len(self.parts) or self.parts[start][0] == target:
            return None
        current = self.parts[start][0]
        sequences = [seq for _, seq in self.parts[start:] if seq >= 0]
        if any(seq not in self.segments.get(target, {}) for seq in sequences):
            return None
        self.parts = self.parts[:start]
        self.layout = Layout()
        for key in self.parts:
            self.layout.append(self.sizes.get(key))
        for seq in sequences:
            self._append_segment(target, seq)
        return current

    def merge(self, variant: int, playlist: MediaPlaylist) -> Tuple[List[Segment], Optional[Tuple[int, int]]]:
        """Append what a reloaded live playlist lists after the last planned segment.
        Returns the new segments and, if the window moved past unplanned ones, their range."""
        self.add_media(variant, playlist)
        last = max((seq for _, seq in self.parts if seq >= 0), default=None)
        fresh = [s for s in playlist.segments if last is None or s.sequence > last]
        gap = (last + 1, fresh[0].sequence - 1) if fresh and last is not None and fresh[0].sequence > last + 1 else None
        for seg in fresh:
            self._append_segment(variant, seg.sequence)
        return fresh, gap

    def media_segments(self) -> List[Tuple[int, float, Optional[int], int, bool]]:
        """``(sequence, duration, byte offset or None, variant, discontinuity)`` of the
        planned media segments (``discontinuity``: a fresh demuxer starts there)."""
        return [
            (
                seq,
                self.segments[variant][seq].duration,
                self.layout.offset(index),
                variant,
                self._boundary(index) is not None,
            )
            for index, (variant, seq) in enumerate(self.parts)
            if seq >= 0
        ]

    def restarts_at(self, index: int) -> bool:
        """Must a fresh demuxer start at part ``index`` (not the first)? At an init segment
        (a variant switch, or an ``#EXT-X-MAP`` that changes), and at an MPEG-TS segment
        after ``#EXT-X-DISCONTINUITY`` (timestamps restart, the codec or rate may change).
        (An fMP4 discontinuity under the same init segment keeps its demuxer: a new one
        would need the init segment again.)"""
        if index <= 0 or index >= len(self.parts):
            return False
        variant, seq = self.parts[index]
        if seq < 0:
            return True
        segment = self.segments[variant][seq]
        return segment.discontinuity and segment.init is None

    def _boundary(self, index: int) -> Optional[int]:
        """Where the discontinuity of media segment ``index`` starts a fresh demuxer: the
        index of the segment (MPEG-TS), of the init segment put before it (fMP4 whose
        ``#EXT-X-MAP`` changes there), or None (no discontinuity, or none that restarts)."""
        variant, seq = self.parts[index]
        if not self.segments[variant][seq].discontinuity:
            return None
        if self.restarts_at(index):
            return index
        before = index - 1
        return before if before > 0 and is_init(self.parts[before]) else None

    def discontinuities(self) -> List[Tuple[Optional[int], float]]:
        """``(byte offset or None, start in seconds)`` of each planned discontinuity."""
        out, elapsed = [], 0.0
        for index, (variant, seq) in enumerate(self.parts):
            if seq < 0:
                continue
            boundary = self._boundary(index)
            if boundary is not None:
                out.append((self.layout.offset(boundary), elapsed))
            elapsed += self.segments[variant][seq].duration
        return out

    def index_at(self, seconds: float) -> Optional[int]:
        """Index of the part holding media time ``seconds`` (0 at or before the start)."""
        if seconds <= 0:
            return 0 if self.parts else None
        elapsed, target = 0.0, None
        for index, (variant, seq) in enumerate(self.parts):
            if seq < 0:
                continue
            target = index
            elapsed += self.segments[variant][seq].duration
            if elapsed > seconds:
                break
        return target
