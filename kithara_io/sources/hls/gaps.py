"""Pure decisions of the HLS reader: which bytes of a part to fetch next, what to evict.

``next_gap`` works on plain data: the ranges of a part already stored, its size (None while
unknown) and the ``(next byte, end)`` claims of the fetches queued or running for it.
"""

from __future__ import annotations

from typing import Dict, Hashable, Iterable, List, Optional, Sequence, Tuple, TypeVar

from ...reading.ranges import RangeSet

K = TypeVar("K", bound=Hashable)  # a part's key

Claim = Tuple[int, Optional[int]]  # (next byte the fetch writes, its end; None: the part's end)


def next_gap(
    present: Optional[RangeSet], size: Optional[int], claims: Sequence[Claim], start: int, end: int
) -> Optional[Tuple[int, int]]:
    """The first range within ``[start, end)`` that is neither stored nor claimed, cut at
    the next stored byte, the next claim and the part's end; None if there is none, or if
    the size is unknown while a fetch runs (its first answer tells where the part ends)."""
    if size is None and claims:
        return None
    pos = start
    while True:
        if present is not None:
            pos = present.covered_until(pos)
        covering = [c for c in claims if c[0] <= pos and (c[1] is None or pos < c[1])]
        if not covering:
            break
        if any(c[1] is None for c in covering):
            return None
        pos = max(c[1] for c in covering if c[1] is not None)
    stop = end if size is None else min(end, size)
    if pos >= stop:
        return None
    bounds = [c[0] for c in claims if c[0] > pos]
    following = present.next_start(pos) if present is not None else None
    if following is not None:
        bounds.append(following)
    return pos, min([stop] + bounds)


def evictions(held: Dict[K, int], order: Dict[K, int], cursor: int, keep: Iterable[K], budget: int) -> List[K]:
    """Parts to drop, farthest from the cursor first, until what is held fits ``budget``.
    ``order``: plan index of each part (parts no longer planned are the farthest)."""
    total = sum(held.values())
    protected = set(keep)
    out: List[K] = []
    for key in sorted((k for k in held if k not in protected), key=lambda k: -abs(order.get(k, 1 << 40) - cursor)):
        if total <= budget:
            break
        out.append(key)
        total -= held[key]
    return out
