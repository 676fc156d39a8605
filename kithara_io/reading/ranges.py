"""A set of byte positions stored as sorted, disjoint, non-adjacent half-open intervals."""

from __future__ import annotations

import bisect
from typing import Iterator, List, Optional, Tuple

Interval = Tuple[int, int]


class RangeSet:
    """Merged half-open intervals ``[start, end)``; every query is O(log n).

    Not thread-safe: the owner (``SparseCache``) guards it with its lock.
    """

    __slots__ = ("_starts", "_ends")

    def __init__(self, intervals: Optional[List[Interval]] = None) -> None:
        self._starts: List[int] = []
        self._ends: List[int] = []
        for start, end in intervals or ():
            self.add(start, end)

    def __iter__(self) -> Iterator[Interval]:
        return iter(zip(self._starts, self._ends))

    def __len__(self) -> int:
        return len(self._starts)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and list(self) == list(other)

    @property
    def total(self) -> int:
        """Number of bytes covered."""
        return sum(e - s for s, e in self)

    def copy(self) -> "RangeSet":
        clone = RangeSet()
        clone._starts = list(self._starts)
        clone._ends = list(self._ends)
        return clone

    def add(self, start: int, end: int) -> None:
        """Cover ``[start, end)``, merging with touching or overlapping intervals."""
        if end <= start:
            return
        # First interval whose end >= start (could merge), last whose start <= end.
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def remove(self, start: int, end: int) -> None:
        """Uncover ``[start, end)``."""
        if end <= start:
            return
        lo = bisect.bisect_right(self._ends, start)
        hi = bisect.bisect_left(self._starts, end)
        if lo >= hi:
            return
        keep_starts: List[int] = []
        keep_ends: List[int] = []
        if self._starts[lo] < start:
            keep_starts.append(self._starts[lo])
            keep_ends.append(start)
        if self._ends[hi - 1] > end:
            keep_starts.append(end)
            keep_ends.append(self._ends[hi - 1])
        self._starts[lo:hi] = keep_starts
        self._ends[lo:hi] = keep_ends

    def covered_until(self, pos: int) -> int:
        """End of the run of covered bytes starting at ``pos`` (``pos`` itself if uncovered)."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0 and self._ends[i] > pos:
            return self._ends[i]
        return pos

    def interval_at(self, pos: int) -> Optional[Interval]:
        """The interval containing ``pos``, or None."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i >= 0 and self._ends[i] > pos:
            return self._starts[i], self._ends[i]
        return None

    def next_start(self, pos: int) -> Optional[int]:
        """Start of the first interval beginning after ``pos``, or None."""
        i = bisect.bisect_right(self._starts, pos)
        return self._starts[i] if i < len(self._starts) else None

    def contains(self, start: int, end: int) -> bool:
        """True if every byte of ``[start, end)`` is covered (an empty range always is)."""
        return end <= start or self.covered_until(start) >= end

    def gaps(self, start: int, end: int) -> Iterator[Interval]:
        """The uncovered sub-intervals of ``[start, end)``, in order."""
        pos = start
        while pos < end:
            pos = self.covered_until(pos)
            if pos >= end:
                return
            nxt = self.next_start(pos)
            gap_end = end if nxt is None else min(nxt, end)
            yield pos, gap_end
            pos = gap_end
