#!/usr/bin/env python3
"""The engine's own cost per cold random read: kithara-io over an in-memory ``Source``.

    python bench/engine_only.py [--count 1500] [--passes 3] [--read 65536]

No network and no server: each ``seek`` + ``read`` misses, and the reader runs its fetch
itself against a source that answers from memory at once, so what is timed is the engine
(planning, the Downloader's place, the fetch loop, the cache, completion, the copy out).
Thread CPU of the reading thread (every fetch runs on it), per read; the minimum over
passes is the least disturbed. Compare two trees by running this script under each.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Optional

from kithara_io.engine.downloader import Downloader
from kithara_io.options import StreamOptions
from kithara_io.reading.remote import RemoteReader
from kithara_io.sources.base import Validators
from kithara_io.stream import Stream

SIZE = 200 * 1000 * 1000
_DATA = memoryview(os.urandom(4 << 20))  # the resource repeats these bytes
URL = "memory://bench"


class _Abort:
    aborted = False

    def abort(self) -> None:
        self.aborted = True


class MemoryBody:
    """``[start, end)`` of the resource, answered at once."""

    url = URL
    ranged = True
    from_disk = False
    requests_sent = 1
    total = SIZE

    def __init__(self, start: int, end: int) -> None:
        self.start = self.position = start
        self.end = end

    def _next(self, n: int) -> memoryview:
        offset = self.position % len(_DATA)
        return _DATA[offset : offset + min(n, self.end - self.position, len(_DATA) - offset)]

    def readinto(self, buf) -> int:
        piece = self._next(len(buf))
        buf[: len(piece)] = piece
        self.position += len(piece)
        return len(piece)

    def read_piece(self, n: int) -> bytes:
        piece = bytes(self._next(n))
        self.position += len(piece)
        return piece

    def readinto_piece(self, buf) -> int:
        return self.readinto(buf)

    def close(self) -> None:
        pass


class MemorySource:
    """A ranged resource of ``SIZE`` bytes in memory (the ``Source`` protocol)."""

    url = URL
    filename = None
    supports_ranges = True
    offline = False
    pinned = Validators(SIZE)

    def holds(self, pos: int) -> bool:
        return False

    def new_abort(self) -> _Abort:
        return _Abort()

    def fetch(self, start: int, end: Optional[int], abort=None) -> MemoryBody:
        return MemoryBody(start, SIZE if end is None else min(end, SIZE))

    def fetch_suffix(self, length: int, abort=None) -> None:
        return None

    def abort_all(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _after_fork_in_child(self) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1500)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--read", type=int, default=64 * 1024)
    args = ap.parse_args()
    rng = random.Random(5)
    per_read = []
    downloader = Downloader()
    try:
        for _ in range(args.passes):
            reader = RemoteReader(MemorySource(), downloader, StreamOptions(tail=0))
            reader.open()
            with Stream(reader, URL) as f:
                offsets = [rng.randrange(0, SIZE - args.read) for _ in range(args.count)]
                started = time.thread_time()
                for pos in offsets:
                    f.seek(pos)
                    if len(f.read(args.read)) != args.read:
                        raise RuntimeError("short read")
                per_read.append((time.thread_time() - started) / args.count * 1e6)
                requests = f.stats().requests
    finally:
        downloader.close()
    per_read.sort()
    print(f"engine: {per_read[0]:.1f} us per random read (min; median {per_read[len(per_read) // 2]:.1f}, "
          f"max {per_read[-1]:.1f}), {requests} requests in the last pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
