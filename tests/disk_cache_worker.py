"""A second process for the disk cache tests: ``python -m tests.disk_cache_worker MODE ROOT URL ...``,
or ``child(conn, err, MODE, ROOT, URL, ...)`` as a multiprocessing target (a forkserver child
starts in milliseconds: the soak restarts hundreds).

Modes (every one prints its progress as lines on stdout, flushed):
- ``hold``: open the entry, print ``ready``, keep it open until a line arrives on stdin.
- ``write RANGES``: print ``ready``, wait for a line on stdin, then write + commit each ``start:end`` of
  ``reference(1)`` (RANGES is comma separated), pinning ``version(1)`` first if needed.
- ``uncommitted``: commit ``[0, 100)``, write ``[100, 200)`` without committing, die.
- ``churn SEED``: forever (bounded) write random ranges of the current version's reference
  and commit, sometimes switching to the next version; prints the cycle number after each
  commit. The test SIGKILLs it at a random point.
- ``stream SEED``: here URL is a real http URL. Forever (bounded) open it with
  ``kithara_io.open(URL, cache=DiskCache(ROOT))``, read random ranges, close; prints ``open``,
  then ``r POS ASKED GOT SHA256`` for every read and ``closed`` after each clean close. Disk
  cache warnings go to stderr. The soak (tests/test_disk_soak.py) SIGKILLs it at random points.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sys
from multiprocessing.connection import Connection

import kithara_io
from kithara_io import Timeout
from kithara_io.disk import CacheEntry, DiskCache, Validators

SIZE = 64 * 1024
MAX_CYCLES = 100_000
KiB = 1024
# Small fetches and memory: many requests, hence many commits, per stream.
STREAM_OPTIONS = dict(
    read_ahead=512 * KiB, min_fetch=32 * KiB, max_fetch=256 * KiB, cache_budget=4096 * KiB, timeout=Timeout(connect=5, read=10)
)


def reference(version: int) -> bytes:
    """The content of version ``version`` of the resource."""
    return random.Random(version).randbytes(SIZE)


def version(number: int) -> Validators:
    return Validators(SIZE, f"v{number}", None)


def version_number(validators: Validators) -> int:
    assert validators.etag is not None
    return int(validators.etag[1:])


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write of a short line: whole, even if killed


def child(conn: Connection, err: str, *argv: str) -> None:
    """``main(*argv)`` with its stdout on ``conn`` (a pipe's write end) and its stderr
    appended to the file ``err``."""
    os.dup2(conn.fileno(), 1)
    conn.close()
    fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    main(*argv)


def main(mode: str, root: str, url: str, *args: str) -> None:
    cache = DiskCache(root)
    if mode == "stream":
        stream(cache, url, random.Random(int(args[0])))
        return
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


def stream(cache: DiskCache, url: str, rng: random.Random) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for _ in range(MAX_CYCLES):
        say("open")
        with kithara_io.open(url, cache=cache, **STREAM_OPTIONS) as f:
            pos = 0
            for _ in range(rng.randint(1, 15)):
                if rng.random() < 0.6:  # else the next bytes: sequential reading, read-ahead
                    pos = rng.randrange(f.size)
                asked = rng.randint(1, 256 * KiB)
                f.seek(pos)
                got = f.read(asked)
                say(f"r {pos} {asked} {len(got)} {hashlib.sha256(got).hexdigest()}")
                pos = f.tell() % f.size
        say("closed")


if __name__ == "__main__":
    main(*sys.argv[1:])
