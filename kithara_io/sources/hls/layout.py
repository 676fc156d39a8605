"""Byte layout: where each part (init segment, media segments) sits in the stream.

Pure. Part ``i`` occupies ``[offset_i, offset_i + size_i)``; a size is known from
``EXT-X-BYTERANGE`` or learned later (a response's length), and may change when the part is
re-planned on another variant. An offset is known once every size before it is. ``locate``
never claims an end that is not proven: a position past the known prefix lands in the first
part of unknown size, and only when every size is known is a position at the total the end.
"""

from __future__ import annotations

import bisect
import itertools
from typing import List, Optional, Tuple


class Layout:
    def __init__(self) -> None:
        self._sizes: List[Optional[int]] = []
        self._ends: Optional[List[int]] = None  # cached prefix sums of the known prefix

    def __len__(self) -> int:
        return len(self._sizes)

    def append(self, size: Optional[int] = None) -> int:
        self._sizes.append(size)
        self._ends = None
        return len(self._sizes) - 1

    def size(self, index: int) -> Optional[int]:
        return self._sizes[index]

    def set_size(self, index: int, size: Optional[int]) -> None:
        if self._sizes[index] != size:
            self._sizes[index] = size
            self._ends = None

    def _prefix(self) -> List[int]:
        if self._ends is None:
            known: List[int] = []
            for size in self._sizes:  # up to the first size not known yet
                if size is None:
                    break
                known.append(size)
            self._ends = list(itertools.accumulate(known))
        return self._ends

    def offset(self, index: int) -> Optional[int]:
        """Start of part ``index``; None while a size before it is unknown."""
        ends = self._prefix()
        if index == 0:
            return 0
        return ends[index - 1] if index - 1 < len(ends) else None

    def total(self) -> Optional[int]:
        """Length of the whole stream once every size is known (and there is a part)."""
        ends = self._prefix()
        if len(ends) != len(self._sizes):
            return None
        return ends[-1] if ends else 0

    def locate(self, pos: int) -> Optional[Tuple[int, int]]:
        """``(part, offset in part)`` for stream position ``pos``. Past the known prefix:
        the first part of unknown size (its size decides). None: past every part, which is
        the end only if ``total()`` is known (else more parts may still come)."""
        ends = self._prefix()
        index = bisect.bisect_right(ends, pos)
        if index >= len(self._sizes):
            return None
        start = ends[index - 1] if index > 0 else 0
        return index, pos - start

    def known_end(self) -> int:
        """End of the known prefix: every byte before it has a known place."""
        ends = self._prefix()
        return ends[-1] if ends else 0
