"""What kind of media playlist a stream reads, and what follows from it (RFC 8216 6.2.1, 6.3.3).

Pure. ``VOD``: complete (``#EXT-X-ENDLIST`` at open), an ordinary seekable file. ``EVENT``
(``#EXT-X-PLAYLIST-TYPE:EVENT`` without ENDLIST yet): reloaded like a live playlist, but segments
are only ever appended, so the stream starts at the first segment and may seek within what is
listed; its size is known once ENDLIST appears. ``LIVE`` (a sliding window): reloaded, starts near
the live edge, not seekable, no size. Whether the playlist has ended since is the reader's state
(``_ended``), not the kind's: an EVENT stream stays EVENT after its ENDLIST.
"""

from __future__ import annotations

import enum

from .playlist import MediaPlaylist


class PlaylistKind(enum.Enum):
    VOD = "vod"
    EVENT = "event"
    LIVE = "live"

    @classmethod
    def of(cls, playlist: MediaPlaylist) -> "PlaylistKind":
        if playlist.ended:
            return cls.VOD
        return cls.EVENT if playlist.playlist_type == "event" else cls.LIVE

    @property
    def seekable(self) -> bool:
        """Everything it lists stays listed: positions are stable, a seek may go back."""
        return self is not PlaylistKind.LIVE

    @property
    def from_live_edge(self) -> bool:
        """Starts three target durations from the end (the rest may be gone soon)."""
        return self is PlaylistKind.LIVE

    @property
    def switchable(self) -> bool:
        """ABR may re-plan it (only the current variant of a growing playlist is reloaded)."""
        return self is PlaylistKind.VOD
