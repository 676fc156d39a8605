"""Byte ranges of URLs for ``KitharaFileSystem.cat_file`` / ``cat_ranges``.

:func:`read_range` reads ``[start, end)`` (slice semantics) from one stream, also from a body
whose length is known only at its end. :func:`plan_ranges` merges nearby ranges of one URL
into blocks with fsspec's own ``merge_offset_ranges``; :class:`StreamPool` lends the streams
the ``cat_ranges`` threads read the blocks from.

Threads: the pool's lock guards its lists of streams only; it is never held while a stream
is opened, read or closed (each stream has its own lock, taken by the one thread using it).
"""

from __future__ import annotations

import bisect
import io
import operator
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from fsspec.utils import merge_offset_ranges

from .errors import StreamError
from .options import StreamOptions
from .stream import Stream

_PIECE = 8 << 20  # ranges are read in pieces of this size: memory stays near cache_budget
# The first request of a stream opened for a range elsewhere: it learns the length, and holds
# the 7 bytes kithara_io.open reads of a file up to 1 MiB to tell an HLS playlist (with
# fewer, that read would cost a request of min_fetch bytes nobody asked for).
PROBE = 16

Range = Tuple[str, Optional[int], Optional[int]]


def as_offset(value: Any, name: str) -> Optional[int]:
    """None or an integer (numpy integers too, as Dask and pandas pass them)."""
    if value is None:
        return None
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer or None, not {value!r}") from None


def per_range(values: Any, n: int, name: str) -> List[Optional[int]]:
    """``starts`` / ``ends`` of ``cat_ranges``: one value for every range, or a sequence
    (a list, a tuple, a numpy array) of ``n``."""
    try:
        single = as_offset(values, name)
    except TypeError:
        pass
    else:
        return [single] * n
    try:
        out = [as_offset(v, name) for v in values]
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    if len(out) != n:
        raise ValueError(f"{len(out)} {name} for {n} paths")
    return out


# -- one range from one stream ----------------------------------------------------------------


def range_tuning(start: Optional[int], end: Optional[int]) -> Dict[str, int]:
    """Stream options for reading one range: no tail prefetch. A range of at most
    ``max_fetch`` bytes is one request (the one open() makes, when it starts at 0) and
    nothing is fetched past it; the whole body, or a longer range, streams as usual."""
    lo = start or 0
    if lo >= 0 and end is not None and 0 < end - lo <= StreamOptions.max_fetch:
        return {
            "tail": 0,
            "first_fetch": end if lo == 0 else PROBE,
            "min_fetch": end - lo,
            "read_ahead": 1,
            "read_behind": 0,
        }
    return {"tail": 0, "first_fetch": StreamOptions.first_fetch if lo == 0 else PROBE}


def is_empty(start: Optional[int], end: Optional[int]) -> bool:
    """Whether ``[start, end)`` selects no byte of any file (known without its length)."""
    lo = start or 0
    return lo >= 0 and end is not None and 0 <= end <= lo


def block_tuning(block_size: int) -> Dict[str, int]:
    """Stream options for a file read in blocks (fsspec's block caches): each block one
    request (up to ``max_fetch``), nothing fetched that no block asked for."""
    return {
        "first_fetch": PROBE,
        "tail": 0,
        "min_fetch": max(1, min(block_size, StreamOptions.max_fetch)),
        "read_ahead": 1,
        "read_behind": 0,
    }


def read_range(f: Stream, start: Optional[int], end: Optional[int]) -> bytes:
    """Bytes ``[start, end)`` of ``f``; negative values count from the end, as in slices."""
    size = f.size
    if size is None:
        return _read_unsized(f, start, end)
    lo, hi, _ = slice(start, end).indices(size)
    out = bytearray(max(0, hi - lo))
    f.seek(lo)
    done = 0
    with memoryview(out) as view:
        while done < len(out):
            n = f.readinto(view[done : done + _PIECE])
            if n == 0:  # cannot happen before the size learned at open; guards the loop
                break
            done += n
    del out[done:]
    return bytes(out)


def _read_unsized(f: Stream, start: Optional[int], end: Optional[int]) -> bytes:
    """A body whose length is known only at its end: from the end means reading all of
    it; otherwise read up to ``end`` only."""
    lo = start or 0
    if lo < 0 or (end is not None and end < 0):
        _go_to(f, 0)
        return _read_exactly(f, None)[start:end]
    if end is not None and end <= lo:
        return b""
    _go_to(f, lo)
    return _read_exactly(f, None if end is None else end - lo)


def _go_to(f: Stream, pos: int) -> None:
    """Seek; a stream that cannot (read as it comes) moves forward by reading."""
    if f.seekable():
        f.seek(pos)
        return
    here = f.tell()
    if pos < here:
        raise io.UnsupportedOperation(f"cannot go back to byte {pos} of a stream that is at {here}")
    while here < pos:
        got = len(f.read(min(_PIECE, pos - here)))
        if got == 0:
            return
        here += got


