#!/usr/bin/env python3
"""The bare shape of kithara-io's sequential read, without the engine, against the floor.

    python bench/shape_model.py [--blocks N] [--passes N] [--https]

``two threads``: one thread reads urllib3 ``read(1 MiB)`` pieces of one GET into a ring of
``--blocks`` 1 MiB blocks (a copy), the reader copies each block out to ``bytes`` (a second
copy), handing over through one condition. ``one thread``: the same two copies on one
thread. ``kithara-io``: the real stream (default options). Prints MB/s and the process's CPU
seconds per pass for each, so the cost of the shape (a cache that cycles through its memory,
a copy in and a copy out) can be told from the cost of the engine on top of it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import urllib3  # noqa: E402

from _common import MB, MiB, ensure_random, floor_read, open_client, read_through  # noqa: E402
from _servers import bench_nginx  # noqa: E402


def one_thread(pool: urllib3.PoolManager, url: str, ring: List[bytearray]) -> int:
    response = pool.request("GET", url, preload_content=False, retries=False)
    n = i = 0
    while True:
        data = response.read(MiB)
        if not data:
            return n
        block = ring[i % len(ring)]
        block[: len(data)] = data
        n += len(bytes(memoryview(block)[: len(data)]))
        i += 1


def two_threads(pool: urllib3.PoolManager, url: str, ring: List[bytearray]) -> int:
    cond = threading.Condition()
    filled: List[int] = []  # sizes of the blocks filled, in order
    state = {"consumed": 0, "done": False}

    def fetch() -> None:
        response = pool.request("GET", url, preload_content=False, retries=False)
        i = 0
        while True:
            with cond:
                cond.wait_for(lambda: len(filled) - state["consumed"] < len(ring))
            data = response.read(MiB)
            if data:
                ring[i % len(ring)][: len(data)] = data
            with cond:
                if data:
                    filled.append(len(data))
                else:
                    state["done"] = True
                cond.notify_all()
            if not data:
                return
            i += 1

    thread = threading.Thread(target=fetch)
    thread.start()
    n = i = 0
    while True:
        with cond:
            cond.wait_for(lambda: len(filled) > i or state["done"])
            if len(filled) <= i:
                break
            out = bytes(memoryview(ring[i % len(ring)])[: filled[i]])
            state["consumed"] += 1
            cond.notify_all()
        n += len(out)
        i += 1
    thread.join()
    return n


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=64, help="ring size in MiB (kithara-io's default budget: 64)")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--size", type=int, default=200, help="file size in MB")
    ap.add_argument("--https", action="store_true")
    ap.add_argument("--data", default="/tmp/kithara-bench-data")
    args = ap.parse_args(argv)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    path = ensure_random(data / f"random{args.size}MB.bin", args.size * MB)
    with bench_nginx(data, https=args.https) as srv:
        url = srv.url(path.name)
        tls = srv.tls
        pool = urllib3.PoolManager(ca_certs=str(tls.ca) if tls else None)
        ring = [bytearray(MiB) for _ in range(args.blocks)]

        def kithara() -> int:
            with open_client("kithara-io", url, tls) as f:
                return read_through(f, MiB, path.stat().st_size)

        clients: List[tuple] = [
            ("floor", lambda: floor_read(url, None, tls)),
            ("two threads", lambda: two_threads(pool, url, ring)),
            ("one thread", lambda: one_thread(pool, url, ring)),
            ("kithara-io", kithara),
        ]
        for rep in range(args.passes):
            cells = []
            for name, read in clients:
                cells.append(f"{name} {_timed(read)}")
            print(f"pass {rep}: " + " | ".join(cells), flush=True)
    return 0


def _timed(read: Callable[[], int]) -> str:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    n = read()
    seconds = time.perf_counter() - started
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return f"{n / seconds / MB:5.0f} MB/s {cpu:.2f} s CPU"


if __name__ == "__main__":
    sys.exit(main())
