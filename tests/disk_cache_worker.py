"""A second process for the disk cache tests: ``python -m tests.disk_cache_worker MODE ROOT URL ...``.

Modes (every one prints its progress as lines on stdout, flushed):
- ``hold``: open the entry, print ``ready``, keep it open until a line arrives on stdin.
- ``write RANGES``: print ``ready``, wait for a line on stdin, then write + commit each ``start:end`` of
  ``reference(1)`` (RANGES is comma separated), pinning ``version(1)`` first if needed.
- ``uncommitted``: commit ``[0, 100)``, write ``[100, 200)`` without committing, die.
- ``churn SEED``: forever (bounded) write random ranges of the current version's reference
  and commit, sometimes switching to the next version; prints the cycle number after each
  commit. The test SIGKILLs it at a random point.
"""

from __future__ import annotations

import os
import random
import sys

from kithara_io.disk import CacheEntry, DiskCache, Validators

SIZE = 64 * 1024
MAX_CYCLES = 100_000


def reference(version: int) -> bytes:
    """The content of version ``version`` of the resource."""
    return random.Random(version).randbytes(SIZE)


def version(number: int) -> Validators:
    return Validators(SIZE, f"v{number}", None)


def version_number(validators: Validators) -> int:
    assert validators.etag is not None
    return int(validators.etag[1:])


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(mode: str, root: str, url: str, *args: str) -> None:
    cache = DiskCache(root)
    entry = cache.open_entry(url)
    if mode == "hold":
        say("ready")
        sys.stdin.readline()
    elif mode == "write":
        say("ready")
        sys.stdin.readline()
        data = reference(1)
        if entry.validators() != version(1):
            entry.reset(version(1))
        for item in args[0].split(","):
            start, end = (int(x) for x in item.split(":"))
            entry.write(start, data[start:end])
            entry.commit()
        say("done")
    elif mode == "uncommitted":
        entry.reset(version(1))
        entry.write(0, reference(1)[:100])
        entry.commit()
        entry.write(100, reference(1)[100:200])
        say("written")
        os._exit(0)  # a crash: no close, no commit
    elif mode == "churn":
        churn(entry, random.Random(int(args[0])))
    entry.close()


def churn(entry: CacheEntry, rng: random.Random) -> None:
    for cycle in range(MAX_CYCLES):
        current = entry.validators()
        if current is None or rng.random() < 0.1:
            entry.reset(version(version_number(current) + 1 if current else 1))
        pinned = entry.validators()
        assert pinned is not None
        data = reference(version_number(pinned))
        for _ in range(rng.randint(1, 4)):
            start = rng.randrange(SIZE)
            end = min(SIZE, start + rng.randint(1, 8192))
            entry.write(start, data[start:end])
        entry.commit()
        say(str(cycle))


if __name__ == "__main__":
    main(*sys.argv[1:])
