"""Which blocks a full cache drops: a pure choice over block indexes, window and claims."""

from __future__ import annotations

from typing import Iterable, List, Tuple


def eviction_order(
    blocks: Iterable[int], block_size: int, window: Tuple[int, int], claims: Iterable[Tuple[int, int]]
) -> List[int]:
    """The blocks that may go, farthest from the reader's ``window`` (``[lo, hi)``) first.

    A block that overlaps the window, or any claim (``[start, end)`` a fetch still writes or
    was granted), is never offered: a reader is about to read it, or a fetch writes into it.
    """
    lo, hi = window
    busy = [(start // block_size, (end - 1) // block_size) for start, end in claims]
    distance = {}  # victim block -> how far it lies outside the window
    for i in blocks:
        if lo < (i + 1) * block_size and i * block_size < hi:
            continue
        for first, last in busy:
            if first <= i <= last:
                break
        else:
            distance[i] = lo - (i + 1) * block_size if (i + 1) * block_size <= lo else i * block_size - hi
    return sorted(distance, key=distance.__getitem__, reverse=True)
