"""SparseCache: the downloaded bytes of one resource, and who is about to download the rest.

Ownership: one ``threading.Condition`` guards everything here. Fetch threads write into the
regions they have claimed *without* the lock (nobody else reads or writes an unpresent,
claimed region) and take the lock only to commit. Readers wait on the condition for
"range present", "end proven", "failed" or "closed": every state change notifies, so no
waiter polls and no wait has a timeout. A commit wakes the readers only once the range one
of them waits for is complete (a 1 MiB read is not woken for every piece of it).

Blocks are recycled through one process-wide pool (:data:`_POOL`, its own lock): an evicted
block, and every block of a cache whose fetches have all stopped (``recycle``), serves the
next block any stream needs, already faulted in.

Lock order: a caller may hold its own lock when calling in here; nothing in here calls out.
"""

from __future__ import annotations

import enum
import mmap
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, TypeVar, Union

from .errors import StreamClosedError, StreamError
from .ranges import RangeSet

BLOCK_SIZE = 1 << 20
Block = Union[bytearray, mmap.mmap, bytes]  # bytes: a whole block as a body handed it over
T = TypeVar("T")


class Wait(enum.Enum):
    """Why ``wait_for`` returned without raising."""

    READY = "ready"  # every byte of the range is present
    UNCLAIMED = "unclaimed"  # a missing byte is not being fetched: the caller must schedule


@dataclass(frozen=True)
class CacheView:
    """A consistent snapshot of what is present and claimed, for planning: taken under the
    cache's lock, used without it (bytes that arrive meanwhile only shrink the gaps)."""

    present: RangeSet
    claimed: RangeSet
    claims: Dict[int, Tuple[int, int]]  # fetch id -> (next byte it writes, end)
    size: Optional[int]


@dataclass
class _Claim:
    start: int  # next byte the fetch will write
    end: int  # the claim ends here (exclusive); lowered when the fetch is cancelled
    granted: int  # end of the buffer handed out by write_buffer, never released early


