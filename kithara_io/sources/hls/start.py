"""Where a stream starts in its media playlist: ``open(url, live_start=...)`` and
``#EXT-X-START`` (RFC 8216 4.4.2.2, 6.3.3).

Pure. A stream's byte 0 is the first segment it plans (after an fMP4 init segment); the
segments before it are never part of the stream. The choice:

- ``None`` (default): a live playlist starts at its ``#EXT-X-START`` if it has one, else at
  ``"edge"``; an EVENT or VOD playlist at its first segment (``"start"``).
- ``"edge"``: the segment holding the time three target durations before the end.
- ``"start"``: the first segment listed (the start of a live window: streamlink's
  ``--hls-live-restart``).
- ``"playlist"``: the playlist's ``#EXT-X-START`` for every kind (VOD and EVENT too); without
  one, the default above.
- seconds (a number): from the start of the playlist; negative: back from its end (the live
  edge), as ``TIME-OFFSET`` counts. Beyond either end it is clamped to the first or the last
  segment (RFC 8216 4.4.2.2).

The stream starts at the segment holding the point; ``skip`` is the time from that
segment's start to the point, for a player that starts exactly there (``PRECISE=YES``, or
seconds asked): 0 for a ``PRECISE=NO`` start and for ``"edge"``/``"start"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

from .kind import PlaylistKind
from .playlist import MediaPlaylist, live_start

StartChoice = Union[None, str, float]  # checked by StreamOptions


@dataclass(frozen=True)
class Start:
    index: int  # of the first segment planned in the playlist's segments
    skip: float  # seconds from that segment's start to the point asked (0: its start)
    declared: Optional[Tuple[float, bool]] = None  # the playlist's #EXT-X-START (offset, precise)


def choose(playlist: MediaPlaylist, kind: PlaylistKind, choice: StartChoice) -> Start:
    """The segment a stream of ``playlist`` starts at, for ``live_start=choice``."""
    point = _choose(playlist, kind, choice)
    return Start(point.index, point.skip, playlist.start)


def _choose(playlist: MediaPlaylist, kind: PlaylistKind, choice: StartChoice) -> Start:
    if choice == "playlist" or (choice is None and kind is PlaylistKind.LIVE):
        if playlist.start is not None:
            offset, precise = playlist.start
            point = at_time(playlist, offset)
            return point if precise else Start(point.index, 0.0)
        choice = None
    if choice is None:
        choice = "edge" if kind is PlaylistKind.LIVE else "start"
    if choice == "edge":
        return Start(min(live_start(playlist), max(0, len(playlist.segments) - 1)), 0.0)
    if choice == "start":
        return Start(0, 0.0)
    return at_time(playlist, float(choice))


def at_time(playlist: MediaPlaylist, offset: float) -> Start:
    """The segment holding ``offset`` seconds from the start (negative: from the end),
    clamped to the playlist."""
    durations = [s.duration for s in playlist.segments]
    if not durations:
        return Start(0, 0.0)
    total = sum(durations)
    point = min(max(total + offset if offset < 0 else offset, 0.0), total)
    elapsed = 0.0
    for index, duration in enumerate(durations[:-1]):
        if point < elapsed + duration:
            return Start(index, max(0.0, point - elapsed))
        elapsed += duration
    return Start(len(durations) - 1, max(0.0, min(point - elapsed, durations[-1])))
