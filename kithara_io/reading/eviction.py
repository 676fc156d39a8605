"""A cache's budget: the bytes its blocks hold, and which blocks go when it is full (a pure
choice over block indexes, the reader's window and the claims), dropping them."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Protocol, Tuple

from .blocks import POOL, Block, held_bytes
from .ranges import RangeSet


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


class Claimed(Protocol):
    """A fetch's claim as eviction sees it: what it writes, or was granted to write."""

    start: int
    end: int
    granted: int


class Budget:
    """The bytes a cache's blocks hold (``held``: a writable block all of its size, a Pieces
    block its pieces) against ``limit`` (None: unbounded), and making room. The cache
    updates ``held`` and calls in under its lock."""

    def __init__(self, limit: Optional[int], block_size: int) -> None:
        self.limit = limit
        self.held = 0
        self._block_size = block_size

    def over(self, more: int = 0) -> bool:
        """Would ``more`` bytes pass the limit?"""
        return self.limit is not None and self.held + more > self.limit

    def evict(
        self,
        blocks: Dict[int, Block],
        present: RangeSet,
        more: int,
        window: Tuple[int, int],
        claims: Iterable[Claimed],
    ) -> bool:
        """Drop blocks in :func:`eviction_order` (their bytes no longer present, writable
        ones to the pool) until the held bytes fit the limit less 1/16 of it and leave room
        for ``more`` (or nothing more may go): the scan then runs once every few blocks, not
        at every commit. True if any block went."""
        limit = self.limit
        if limit is None:  # keeps everything
            return False
        bs = self._block_size
        target = limit - limit // 16
        spans = [(c.start, max(c.end, c.granted)) for c in claims]
        dropped = False
        for i in eviction_order(blocks, bs, window, spans):
            if self.held <= target and self.held + more <= limit:
                break
            present.remove(i * bs, (i + 1) * bs)
            block = blocks.pop(i)
            self.held -= held_bytes(block)
            POOL.give([block])  # outside every claim: no fetch writes it
            dropped = True
        return dropped
