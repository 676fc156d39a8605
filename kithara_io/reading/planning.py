"""Pure decisions of the engine: which slot, which bytes to fetch next, which fetch to keep.

Everything here is a function of plain data, so it is tested exhaustively without threads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Union

from .ranges import RangeSet


class Priority(enum.IntEnum):
    """Lower value is served first."""

    HIGH = 0
    LOW = 1

    @classmethod
    def parse(cls, value: Union["Priority", str]) -> "Priority":
        if isinstance(value, Priority):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(f"priority must be 'high' or 'low', not {value!r}") from None


SLOT_COUNT = 4


def slot_index(stream_priority: Priority, request_priority: Priority) -> int:
    """High/High=0, High/Low=1, Low/High=2, Low/Low=3; slots are served in that order."""
    return int(stream_priority) * 2 + int(request_priority)


def is_urgent(slot: int) -> bool:
    """Work of a High stream (slots 0-1) is dispatched at once, never throttled."""
    return slot < 2


@dataclass(frozen=True)
class FetchPlan:
    """Fetch ``[start, end)`` at the given request priority."""

    start: int
    end: int
    priority: Priority

    @property
    def length(self) -> int:
        return self.end - self.start


def first_missing(present: RangeSet, claimed: RangeSet, pos: int) -> int:
    """The first byte at or after ``pos`` that is neither present nor claimed by a fetch."""
    while True:
        nxt = max(present.covered_until(pos), claimed.covered_until(pos))
        if nxt == pos:
            return pos
        pos = nxt


def _gap_end(present: RangeSet, claimed: RangeSet, gap_start: int, limit: int) -> int:
    ends = [limit]
    for ranges in (present, claimed):
        nxt = ranges.next_start(gap_start)
        if nxt is not None:
            ends.append(nxt)
    return min(ends)


def run_before(present: RangeSet, claimed: RangeSet, start: int) -> int:
    """Length of the run of present-or-claimed bytes that ends exactly at ``start``."""
    pos = start
    for _ in range(len(present) + len(claimed) + 1):  # each step leaves one interval behind
        if pos <= 0:
            break
        found = [iv[0] for iv in (present.interval_at(pos - 1), claimed.interval_at(pos - 1)) if iv]
        if not found:
            break
        pos = min(found)
    return start - pos


def fetch_length(
    present: RangeSet,
    claimed: RangeSet,
    start: int,
    min_fetch: int,
    max_fetch: int,
    amortize: int = 0,
    need_end: int = 0,
    grow: bool = True,
) -> int:
    """Adaptive size: as long as the run of bytes just before ``start`` that are present or
    already being fetched, within bounds (``grow`` False: a reader that jumped, whose
    fetch the bytes others brought before it say nothing about).

    A sequential reader doubles its fetch size each time (throughput), also while the
    previous fetch is still running (pipelining); a fresh seek starts small (fast first byte).
    A continuing run asks for at least ``amortize`` bytes: enough that the request's own
    cost (its first-byte time) is a small part of the transfer (see LinkEstimate).
    A reader blocked on bytes up to ``need_end`` gets them in one request (up to
    ``max_fetch``): it returns only once all are in, so smaller first requests would only
    add round trips to its wait.
    """
    run = run_before(present, claimed, start) if grow else 0
    if run > 0:
        run = max(run, amortize)
    return max(min_fetch, min(max_fetch, max(run, need_end - start)))


def next_fetch(
    present: RangeSet,
    claimed: RangeSet,
    *,
    cursor: int,
    size: int,
    read_ahead: int,
    read_behind: int,
    min_fetch: int,
    max_fetch: int,
    amortize: int = 0,
    need_end: int = 0,
    grow: bool = True,
) -> Optional[FetchPlan]:
    """The next range one stream should fetch, or None when its windows are complete.

    First the earliest gap at or after the cursor within the read-ahead window (High);
    only when nothing is missing there, the earliest gap in the read-behind window
    (Low). Never a byte that is present or already claimed. ``need_end``: a reader waits
    for the bytes before it (see ``fetch_length``); ``min_fetch`` then counts from the
    cursor, so a read that starts in cached bytes asks for the rest of its ``min_fetch``,
    not ``min_fetch`` more. ``grow`` False: a reader that jumped (see ``fetch_length``).
    """
    cursor = max(0, min(cursor, size))
    ahead_limit = min(size, cursor + max(read_ahead, 1))
    start = first_missing(present, claimed, cursor)
    if start < ahead_limit:
        end = _gap_end(present, claimed, start, size)
        floor = min_fetch
        if need_end > start:  # a reader waits from the cursor on: its min_fetch counts from there
            floor = max(1, min_fetch - (start - cursor))
        length = fetch_length(present, claimed, start, floor, max_fetch, amortize, need_end, grow)
        return FetchPlan(start, min(end, start + length), Priority.HIGH)
    behind_limit = max(0, cursor - read_behind)
    pos = behind_limit
    while pos < cursor:
        start = first_missing(present, claimed, pos)
        if start >= cursor:
            break
        end = min(_gap_end(present, claimed, start, cursor), start + max_fetch)
        return FetchPlan(start, end, Priority.LOW)
    return None


def tail_fetch(present: RangeSet, claimed: RangeSet, *, size: int, tail: int) -> Optional[FetchPlan]:
    """The last ``tail`` bytes, which containers read at open (Ogg duration, ID3v1, ...)."""
    start = first_missing(present, claimed, max(0, size - tail))
    if start >= size:
        return None
    return FetchPlan(start, _gap_end(present, claimed, start, size), Priority.HIGH)


def keep_running(fetch_pos: int, fetch_end: int, target: int, soon: int) -> bool:
    """After a seek to ``target``: is a running fetch now at ``fetch_pos`` still worth it?

    Yes if it covers the target and will reach it within ``soon`` bytes (sooner than a new
    request would), or if it is nearly done anyway.
    """
    if fetch_pos <= target < fetch_end and target - fetch_pos <= soon:
        return True
    return fetch_end - fetch_pos <= soon


# -- what the reader and the link look like (pure state, updated under the stream's lock) --

_SMALL_STEP_BACK = 256 * 1024  # decoders step back a few frames; farther is a random jump
_AMORTIZE = 20  # a request's first-byte time is about 1/20 of its transfer time
_AMORTIZE_TIME = 0.05  # ... as long as that transfer takes no longer than this
_MIN_TRANSFER = 0.001  # a body received faster than this tells only a lower bound of the rate
_RUN_HERE_EXTRA = 0.0005  # a reader runs a fetch itself if its bytes past the read take < 0.5 ms
# Below this rate one body fills the link, and read-ahead bodies go one after the other
# (LinkEstimate.in_order); above it (loopback, fast LANs) the client's CPU bounds a body, and
# a second one received on another core adds to it (seq on loopback: 5-8% slower in order).
_IN_ORDER_RATE = 400e6


class LinkEstimate:
    """Smoothed time-to-first-byte and bandwidth, to judge what 'soon' means."""

    def __init__(self) -> None:
        self.ttfb = 0.05
        self.bandwidth = 1e6
        self.measured = False  # bandwidth is a guess until a body of 64 KiB or more was timed
        # Bytes over whole requests, first byte included: what the link surely delivered.
        # Slower than ``bandwidth`` behind a far first byte; faster where bodies come with
        # their headers, which ``bandwidth`` counts as ``_MIN_TRANSFER`` of transfer.
        self.delivered = 0.0
        self._answered = False  # ttfb is a guess until the first answer

    def record(self, ttfb: float, nbytes: int, duration: float) -> None:
        """One request: ``ttfb`` to its answer, then ``nbytes`` received, ``duration`` in
        all. The bandwidth is the transfer's, after the first byte: a 64 KiB body behind a
        10 ms first byte is not a 6.5 MB/s link (the first-byte time is counted apart). A
        transfer under ``_MIN_TRANSFER`` (the body came with its headers) says only that the
        link is at least that fast."""
        self.ttfb = 0.7 * self.ttfb + 0.3 * ttfb if self._answered else ttfb
        self._answered = True
        if nbytes >= 64 * 1024 and duration > 0:
            rate = nbytes / max(duration - ttfb, _MIN_TRANSFER)
            delivered = nbytes / duration
            if self.measured:
                self.bandwidth = 0.7 * self.bandwidth + 0.3 * rate
                self.delivered = 0.7 * self.delivered + 0.3 * delivered
            else:
                self.bandwidth, self.delivered = rate, delivered
            self.measured = True

    def distrust(self) -> None:
        """The link no longer delivers at the measured rate (a piece overran): a guess again
        until the next body is timed."""
        self.measured = False

    def run_here_slack(self) -> int:
        """Bytes past a read that its reader may wait for to fetch it itself (no hand-offs).
        The link moves at least ``delivered``: on loopback, where every 64 KiB body comes
        with its headers and ``bandwidth`` reads 65 MB/s, a random read's 64 KiB fetch that
        reaches ~60 KB past it is still run by its reader, not handed to the pool (~1 ms)."""
        return int(max(self.bandwidth, self.delivered) * _RUN_HERE_EXTRA)

    def amortizing_bytes(self) -> int:
        """The length of a request whose first-byte time is ~5% of its transfer time, but
        at most ``_AMORTIZE_TIME`` of transfer (0 while the link is not measured): on a fast
        link the sequential reader's requests reach ``max_fetch`` at once instead of paying
        a request per doubling; on a slow one, sizes grow as before (a big request running
        beside the one the reader waits on would halve the bandwidth it gets)."""
        if not self.measured:
            return 0
        return int(self.bandwidth * min(self.ttfb * _AMORTIZE, _AMORTIZE_TIME))

    def in_order(self, nbytes: int, floor: int) -> bool:
        """Should a body of ``nbytes`` have the link to itself until its last first-byte
        time of transfer (``soon_bytes``), the stream's next read-ahead request waiting?"""
        return self.measured and self.bandwidth < _IN_ORDER_RATE and nbytes > self.soon_bytes(floor)

    def soon_bytes(self, floor: int) -> int:
        """Bytes a running fetch delivers in the time a new request needs for its first byte."""
        return max(floor, int(self.bandwidth * self.ttfb))


class AccessPattern:
    """How the reader moves, to size read-ahead like an OS page cache does: a random reader
    gets only what it asks for (no wasted fetches to cancel), a sequential one a window
    that doubles with its run up to ``read_ahead``. Gaps behind the cursor are filled only
    once the reader has been seen stepping back (FLAC and MP3 decoders do)."""

    def __init__(self) -> None:
        self.cursor = 0
        self.end = 0  # end of the previous read
        self.run = 0  # bytes read contiguously up to ``end``
        self.went_back = False

    def record(self, pos: int, end: int, read_behind: int) -> None:
        if self.cursor <= pos <= self.end:
            self.run += max(0, end - self.end)
        elif pos < self.cursor and self.cursor - pos < min(read_behind, _SMALL_STEP_BACK):
            self.went_back = True  # a decoder re-reading a little: keep the run
        else:  # a jump: sequential only once the next read continues this one
            self.run = 0
            self.went_back = False
        self.cursor, self.end = pos, max(end, pos)

    def read_ahead(self, limit: int, floor: int) -> int:
        return max(self.end - self.cursor, min(limit, max(floor, 2 * self.run)))
