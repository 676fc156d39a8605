"""The Player's ``speed``: a base class of :class:`~.player.Player` (the fields and the lock
are described in :mod:`.player`).

A change of speed is a seek to the frame playing now: the ring is flushed and the decoder
goes on from that frame through a fresh time-stretcher at the new speed, so the change is
heard at once (not after the seconds already buffered) and every frame in the ring is at
one speed, the one ``_position_locked`` counts media time with.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, List, Optional, Tuple

from .errors import PlaybackError
from .status import State
from .tempo import check_speed
from .track import Track


class SpeedControl:
    """``speed`` for the Player (fields set up by it)."""

    _cond: threading.Condition
    _speed: float
    _closed: bool
    _state: State
    _tracks: List[Track]

    if TYPE_CHECKING:  # the Player's

        def _position_locked(self) -> Tuple[int, float]: ...
        def _jump_locked(self, index: int, frame: int) -> Track: ...
        def _clamp(self, track: Track, seconds: float) -> int: ...

    @property
    def speed(self) -> float:
        """The tempo (1.0: as recorded; 0.5-3.0), the pitch kept. Setting it while playing
        takes effect at once; positions and durations stay in the track's own time. A live
        stream plays at its own pace: setting another speed then raises PlaybackError."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        value = check_speed(value)
        playing: Optional[Track] = None
        with self._cond:
            if value == self._speed:
                return
            over = self._closed or self._state in (State.FINISHED, State.STOPPED, State.FAILED)
            index, seconds = self._position_locked()
            track = self._tracks[index]
            if not over and track.duration is None:
                raise PlaybackError("a live stream plays at its own speed")
            self._speed = value
            if not over and self._state is not State.IDLE:
                playing = self._jump_locked(index, self._clamp(track, seconds))
        if playing is not None:
            playing.reader.interrupt()  # as a seek does: a read waiting on the network gives up