def _read_exactly(f: Stream, n: Optional[int]) -> bytes:
    """``n`` bytes (all that is left if None), fewer only at the end; in pieces, so memory
    follows the bytes received."""
    out = bytearray()
    while n is None or len(out) < n:
        piece = f.read(_PIECE if n is None else min(_PIECE, n - len(out)))
        if not piece:
            break
        out += piece
    return bytes(out)


# -- many ranges: blocks of nearby ones ----------------------------------------------------


@dataclass(frozen=True)
class RangePlan:
    """``blocks`` to read; ``pieces[i]`` says where range ``i`` lies: ``(block, lo, hi)``
    (its bytes are ``block_bytes[lo:hi]``), or None for an empty range (no request)."""

    blocks: List[Range]
    pieces: List[Optional[Tuple[int, int, Optional[int]]]]


def plan_ranges(
    urls: Sequence[str], starts: Sequence[Optional[int]], ends: Sequence[Optional[int]], max_gap: int, max_block: int
) -> RangePlan:
    """Merge ranges of one URL whose gap is at most ``max_gap`` (and the merged block at
    most ``max_block``, a range longer than that stays whole) into blocks. Ranges that
    count from the end are blocks of their own: where they lie is known only with the size."""
    blocks: List[Range] = []
    pieces: List[Optional[Tuple[int, int, Optional[int]]]] = [None] * len(urls)
    mergeable: List[int] = []
    for i, (url, start, end) in enumerate(zip(urls, starts, ends)):
        if is_empty(start, end):
            continue
        if (start or 0) < 0 or (end is not None and end < 0):
            pieces[i] = (len(blocks), 0, None)
            blocks.append((url, start, end))
        else:
            mergeable.append(i)
    if not mergeable:
        return RangePlan(blocks, pieces)
    merged = merge_offset_ranges(
        [urls[i] for i in mergeable],
        [starts[i] or 0 for i in mergeable],
        [ends[i] for i in mergeable],
        max_gap=max_gap,
        max_block=max_block,
    )
    first = len(blocks)
    blocks.extend(zip(*merged))
    by_url: Dict[str, Tuple[List[int], List[int]]] = {}  # url -> (block starts, block indexes), sorted
    for b in range(first, len(blocks)):
        url, start, _ = blocks[b]
        found = by_url.setdefault(url, ([], []))
        found[0].append(start or 0)
        found[1].append(b)
    for i in mergeable:
        lo, end = starts[i] or 0, ends[i]
        block_starts, indexes = by_url[urls[i]]
        b = _covering(blocks, block_starts, indexes, lo, end)
        base = blocks[b][1] or 0
        pieces[i] = (b, lo - base, None if end is None else end - base)
    return RangePlan(blocks, pieces)


def _covering(blocks: List[Range], block_starts: List[int], indexes: List[int], lo: int, end: Optional[int]) -> int:
    """The block of one URL that covers ``[lo, end)`` (merge_offset_ranges makes one)."""
    k = bisect.bisect_right(block_starts, lo)
    while k > 0:
        k -= 1
        b = indexes[k]
        block_end = blocks[b][2]
        if block_end is None or (end is not None and end <= block_end):
            return b
    raise AssertionError(f"no merged block covers [{lo}, {end})")  # merge_offset_ranges covers all


# -- streams for the threads of one cat_ranges call -------------------------------------------


class StreamPool:
    """Idle streams by URL and tuning, shared by the threads of one ``cat_ranges`` call: a
    thread takes one (or opens a new one) for each block and gives it back. Closed on exit.
    Only a stream tuned for blocks of the same length is reused, so that each block is
    still one request of its own bytes. A stream that cannot seek (a body without a length,
    read as it comes) is not lent twice: it is closed after its read."""

    def __init__(self, open_stream: Callable[[str, Dict[str, int]], Stream]) -> None:
        self._open = open_stream
        self._lock = threading.Lock()  # guards _idle and _all
        self._idle: Dict[Tuple[str, Tuple[Tuple[str, int], ...]], List[Stream]] = {}
        self._all: List[Stream] = []

    def read(self, url: str, start: Optional[int], end: Optional[int], tuning: Dict[str, int]) -> bytes:
        key = (url, tuple(sorted(tuning.items())))
        with self._lock:
            idle = self._idle.get(key)
            stream = idle.pop() if idle else None
        if stream is None:
            stream = self._open(url, tuning)
            with self._lock:
                self._all.append(stream)
        reusable = False
        try:
            data = read_range(stream, start, end)
            reusable = stream.seekable()
            return data
        finally:
            if reusable:
                with self._lock:
                    self._idle.setdefault(key, []).append(stream)
            else:
                close_quietly(stream)

    def __enter__(self) -> "StreamPool":
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            streams, self._all, self._idle = self._all, [], {}
        for stream in streams:
            close_quietly(stream)


def close_quietly(stream: Stream) -> None:
    try:
        stream.close()
    except StreamError:  # its failure was already raised by (or returned for) a read
        pass
