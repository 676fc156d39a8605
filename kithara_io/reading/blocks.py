"""The memory of the sparse cache: fixed-size blocks, in four forms, and their pool.

A block is one of:

- a writable ``bytearray`` or anonymous ``mmap`` that pieces are copied into;
- :class:`Pieces`: part of a block as bodies handed it over, piece by piece, never copied
  (a random 64 KiB read costs no copy into a block): ``bytes`` from ``http.client``, or a
  view of the memory a libcurl answer landed in (faulted in while the server answered).

Writable blocks are recycled through one process-wide pool (:data:`POOL`, its own lock);
Pieces are simply freed (malloc, or the kernel for a mapping, takes their memory back).
"""

from __future__ import annotations

import bisect
import mmap
import os
import threading
from typing import Dict, List, Union

from ..sources.base import Piece


class Pieces:
    """Read-only pieces of one block by offset (disjoint: each came from one claim)."""

    __slots__ = ("_offsets", "_datas", "nbytes")

    def __init__(self) -> None:
        self._offsets: List[int] = []
        self._datas: List[Piece] = []
        self.nbytes = 0  # the pieces' bytes: what the block holds of the cache budget

    def add(self, offset: int, data: Piece) -> None:
        i = bisect.bisect_left(self._offsets, offset)
        self._offsets.insert(i, offset)
        self._datas.insert(i, data)
        self.nbytes += len(data)

    def view(self, offset: int, n: int) -> memoryview:
        """Up to ``n`` bytes from ``offset``: to the end of the piece holding it (which the
        caller knows is present)."""
        i = bisect.bisect_right(self._offsets, offset) - 1
        data, start = self._datas[i], offset - self._offsets[i]
        return memoryview(data)[start : start + n]

    def writable(self, size: int) -> "Writable":
        """The block as a writable one, with every piece copied in."""
        block = POOL.take(size, fills=False)
        for offset, data in zip(self._offsets, self._datas):
            block[offset : offset + len(data)] = data
        return block


Writable = Union[bytearray, mmap.mmap]
Block = Union[bytearray, mmap.mmap, Pieces]


def block_view(block: Block, offset: int, n: int) -> memoryview:
    """Up to ``n`` present bytes of ``block`` from ``offset`` (fewer only for Pieces)."""
    if isinstance(block, Pieces):
        return block.view(offset, n)
    return memoryview(block)[offset : offset + n]


def held_bytes(block: Block) -> int:
    """What a block holds of the cache budget: all of a writable one, a Pieces' pieces."""
    return block.nbytes if isinstance(block, Pieces) else len(block)


def joined(pieces: List[memoryview]) -> bytes:
    """The pieces as one ``bytes``: a body's piece itself when they are exactly one whole
    ``bytes`` piece it handed over (all of a Pieces piece), else one copy."""
    if len(pieces) == 1:
        whole = pieces[0].obj
        if type(whole) is bytes and len(whole) == len(pieces[0]):
            return whole
    return b"".join(pieces)


class BlockPool:
    """Spare writable blocks shared by every cache of the process, at most ``limit`` bytes.
    A reused block costs no page faults and no zeroing, which a fresh one does (up to 2 ms
    per MiB on a VM): a stream opened after another one closed starts with warm memory."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._spare: Dict[int, List[Writable]] = {}  # block size -> blocks

    def take(self, size: int, fills: bool) -> Writable:
        with self._lock:
            spare = self._spare.get(size)
            if spare:
                return spare.pop()
        return _new_block(size, fills)

    def give(self, blocks: List[Block]) -> None:
        with self._lock:
            for block in blocks:
                if not isinstance(block, (bytearray, mmap.mmap)):
                    continue  # read-only: freed (malloc reuses its memory), never written
                spare = self._spare.setdefault(len(block), [])
                if (len(spare) + 1) * len(block) <= self._limit:
                    spare.append(block)

    def _after_fork_in_child(self) -> None:
        """A parent thread may have held the lock at the fork: start over, empty."""
        self._lock = threading.Lock()
        self._spare = {}


def _new_block(size: int, fills: bool) -> Writable:
    """Memory for one block. When the fetch writes only a small part of it, anonymous
    memory that the kernel maps page by page on first write: a random 64 KiB read then pays
    for 16 pages, where ``bytearray(size)`` zero-fills (faults in) the whole MiB first,
    several times the cost of the loopback request itself. When the fetch ``fills`` it, a
    bytearray: its pages are all needed anyway, and malloc reuses freed memory (an mmap
    populated up front measured ~10% slower on sequential reads). Private: after a fork
    the child's copy is its own (a shared mapping would carry a child's writes into a
    block it reused back into the parent's cache)."""
    return bytearray(size) if fills else mmap.mmap(-1, size, flags=_PRIVATE)


_PRIVATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS


BLOCK_SIZE = 1 << 20
POOL = BlockPool(limit=8 * BLOCK_SIZE)
os.register_at_fork(after_in_child=POOL._after_fork_in_child)
