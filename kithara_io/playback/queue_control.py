"""The Player's queue controls: next/previous, repeat, shuffle, the play order and
``more_coming`` (a mixin of :class:`~.player.Player`; the order itself is
:class:`.queue.PlayOrder`). Every field is the Player's, guarded by its ``_cond``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, List, Optional, Tuple

from .queue import PlayOrder
from .status import State

if TYPE_CHECKING:
    from .track import Track


class QueueControl:
    """What the caller's thread asks of the play order (see the module doc)."""

    _cond: threading.Condition
    _order: PlayOrder
    _closed: bool
    _error: Optional[BaseException]
    _state: State
    _decoder_eof: bool

    if TYPE_CHECKING:  # the Player's

        def _position_locked(self) -> Tuple[int, float]: ...
        def _jump_locked(self, index: int, frame: int) -> Track: ...

    def next(self) -> bool:
        """Jump to the start of the next track in the play order (also when repeating one
        track); False at the last one (unless repeating the playlist) or once over."""
        return self._jump_to(True)

    def previous(self) -> bool:
        """Jump to the start of the previous track; at the first one (unless repeating the
        playlist) to the start of the current one. False once playback is over."""
        return self._jump_to(False)

    @property
    def more_coming(self) -> bool:
        """True while the caller is still enqueuing: at the end of the last track enqueued so
        far playback waits for the next instead of finishing (set it before :meth:`play`
        when tracks are enqueued while the first plays; clear it after the last)."""
        return self._order.more_coming

    @more_coming.setter
    def more_coming(self, on: bool) -> None:
        with self._cond:
            self._order.more_coming = bool(on)
            self._cond.notify_all()

    @property
    def repeat(self) -> str:
        """``"off"``, ``"track"`` (the current one again and again) or ``"playlist"``."""
        with self._cond:
            return self._order.repeat

    @repeat.setter
    def repeat(self, mode: str) -> None:
        with self._cond:
            self._order.repeat = mode
            if self._error is None:
                self._decoder_eof = False  # a last track that ended may now be followed
            self._cond.notify_all()

    @property
    def shuffle(self) -> bool:
        """True: the tracks after the current one play in a random order."""
        with self._cond:
            return self._order.shuffle

    @shuffle.setter
    def shuffle(self, on: bool) -> None:
        with self._cond:
            self._order.set_shuffle(bool(on), self._position_locked()[0])

    @property
    def order(self) -> List[int]:
        """The play order: indices into :attr:`tracks`."""
        with self._cond:
            return self._order.order

    # -- internals (self._cond held where the name says so) -------------------------------
    def _jump_to(self, forward: bool) -> bool:
        """To the start of the next (previous) track in the play order; see next()."""
        with self._cond:
            if self._closed or self._error is not None or self._state in (State.FINISHED, State.STOPPED, State.FAILED):
                return False
            index = self._position_locked()[0]
            target = self._order.following(index, manual=True) if forward else self._order.preceding(index)
            if target is None and forward:
                return False
            decoding = self._jump_locked(index if target is None else target, 0)
        decoding.reader.interrupt()
        return True
