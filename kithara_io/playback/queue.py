"""PlayOrder: which track follows which (shuffle, repeat). Pure; the Player guards it with
its condition (the decoder thread asks what follows, the caller's thread changes the modes).

Tracks are named by their index in the Player's list (the order they were enqueued in).
Shuffle reorders the tracks after the current one (those already played keep their place);
turning it off returns to the enqueued order. ``repeat``: ``"off"``, ``"track"`` (the current
track again and again; :meth:`following` with ``manual`` still moves on, as a "next" key
does) or ``"playlist"`` (after the last, the first). ``more_coming``: tracks are still
being appended, so nothing follows the last one yet (not even the first, repeating).
"""

from __future__ import annotations

import random
from typing import List, Optional

REPEAT_MODES = ("off", "track", "playlist")


class PlayOrder:
    def __init__(self, rng: Optional[random.Random] = None) -> None:
        self._order: List[int] = [0]
        self._rng = rng or random.Random()
        self.shuffle = False
        self.more_coming = False
        self._repeat = "off"

    @property
    def order(self) -> List[int]:
        return list(self._order)

    @property
    def repeat(self) -> str:
        return self._repeat

    @repeat.setter
    def repeat(self, mode: str) -> None:
        if mode not in REPEAT_MODES:
            raise ValueError(f"repeat must be one of {', '.join(REPEAT_MODES)}, not {mode!r}")
        self._repeat = mode

    def append(self, current: int) -> int:
        """A track was added (the next index); shuffled, it goes anywhere after ``current``."""
        index = len(self._order)
        if self.shuffle:
            self._order.insert(self._rng.randint(self._order.index(current) + 1, index), index)
        else:
            self._order.append(index)
        return index

    def set_shuffle(self, on: bool, current: int) -> None:
        self.shuffle = on
        if on:
            cut = self._order.index(current) + 1
            rest = self._order[cut:]
            self._rng.shuffle(rest)
            self._order[cut:] = rest
        else:
            self._order.sort()

    def following(self, index: int, *, manual: bool = False) -> Optional[int]:
        """The track after ``index``; None at the end (repeat off)."""
        if self._repeat == "track" and not manual:
            return index
        place = self._order.index(index) + 1
        if place < len(self._order):
            return self._order[place]
        return self._order[0] if self._repeat == "playlist" and not self.more_coming else None

    def preceding(self, index: int) -> Optional[int]:
        """The track before ``index``; None at the first (repeat off)."""
        place = self._order.index(index)
        if place > 0:
            return self._order[place - 1]
        return self._order[-1] if self._repeat == "playlist" else None
