#!/usr/bin/env python3
"""The bound of cases ``seq`` and ``many`` for a client that *keeps* what it reads (a cache)
and hands each caller a new ``bytes``: plain ``http.client`` GETs, ``read(1 MiB)`` calls,
no engine, each way in a fresh process (malloc's state carries over otherwise):

* ``floor``: a new ``bytes`` per call, dropped at once (requests' ``iter_content``);
* ``keep``: the same ``bytes`` kept as the cache's piece (the last ``--keep`` MiB of each
  stream) and handed to the caller uncopied: no copy at all, but memory that stays alive;
* ``copy``: received into the stream's own ring of ``--keep`` reused 1 MiB blocks, then
  ``bytes(block)`` for the caller: the copy a block cache makes, which CPython makes with
  the GIL held (only ``b"".join`` of exact ``bytes`` items releases it). The ring is new for
  every stream, as a new cache's blocks are: every pass pays its page faults, and malloc
  places a new 1 MiB ``bytearray`` 16 bytes past a page boundary, where receiving measured
  ~4x slower on this host (``recv_offsets.py``);
* ``ring``: as ``copy``, but each URL's ring is made once per process, page-aligned and
  touched, and reused by every pass: a cache whose blocks come back from a pool;
* ``source``: as ``ring``, through kithara-io's own network layer (``HttpSource.fetch`` of
  8 MiB ranges, ``readinto_piece``): what kithara-io's engine could reach on one thread.

    python bench/keep_bound.py many [--keep 8] [--passes 5]   # 32 streams x 8 MiB
    python bench/keep_bound.py seq [--keep 64]                 # one stream of 200 MB

Prints the median aggregate MB/s, CPU s/GiB and page faults per pass of each way.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import mmap
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional, cast
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # kithara_io, for ``source``

from _common import MB, MiB, ensure_random  # noqa: E402
from _servers import bench_nginx  # noqa: E402

WAYS = ("floor", "keep", "copy", "ring", "source")
RANGE = 8 * MiB  # the ``source`` way's requests (kithara-io's ``max_fetch``)


def ring_of(keep: int) -> List[memoryview]:
    """``keep`` page-aligned 1 MiB blocks, each page touched once."""
    blocks = []
    for _ in range(keep):
        block = mmap.mmap(-1, MiB)
        block.write(b"\0" * MiB)
        blocks.append(memoryview(block))
    return blocks


def stream(url: str, size: int, how: str, keep: int, ring: Optional[List[memoryview]] = None) -> int:
    if how == "source":
        return through_source(url, size, cast(List[memoryview], ring))
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    try:
        conn.request("GET", u.path)
        resp = conn.getresponse()
        kept: collections.deque = collections.deque(maxlen=keep)
        if how == "copy":
            ring = [memoryview(bytearray(MiB)) for _ in range(keep)]
        got = 0
        for i in range(size // MiB + 2):
            if ring is not None:
                view = ring[i % keep]
                n = resp.readinto(view)
                bytes(view[:n])  # the caller's bytes
            else:
                data = resp.read(MiB)
                n = len(data)
                if how == "keep":
                    kept.append(data)
            if n == 0:
                break
            got += n
        return got
    finally:
        conn.close()


def through_source(url: str, size: int, ring: List[memoryview]) -> int:
    from kithara_io.sources.http import HttpSource

    source = HttpSource(url)
    got = i = 0
    try:
        while got < size:
            end = min(size, got + RANGE)
            body = source.fetch(got, end)
            try:
                while body.position < end:
                    view = ring[i % len(ring)][: min(MiB, end - body.position)]
                    i += 1
                    n = body.readinto_piece(view)
                    if n == 0:
                        raise RuntimeError("source: short body")
                    bytes(view[:n])  # the caller's bytes
                    got += n
            finally:
                body.close()
        return got
    finally:
        source.close()


def one_way(urls: List[str], size: int, how: str, keep: int, passes: int) -> None:
    """In its own process: ``passes`` + 1 rounds of every URL at once; prints JSON."""
    rounds = []
    rings = {u: ring_of(keep) for u in urls} if how in ("ring", "source") else {}
    for p in range(passes + 1):
        got: List[int] = []
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        threads = [
            threading.Thread(target=lambda u=u: got.append(stream(u, size, how, keep, rings.get(u)))) for u in urls
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        seconds = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if got != [size] * len(urls):
            raise RuntimeError(f"{how}: short reads")
        if p:  # the first round warms up
            total = size * len(urls)
            cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
            rounds.append((total / seconds / MB, cpu / (total / (1 << 30)), r1.ru_minflt - r0.ru_minflt))
    rounds.sort()
    print(json.dumps(rounds[len(rounds) // 2]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["seq", "many"])
    ap.add_argument("--keep", type=int, help="MiB kept per stream (default: many 8, seq 64)")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--data", default="/tmp/kithara-bench-data")
    ap.add_argument("--way", help=argparse.SUPPRESS)  # the child's
    ap.add_argument("--urls", help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = 8 * MiB if args.case == "many" else 200 * MB
    keep = args.keep or (8 if args.case == "many" else 64)
    if args.way:
        one_way(args.urls.split(","), size, args.way, keep, args.passes)
        return 0
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    if args.case == "many":
        paths = [ensure_random(data / f"many{i:02d}_8MiB.bin", size) for i in range(32)]
    else:
        paths = [ensure_random(data / "random200MB.bin", size)]
    with bench_nginx(data) as srv:
        urls = ",".join(srv.url(p.name) for p in paths)
        results = {}
        for how in WAYS:
            cmd = [sys.executable, __file__, args.case, "--keep", str(keep), "--passes", str(args.passes)]
            out = subprocess.run([*cmd, "--way", how, "--urls", urls], capture_output=True, text=True, timeout=600, check=True)
            results[how] = json.loads(out.stdout)
    floor = results["floor"][0]
    for how in WAYS:
        rate, cpu, faults = results[how]
        print(f"{args.case} {how:6s} keep {keep:3d} MiB: {rate:6.0f} MB/s ({rate / floor:.2f}x floor)  CPU {cpu:.2f} s/GiB  {faults} page faults")
    return 0


if __name__ == "__main__":
    sys.exit(main())
