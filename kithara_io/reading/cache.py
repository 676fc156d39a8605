"""SparseCache: the downloaded bytes of one resource, and who is about to download the rest.

Ownership: one lock (``_lock``, entered directly; ``_cond`` waits on it) guards everything
here. Fetch threads write into the regions they have claimed *without* the lock (nobody else
reads or writes an unpresent, claimed region) and take it only to commit. Readers wait on the
condition for "range present", "end proven", "failed" or "closed": every state change
notifies, so no waiter polls and no wait has a timeout; a commit wakes a reader only once
its whole range is present. Blocks (:mod:`.blocks`) are writable ones that fetches copy
into, or the bodies' own ``bytes`` pieces kept uncopied; writable ones are recycled through
one process-wide pool (``blocks.POOL``). What a full cache drops: :mod:`.eviction`.

Lock order: a caller may hold its own lock when calling in here; nothing in here calls out.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union, overload

from ..errors import StreamClosedError, StreamError
from ..forking import guard
from ..sources.base import Piece
from .blocks import BLOCK_SIZE, POOL, Block, Pieces, block_view, joined
from .eviction import Budget
from .ranges import RangeSet

T = TypeVar("T")


class Wait(enum.Enum):
    """Why ``wait_for`` returned without raising."""

    READY = "ready"  # every byte of the range is present
    UNCLAIMED = "unclaimed"  # a missing byte is not being fetched: the caller must schedule
    CLAIMED = "claimed"  # a missing byte is being fetched: the caller may take the fetch over


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
        self._lock = threading.RLock()  # entered directly: Condition.__enter__ is a Python call
        self._cond = threading.Condition(self._lock)
        self._block_size = block_size
        self._budget = Budget(budget, block_size)  # what the blocks hold of it; making room
        self._window = (0, 0)  # never evicted: the reader's neighbourhood
        self._blocks: Dict[int, Block] = {}
        self._needs: Dict[int, Tuple[int, int]] = {}  # waiting readers: token -> [pos, end)
        self._present = RangeSet()
        self._claims: Dict[int, _Claim] = {}
        self._size: Optional[int] = None
        self._error: Optional[BaseException] = None
        self._closed = False
        self._interrupt = False  # one-shot: the next wait of a reader raises InterruptedError
        self._pokes = 0  # counts poke(): a fetch a reader may take over has its body now
        # Every byte is held: kept up to date under the lock at every change of what is
        # present, read without it (see read_held).
        self.whole = False
        guard(self)

    def fork_lock(self) -> threading.RLock:
        """Held across a fork (:mod:`kithara_io.forking`): a child's cache is never caught
        between a block's bytes and the ranges that say they are present."""
        return self._lock

    def _after_fork_in_child(self) -> None:
        """In a forked child: the fetches and waiters of the parent are gone (their claims
        with them), and a lock one of them held would never be released."""
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._claims.clear()
        self._needs = {}

    # -- state -------------------------------------------------------------------------
    @property
    def size(self) -> Optional[int]:
        with self._lock:
            return self._size

    def set_size(self, size: int) -> None:
        with self._lock:
            self._size = size
            self._note_whole_locked()
            self._cond.notify_all()

    def _note_whole_locked(self) -> None:
        size = self._size
        if size is not None and not self.whole and self._present.covered_until(0) >= size:
            self.whole = True

    def fail(self, error: BaseException) -> None:
        """Record a permanent failure; every waiter raises it."""
        with self._lock:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def interrupt(self) -> None:
        """The reader waiting for bytes now (else the next one that has to wait) raises
        ``InterruptedError`` once; nothing else changes."""
        with self._lock:
            self._interrupt = True
            self._cond.notify_all()

    @property
    def interrupt_pending(self) -> bool:
        """Has ``interrupt`` been called since a read last raised for it?"""
        return self._interrupt

    def close(self) -> None:
        """Wake every waiter with ``StreamClosedError``. The bytes stay until ``recycle``:
        a fetch still stopping may be writing into a block."""
        with self._lock:
            self._closed = True
            self._error = None  # a closed cache raises StreamClosedError instead; its traceback may hold us
            self._cond.notify_all()

    def recycle(self) -> None:
        """After ``close``, once no fetch can write any more: hand the blocks to the pool."""
        with self._lock:
            blocks, self._blocks = list(self._blocks.values()), {}
            self._budget.held = 0
            self._present = RangeSet()
            self.whole = False
        POOL.give(blocks)

    def present(self) -> RangeSet:
        with self._lock:
            return self._present.copy()

    def consult(self, fn: "Callable[[RangeSet, RangeSet, Optional[int]], T]") -> T:
        """``fn(present, claimed, size)`` under the cache's lock, without a snapshot: for a
        quick pure function (a plan) that keeps neither set."""
        with self._lock:
            return fn(self._present, self._claimed_locked(), self._size)

    def view(self) -> CacheView:
        """A snapshot of the present and claimed ranges (see CacheView)."""
        with self._lock:
            claims = {i: (c.start, c.end) for i, c in self._claims.items()}
            return CacheView(self._present.copy(), self._claimed_locked(), claims, self._size)

    def _claimed_locked(self) -> RangeSet:
        claimed = RangeSet()
        for claim in self._claims.values():
            claimed.add(claim.start, claim.end)
        return claimed

    # -- waiting -----------------------------------------------------------------------
    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise StreamClosedError("stream closed while reading")
        if self._error is not None:
            raise self._error.with_traceback(None)  # see Stream._check_failed

    @overload
    def wait_for_size(self, timeout: None = None) -> int: ...
    @overload
    def wait_for_size(self, timeout: float) -> Optional[int]: ...
    def wait_for_size(self, timeout: Optional[float] = None) -> Optional[int]:
        """Block until the total length is known (or raise the failure); None if
        ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
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

    @property
    def known_size(self) -> Optional[int]:
        """The length without taking the lock (set once, never changed once known)."""
        return self._size

    def look(self, pos: int, window: Tuple[int, int]) -> Tuple[bool, int, int, Optional[int]]:
        """For a read at ``pos``, in one lock hold and without snapshots: whether the
        resource is ``whole`` (then nothing else is done), else set the window (see
        ``set_window``); and ``present_until``, the end of the present run from ``pos``,
        ``free_from``, the first byte at or after ``pos`` neither present nor claimed (where
        planning would start), and the size."""
        with self._lock:
            size = self._size
            if self.whole and size is not None:  # whole: the size is known
                return True, size, size, size
            self._window = window
            present_until = self._present.covered_until(pos)
            return False, present_until, self._first_free_locked(present_until), size

    def first_free(self, pos: int) -> int:
        """The first byte at or after ``pos`` neither present nor claimed (no snapshot)."""
        with self._lock:
            return self._first_free_locked(self._present.covered_until(pos))

    def _first_free_locked(self, free: int) -> int:
        for _ in range(len(self._claims) + 1):  # each step passes one claim or stops
            nxt = free
            for c in self._claims.values():
                if c.start <= nxt < c.end:
                    nxt = c.end
            nxt = self._present.covered_until(nxt)
            if nxt == free:
                break
            free = nxt
        return free

    def set_window(self, start: int, end: int) -> None:
        """Bytes in ``[start, end)`` are never evicted (the reader is about to need them)."""
        with self._lock:
            self._window = (start, end)

    @property
    def bytes_held(self) -> int:
        """Memory held in blocks (what the budget bounds): whole writable blocks, and the
        pieces a random reader's bodies handed over as they are."""
        with self._lock:
            return self._budget.held

    def read_held(self, pos: int, n: int, consume: Callable[[List[memoryview]], T]) -> Optional[T]:
        """For a ``whole`` resource: ``consume`` the pieces of ``[pos, pos+n)`` in one lock
        hold (no claims, no waiting); None when it is not whole, closed or failed (the
        caller takes the long way, which raises)."""
        with self._lock:
            if not self.whole or self._closed or self._error is not None:
                return None
            return consume(self._views(pos, n))

    def copy_held(self, pos: int, out: memoryview) -> int:
        """For a ``whole`` resource: copy the bytes from ``pos`` into ``out`` (fewer only at
        the end) in one lock hold; -1 when it is not whole, closed or failed (the caller
        takes the long way, which raises). A decoder's 8 KiB reads: no lists, no callbacks."""
        with self._lock:
            if not self.whole or self._closed or self._error is not None:
                return -1
            n = max(0, min(len(out), self._size - pos))  # type: ignore[operator]  # whole: known
            self._copy_locked(pos, n, out)
            return n

    def copy_present(self, pos: int, out: memoryview, window: Tuple[int, int], free: bool) -> int:
        """A short read's hit in one lock hold: if all of ``out`` is present from ``pos``,
        copy it and return where planning would start (``free_from`` of :meth:`look`; 0
        unless ``free``), else -1 with nothing done. Sets the window (see ``set_window``);
        raises the failure, or StreamClosedError, as a wait would."""
        n = len(out)
        with self._lock:
            if self._closed or self._error is not None:
                self._raise_if_unusable()
            present_until = self._present.covered_until(pos)
            if present_until < pos + n:
                return -1
            self._window = window
            self._copy_locked(pos, n, out)
            return self._first_free_locked(present_until) if free else 0

    def _copy_locked(self, pos: int, n: int, out: memoryview) -> None:
        if n <= 0:  # at the end, or an empty buffer: there may be no block at pos
            return
        index, offset = divmod(pos, self._block_size)
        block = self._blocks[index]
        if offset + n <= self._block_size and not isinstance(block, Pieces):  # a decoder's read
            out[:n] = memoryview(block)[offset : offset + n]
            return
        done = 0
        for view in self._views(pos, n):
            out[done : done + len(view)] = view
            done += len(view)

    def read_when_present(
        self, pos: int, n: int, consume: Callable[[List[memoryview]], T], takeover: Optional[int] = None
    ) -> Tuple[Wait, Any]:
        """Once ``[pos, pos+n)`` is present, hand its pieces (views of the blocks, valid only
        during the call) to ``consume`` and return ``(READY, its result)``; or return
        ``(UNCLAIMED, None)`` if nobody fetches a missing byte of it. Waiting and consuming
        happen under one lock hold, so eviction cannot slip in between.

        ``takeover``: instead of waiting for a fetch's bytes, return ``(CLAIMED, (fetch id,
        pokes))`` for the caller to take that fetch over, as soon as ``poke`` was called
        since the caller saw ``pokes`` (-1: at once)."""
        end = pos + n
        with self._lock:
            while True:
                self._raise_if_unusable()
                missing = self._present.covered_until(pos)
                if missing >= end:
                    return Wait.READY, consume(self._views(pos, n))
                if self._interrupt:  # before UNCLAIMED: else the read would fetch the bytes itself
                    self._interrupt = False
                    raise InterruptedError("read interrupted (Stream.interrupt)")
                claimant = self._claimant(missing)
                if claimant is None:
                    return Wait.UNCLAIMED, None
                if takeover is not None and takeover != self._pokes:
                    return Wait.CLAIMED, (claimant, self._pokes)
                self._wait_locked((pos, end))

    def poke(self) -> None:
        """Wake the readers waiting with ``takeover``: a fetch has a body to take over now."""
        with self._lock:
            self._pokes += 1
            self._cond.notify_all()

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

    def _claimant(self, pos: int) -> Optional[int]:
        """The fetch whose claim holds ``pos``, or None."""
        for fetch_id, c in self._claims.items():
            if c.start <= pos < c.end:
                return fetch_id
        return None

    # -- reading -----------------------------------------------------------------------
    def _views(self, pos: int, n: int) -> List[memoryview]:
        if n <= 0:
            return []
        bs = self._block_size
        index, offset = divmod(pos, bs)
        if offset + n <= bs:  # within one block (a decoder's read): one view
            block = self._blocks[index]
            if not isinstance(block, Pieces):
                return [memoryview(block)[offset : offset + n]]
        views = []
        while n > 0:
            index, offset = divmod(pos, bs)
            view = block_view(self._blocks[index], offset, min(bs - offset, n))
            if not view:  # a broken invariant (pieces stored over present bytes): loud, not a loop
                raise RuntimeError(f"byte cache: byte {pos} is marked present but no block holds it")
            views.append(view)
            pos += len(view)
            n -= len(view)
        return views

    # -- claims and writing ------------------------------------------------------------
    def claim(self, fetch_id: int, start: int, end: int) -> None:
        """Reserve ``[start, end)`` for one fetch; planning never hands it out again."""
        with self._lock:
            self._claims[fetch_id] = _Claim(start, end, start)

    def extend_claim(self, fetch_id: int, end: int) -> None:
        """A fetch will deliver more than it asked for (a server that ignores Range)."""
        with self._lock:
            claim = self._claims[fetch_id]
            claim.end = max(claim.end, end)

    def shrink_claim(self, fetch_id: int, end: int) -> None:
        """Give back the claimed bytes from ``end`` on (cancel, or a shorter answer)."""
        with self._lock:
            claim = self._claims.get(fetch_id)
            if claim is not None:
                claim.end = max(claim.granted, claim.start, min(claim.end, end))
                self._cond.notify_all()

    def release(self, fetch_id: int) -> None:
        """The fetch is over: its unwritten claim becomes fetchable again."""
        with self._lock:
            if self._claims.pop(fetch_id, None) is not None:
                self._cond.notify_all()

    def claim_progress(self, fetch_id: int) -> Optional[tuple]:
        """``(next_byte, end)`` of a claim, or None."""
        with self._lock:
            claim = self._claims.get(fetch_id)
            return None if claim is None else (claim.start, claim.end)

    def claim_done(self, fetch_id: int) -> bool:
        """The fetch's claim is all written (it has nothing left to receive)."""
        with self._lock:
            claim = self._claims.get(fetch_id)
            return claim is not None and claim.start >= claim.end

    def write_buffer(self, fetch_id: int, pos: int, limit: int) -> Optional[memoryview]:
        """A writable view of at most ``limit`` bytes at ``pos`` inside the fetch's claim,
        or None when the claim ends at ``pos`` (finished or cancelled)."""
        with self._lock:
            return self._write_buffer_locked(self._claims.get(fetch_id), pos, limit)

    def _write_buffer_locked(self, claim: Optional[_Claim], pos: int, limit: int) -> Optional[memoryview]:
        if claim is None or self._closed or pos >= claim.end:
            return None
        bs = self._block_size
        index, offset = divmod(pos, bs)
        block = self._blocks.get(index)
        if block is None:
            self._reserve_locked(bs)
            block = self._blocks[index] = POOL.take(bs, self._fills(claim, pos))
        elif isinstance(block, Pieces):  # a readinto body writes beside stored pieces
            self._reserve_locked(bs - block.nbytes)  # (the claim keeps this block)
            block = self._blocks[index] = block.writable(bs)
        n = min(limit, claim.end - pos, bs - offset)
        claim.granted = pos + n
        return memoryview(block)[offset : offset + n]

    def _reserve_locked(self, more: int) -> None:
        """The blocks are about to hold ``more`` bytes: evict first if they would pass the
        budget (they never exceed it, not even by the block being filled), then count them."""
        if self._budget.over(more):
            self._evict_locked(more)
        self._budget.held += more

    def _as_pieces_locked(self, block: Optional[Block], claim: _Claim, pos: int) -> bool:
        """Is the piece at ``pos`` kept as the body's ``bytes`` (the block holds pieces already,
        or is new and the fetch fills only a small part of it)?"""
        return isinstance(block, Pieces) or (block is None and not self._fills(claim, pos))

    def _fills(self, claim: _Claim, pos: int) -> bool:
        """Will this fetch fill most of the block holding ``pos``, or a small part of it?"""
        end = (pos // self._block_size + 1) * self._block_size
        return min(claim.end, end) - pos >= self._block_size // 2

    def piece_room(self, fetch_id: int, pos: int, limit: int) -> "Union[memoryview, int]":
        """Where the fetch receives its next piece of at most ``limit`` bytes at ``pos``:
        a writable view of its block where the fetch fills most of it (the body reads
        straight into it, then ``commit``), else how many bytes it may ``store`` as one
        piece kept uncopied (a random read; see :meth:`store`). 0: the claim ends at ``pos``."""
        with self._lock:
            claim = self._claims.get(fetch_id)
            if claim is None or self._closed or pos >= claim.end:
                return 0
            if self._as_pieces_locked(self._blocks.get(pos // self._block_size), claim, pos):
                n = min(limit, claim.end - pos, self._block_size - pos % self._block_size)
                claim.granted = pos + n
                return n
            view = self._write_buffer_locked(claim, pos, limit)
            return 0 if view is None else view

    def store(self, fetch_id: int, pos: int, data: Piece) -> None:
        """Commit ``data`` at ``pos`` (within what ``piece_room`` granted). Where the fetch fills
        only a small part of a block (a random read), the block keeps the body's pieces as
        they are (see :mod:`.blocks`; a reader of exactly one piece gets it back uncopied);
        otherwise it is copied into a writable, pooled block (why: bench/README.md, "Keeping
        the body's bytes uncopied")."""
        n = len(data)
        index, offset = divmod(pos, self._block_size)
        with self._lock:
            block = self._blocks.get(index)
            claim = self._claims.get(fetch_id)
            if claim is not None and self._as_pieces_locked(block, claim, pos):
                if not self._closed:
                    self._reserve_locked(n)
                    if not isinstance(block, Pieces):  # a new block
                        block = self._blocks[index] = Pieces()
                    block.add(offset, data)
                    self._commit_locked(fetch_id, pos, n)
                return
            view = self._write_buffer_locked(claim, pos, n)  # the copy below runs unlocked
        if view is not None:  # None: closed or released meanwhile, the bytes are not needed
            n = len(view)
            view[:] = data if n == len(data) else memoryview(data)[:n]
            self.commit(fetch_id, pos, n)

    def commit(self, fetch_id: int, pos: int, n: int) -> None:
        """``n`` bytes at ``pos`` were written by the fetch: they are present now."""
        if n <= 0:
            return
        with self._lock:
            if not self._closed:
                self._commit_locked(fetch_id, pos, n)

    def _commit_locked(self, fetch_id: int, pos: int, n: int) -> None:
        self._present.add(pos, pos + n)
        claim = self._claims.get(fetch_id)
        if claim is not None:
            claim.start = max(claim.start, pos + n)
        if self._budget.over():
            self._evict_locked()
        self._note_whole_locked()
        if any(self._present.covered_until(p) >= e for p, e in self._needs.values()):
            self._cond.notify_all()

    def _evict_locked(self, more: int = 0) -> None:
        """Make room for ``more`` bytes: never the reader's window or a claimed block."""
        if self._budget.evict(self._blocks, self._present, more, self._window, self._claims.values()):
            self.whole = False


__all__ = ["SparseCache", "CacheView", "Wait", "BLOCK_SIZE", "StreamError", "joined"]
