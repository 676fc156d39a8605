"""Many byte ranges of one remote stream in one call: ``Stream.read_ranges``.

Ranges whose gap is at most ``max_gap`` (1 MiB by default, as object_store's
``get_ranges`` coalesces) are merged into spans; the bytes of the spans that are neither held
nor being fetched become fetch commands of the stream (its priority, the Downloader's slots
and places, request priority High: the caller waits for them), all submitted at once so they
run concurrently; each range is then copied out of the cache. The read cursor and the
access pattern are not touched: read-ahead and epoch cancel go on as if nothing happened.
A far read of another thread may cancel these fetches (epoch cancel): a range whose bytes
nobody fetches any more is demanded again, as a plain read would.

Memory: the spans are taken in batches of pieces whose cache blocks fill at most a quarter
of ``cache_budget`` (pieces are at most ``max_fetch`` long); the next batch is fetched while
the ranges of one are copied out, so the cache holds at most half the budget for them. Only
the returned ``bytes`` (what the caller asked for) are not bounded by it. The batch being
copied out (with the next one, when it follows at once) is the cache's window (never
evicted) until the reader's next read sets it again: else eviction, which drops the blocks
farthest from the window first, would drop the bytes a range waits for to make room for its
own next piece, again and again.

Threads: runs on the caller's thread. The planning runs under the stream's ``_lock``, as
``FetchScheduling`` does (lock order: stream -> cache -> downloader); waits happen in the
cache with no lock of the stream held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from ..engine.downloader import FetchCommand
from ..options import StreamOptions
from ..stats import StreamCounters
from .blocks import BLOCK_SIZE, joined
from .cache import Wait
from .planning import FetchPlan, Priority
from .schedule import FetchScheduling

MAX_GAP = 1 << 20  # ranges closer than this are one request (object_store's coalesce default)

Span = Tuple[int, int]


# -- pure planning ---------------------------------------------------------------------------


def coalesce(ranges: Sequence[Span], max_gap: int) -> List[Span]:
    """The non-empty ranges merged into sorted spans where the gap between them is at most
    ``max_gap`` bytes (overlapping and touching ones always)."""
    spans: List[Span] = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if spans and lo - spans[-1][1] <= max_gap:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    return spans


def split(spans: Sequence[Span], max_piece: int) -> List[Span]:
    """Each span cut into pieces of at most ``max_piece`` bytes (equal ones, not a short tail)."""
    pieces: List[Span] = []
    for lo, hi in spans:
        count = -(-(hi - lo) // max_piece)
        step = -(-(hi - lo) // count)
        pieces.extend((p, min(hi, p + step)) for p in range(lo, hi, step))
    return pieces


def blocks_touched(piece: Span, block_size: int = BLOCK_SIZE) -> int:
    return (piece[1] - 1) // block_size - piece[0] // block_size + 1


def batches(pieces: Sequence[Span], max_blocks: Optional[int], block_size: int = BLOCK_SIZE) -> List[List[Span]]:
    """Consecutive pieces grouped so that the cache blocks of a group number at most
    ``max_blocks`` (None: one group); a group holds at least one piece."""
    if max_blocks is None:
        return [list(pieces)] if pieces else []
    groups: List[List[Span]] = []
    used = 0
    for piece in pieces:
        cost = blocks_touched(piece, block_size)
        if not groups or used + cost > max_blocks:
            groups.append([])
            used = 0
        groups[-1].append(piece)
        used += cost
    return groups


def batch_limits(options: StreamOptions, block_size: int = BLOCK_SIZE) -> Tuple[int, Optional[int]]:
    """``(max_piece, max_blocks)`` for a stream's options: a quarter of its budget per batch."""
    if options.cache_budget is None:
        return options.max_fetch, None
    max_blocks = max(1, options.cache_budget // block_size // 4)
    return max(1, min(options.max_fetch, (max_blocks - 1) * block_size or block_size)), max_blocks


# -- the reader's side ------------------------------------------------------------------------


class RangeReads(FetchScheduling):
    """RemoteReader's ``read_ranges``, over its scheduling (``_submit_locked``, ``_demand``,
    ``_hand_over``) and the state below (set in its ``__init__``)."""

    _counts: StreamCounters
    _forked: bool

    if TYPE_CHECKING:  # RemoteReader's own

        @property
        def size(self) -> int: ...

        def _attach_after_fork(self) -> None: ...

        def read_bytes(self, pos: int, n: int) -> bytes: ...

    def read_ranges(self, ranges: Sequence[Span], max_gap: int = MAX_GAP) -> List[bytes]:
        """The bytes of each ``[start, end)`` (``0 <= start <= end <= size``), in the order given."""
        if self._forked:
            self._attach_after_fork()
        _ = self.size  # raises the stored failure, as a read does
        if not self._source.supports_ranges:
            return [self.read_bytes(lo, hi - lo) if hi > lo else b"" for lo, hi in ranges]
        max_piece, max_blocks = batch_limits(self._opt)
        groups = batches(split(coalesce(ranges, max_gap), max_piece), max_blocks)
        order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
        parts: Dict[int, List[bytes]] = {}
        pending: List[int] = []  # ranges begun before the group's end, not yet copied to theirs
        taken = 0  # ranges of ``order`` moved to pending
        if groups:
            self._fetch(groups[0])
        for k, group in enumerate(groups):
            if k + 1 < len(groups):
                self._fetch(groups[k + 1])  # in flight while this group is copied out
            first, last = group[0][0], group[-1][1]
            # Not evicted while copied out (see above); nor the next group's bytes, if near.
            near = k + 1 < len(groups) and groups[k + 1][0][0] - last <= BLOCK_SIZE
            self._cache.set_window(first, groups[k + 1][-1][1] if near else last)
            while taken < len(order) and ranges[order[taken]][0] < last:
                pending.append(order[taken])
                taken += 1
            for i in pending:
                lo, hi = max(ranges[i][0], first), min(ranges[i][1], last)
                if lo < hi:
                    parts.setdefault(i, []).append(self._wait_bytes(lo, hi))
            pending = [i for i in pending if ranges[i][1] > last]
        served = sum(hi - lo for lo, hi in ranges if hi > lo)
        with self._lock:
            self._counts.bytes_served += served
        out = []
        for i in range(len(ranges)):
            got = parts.get(i, [])
            out.append(got[0] if len(got) == 1 else b"".join(got))
        return out

    def _fetch(self, pieces: List[Span]) -> None:
        """Submit fetches for the bytes of ``pieces`` nobody holds or fetches."""
        with self._lock:
            if self._closed or self._error is not None:
                return  # the wait raises
            view = self._cache.view()
            held = view.present.copy()
            for lo, hi in view.claimed:
                held.add(lo, hi)
            for lo, hi in pieces:
                for start, end in list(held.gaps(lo, hi)):
                    if self._out_of_reach_locked(start):
                        continue  # offline: the wait's demand fails the stream with the gap
                    self._submit_locked(FetchPlan(start, end, Priority.HIGH))
                    held.add(start, end)

    def _wait_bytes(self, lo: int, hi: int) -> bytes:
        """``[lo, hi)`` once present; demanded again if nobody fetches it (cancelled, evicted)."""
        while True:
            ready, data = self._cache.read_when_present(lo, hi - lo, joined)
            if ready is Wait.READY and data is not None:
                return data
            here: Optional[FetchCommand] = self._demand(lo, hi)
            if here is not None:
                self._hand_over(here, inline=True)