class SparseCache:
    """Present byte ranges over a store of fixed-size blocks, plus per-fetch claims."""

    def __init__(self, block_size: int = BLOCK_SIZE, budget: Optional[int] = None) -> None:
        self._cond = threading.Condition()
        self._block_size = block_size
        self._budget = budget  # bytes of blocks kept; None: unbounded
        self._window = (0, 0)  # never evicted: the reader's neighbourhood
        self._blocks: Dict[int, Block] = {}
        self._needs: Dict[int, Tuple[int, int]] = {}  # waiting readers: token -> [pos, end)
        self._present = RangeSet()
        self._claims: Dict[int, _Claim] = {}
        self._size: Optional[int] = None
        self._error: Optional[BaseException] = None
        self._closed = False
        self._interrupt = False  # one-shot: the next wait of a reader raises InterruptedError

    def _after_fork_in_child(self) -> None:
        """In a forked child: the fetches and waiters of the parent are gone (their claims
        with them), and a lock one of them held would never be released."""
        self._cond = threading.Condition()
        self._claims.clear()
        self._needs = {}

    # -- state -------------------------------------------------------------------------
    @property
    def size(self) -> Optional[int]:
        with self._cond:
            return self._size

    def set_size(self, size: int) -> None:
        with self._cond:
            self._size = size
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """Record a permanent failure; every waiter raises it."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def interrupt(self) -> None:
        """The reader waiting for bytes now (else the next one that has to wait) raises
        ``InterruptedError`` once; nothing else changes."""
        with self._cond:
            self._interrupt = True
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiter with ``StreamClosedError``. The bytes stay until ``recycle``:
        a fetch still stopping may be writing into a block."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def recycle(self) -> None:
        """After ``close``, once no fetch can write any more: hand the blocks to the pool."""
        with self._cond:
            blocks, self._blocks = list(self._blocks.values()), {}
            self._present = RangeSet()
        _POOL.give(blocks)

    def present(self) -> RangeSet:
        with self._cond:
            return self._present.copy()

    def view(self) -> CacheView:
        """A snapshot of the present and claimed ranges (see CacheView)."""
        with self._cond:
            claimed = RangeSet()
            for claim in self._claims.values():
                claimed.add(claim.start, claim.end)
            claims = {i: (c.start, c.end) for i, c in self._claims.items()}
            return CacheView(self._present.copy(), claimed, claims, self._size)

    # -- waiting -----------------------------------------------------------------------
    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise StreamClosedError("stream closed while reading")
        if self._error is not None:
            raise self._error.with_traceback(None)  # see Stream._check_failed

    def wait_for_size(self, timeout: Optional[float] = None) -> Optional[int]:
        """Block until the total length is known (or raise the failure); None if
        ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._size is None:
                self._raise_if_unusable()
                if deadline is None:
                    self._wait_locked()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._size

    def set_window(self, start: int, end: int) -> None:
        """Bytes in ``[start, end)`` are never evicted (the reader is about to need them)."""
        with self._cond:
            self._window = (start, end)

    @property
    def bytes_held(self) -> int:
        """Memory held in blocks (what the budget bounds)."""
        with self._cond:
            return len(self._blocks) * self._block_size

    def read_when_present(self, pos: int, n: int, consume: Callable[[List[memoryview]], T]) -> Tuple[Wait, Optional[T]]:
        """Once ``[pos, pos+n)`` is present, hand its pieces (views of the blocks, valid only
        during the call) to ``consume`` and return ``(READY, its result)``; or return
        ``(UNCLAIMED, None)`` if nobody fetches a missing byte of it. Waiting and consuming
        happen under one lock hold, so eviction cannot slip in between."""
        end = pos + n
        with self._cond:
            while True:
                self._raise_if_unusable()
                missing = self._present.covered_until(pos)
                if missing >= end:
                    return Wait.READY, consume(self._views(pos, n))
                if not self._is_claimed(missing):
                    return Wait.UNCLAIMED, None
                if self._interrupt:
                    self._interrupt = False
                    raise InterruptedError("read interrupted (Stream.interrupt)")
                self._wait_locked((pos, end))

    def _wait_locked(self, need: Optional[Tuple[int, int]] = None) -> None:
        """Wait for the next state change; a reader waiting for ``need`` (``[pos, end)``)
        is woken by a commit only once that range is present."""
        token = id(need)
        if need is not None:
            self._needs[token] = need
        try:
            self._cond.wait()
        finally:
            if need is not None:
                del self._needs[token]

    def _is_claimed(self, pos: int) -> bool:
        return any(c.start <= pos < c.end for c in self._claims.values())

    # -- reading -----------------------------------------------------------------------
    def _views(self, pos: int, n: int) -> List[memoryview]:
        views, bs = [], self._block_size
        while n > 0:
            index, offset = divmod(pos, bs)
            take = min(bs - offset, n)
            views.append(memoryview(self._blocks[index])[offset : offset + take])
            pos += take
            n -= take
        return views

    # -- claims and writing ------------------------------------------------------------
    def claim(self, fetch_id: int, start: int, end: int) -> None:
        """Reserve ``[start, end)`` for one fetch; planning never hands it out again."""
        with self._cond:
            self._claims[fetch_id] = _Claim(start, end, start)

    def extend_claim(self, fetch_id: int, end: int) -> None:
        """A fetch will deliver more than it asked for (a server that ignores Range)."""
        with self._cond:
            claim = self._claims[fetch_id]
            claim.end = max(claim.end, end)

    def shrink_claim(self, fetch_id: int, end: int) -> None:
        """Give back the claimed bytes from ``end`` on (cancel, or a shorter answer)."""
        with self._cond:
            claim = self._claims.get(fetch_id)
            if claim is not None:
                claim.end = max(claim.granted, claim.start, min(claim.end, end))
                self._cond.notify_all()

    def release(self, fetch_id: int) -> None:
        """The fetch is over: its unwritten claim becomes fetchable again."""
        with self._cond:
            if self._claims.pop(fetch_id, None) is not None:
                self._cond.notify_all()

    def claim_progress(self, fetch_id: int) -> Optional[tuple]:
        """``(next_byte, end)`` of a claim, or None."""
        with self._cond:
            claim = self._claims.get(fetch_id)
            return None if claim is None else (claim.start, claim.end)

    def write_buffer(self, fetch_id: int, pos: int, limit: int) -> Optional[memoryview]:
        """A writable view of at most ``limit`` bytes at ``pos`` inside the fetch's claim,
        or None when the claim ends at ``pos`` (finished or cancelled)."""
        with self._cond:
            claim = self._claims.get(fetch_id)
            if claim is None or self._closed or pos >= claim.end:
                return None
            index, offset = divmod(pos, self._block_size)
            block = self._blocks.get(index)
            if block is None:
                # Will this fetch fill most of the block, or a small part of it?
                fills = min(claim.end, (index + 1) * self._block_size) - pos >= self._block_size // 2
                block = _POOL.take(self._block_size, fills)
                self._blocks[index] = block
            elif isinstance(block, bytes):  # read-only: written again only when a server
                writable = _POOL.take(self._block_size, True)  # ignoring Range resends it
                writable[: len(block)] = block
                block = self._blocks[index] = writable
            n = min(limit, claim.end - pos, self._block_size - offset)
            claim.granted = pos + n
            return memoryview(block)[offset : offset + n]

    def room(self, fetch_id: int, pos: int, limit: int) -> int:
        """How many bytes (at most ``limit``) the fetch may store at ``pos`` in one piece:
        up to the end of its claim and of the block; 0 when the claim ends at ``pos``.
        Those bytes are the fetch's from now on (as for ``write_buffer``)."""
        with self._cond:
            claim = self._claims.get(fetch_id)
            if claim is None or self._closed or pos >= claim.end:
                return 0
            n = min(limit, claim.end - pos, self._block_size - pos % self._block_size)
            claim.granted = pos + n
            return n

    def store(self, fetch_id: int, pos: int, data: bytes) -> None:
        """Commit ``data`` at ``pos`` (within what ``room`` granted). A piece that is a
        whole block (or the whole last one) becomes that block as it is, uncopied; a
        reader of exactly that block gets it back the same way (see :func:`joined`)."""
        n = len(data)
        index, offset = divmod(pos, self._block_size)
        with self._cond:
            if offset == 0 and index not in self._blocks and (n == self._block_size or pos + n == self._size):
                if not self._closed and fetch_id in self._claims:
                    self._blocks[index] = data
                    self._commit_locked(fetch_id, pos, n)
                return
        view = self.write_buffer(fetch_id, pos, n)
        if view is not None:  # None: closed or released meanwhile, the bytes are not needed
            n = len(view)
            view[:] = data[:n]
            self.commit(fetch_id, pos, n)

    def commit(self, fetch_id: int, pos: int, n: int) -> None:
        """``n`` bytes at ``pos`` were written by the fetch: they are present now."""
        if n <= 0:
            return
        with self._cond:
            if not self._closed:
                self._commit_locked(fetch_id, pos, n)

    def _commit_locked(self, fetch_id: int, pos: int, n: int) -> None:
        self._present.add(pos, pos + n)
        claim = self._claims.get(fetch_id)
        if claim is not None:
            claim.start = max(claim.start, pos + n)
        if self._budget is not None and len(self._blocks) * self._block_size > self._budget:
            self._evict_locked()
        if any(self._present.covered_until(p) >= e for p, e in self._needs.values()):
            self._cond.notify_all()

    def _evict_locked(self) -> None:
        """Drop whole blocks outside the reader's window and every claim, farthest from the
        window first, until the blocks fit the budget (or nothing more may go)."""
        bs = self._block_size
        lo, hi = self._window
        busy = [(c.start, max(c.end, c.granted)) for c in self._claims.values()]
        victims = [
            i
            for i in self._blocks
            if (i + 1) * bs <= lo or i * bs >= hi
            if not any(s < (i + 1) * bs and i * bs < e for s, e in busy)
        ]
        victims.sort(key=lambda i: lo - (i + 1) * bs if (i + 1) * bs <= lo else i * bs - hi, reverse=True)
        for i in victims:
            if len(self._blocks) * bs <= self._budget:
                break
            self._present.remove(i * bs, (i + 1) * bs)
            _POOL.give([self._blocks.pop(i)])  # outside every claim: no fetch writes it


class _BlockPool:
    """Spare blocks shared by every cache of the process, at most ``limit`` bytes of them.
    A reused block costs no page faults and no zeroing, which a fresh one does (up to 2 ms
    per MiB on a VM): a stream opened after another one closed starts with warm memory."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._spare: Dict[int, List[Block]] = {}  # block size -> blocks

    def take(self, size: int, fills: bool) -> Block:
        with self._lock:
            spare = self._spare.get(size)
            if spare:
                return spare.pop()
        return _new_block(size, fills)

    def give(self, blocks: List[Block]) -> None:
        with self._lock:
            for block in blocks:
                if isinstance(block, bytes):
                    continue  # read-only: freed (malloc reuses its memory), never written
                spare = self._spare.setdefault(len(block), [])
                if (len(spare) + 1) * len(block) <= self._limit:
                    spare.append(block)

    def _after_fork_in_child(self) -> None:
        """A parent thread may have held the lock at the fork: start over, empty."""
        self._lock = threading.Lock()
        self._spare = {}


_POOL = _BlockPool(limit=8 * BLOCK_SIZE)
os.register_at_fork(after_in_child=_POOL._after_fork_in_child)


def _new_block(size: int, fills: bool) -> Block:
    """Memory for one block. When the fetch writes only a small part of it, anonymous
    memory that the kernel maps page by page on first write: a random 64 KiB read then pays
    for 16 pages, where ``bytearray(size)`` zero-fills (faults in) the whole MiB first,
    several times the cost of the loopback request itself. When the fetch ``fills`` it, a
    bytearray: its pages are all needed anyway, and malloc reuses freed memory (an mmap
    populated up front measured ~10% slower on sequential reads)."""
    return bytearray(size) if fills else mmap.mmap(-1, size)


def joined(pieces: List[memoryview]) -> bytes:
    """The pieces as one ``bytes``: the block object itself when they are exactly one
    whole read-only block (a body's piece kept as it came, see ``store``), else one copy."""
    if len(pieces) == 1:
        whole = pieces[0].obj
        if type(whole) is bytes and len(whole) == len(pieces[0]):
            return whole
    return b"".join(pieces)


__all__ = ["SparseCache", "CacheView", "Wait", "BLOCK_SIZE", "StreamError"]
