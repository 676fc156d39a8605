#!/usr/bin/env python3
"""How fast the socket fills a buffer, by where the buffer starts within a page.

One kept-alive ``http.client`` connection to the bench nginx; each measurement is one
``--mib`` MiB range GET received with ``readinto`` into a 1 MiB window of a page-aligned
anonymous mapping, the window starting ``offset`` bytes past a page boundary. Prints the
median time per offset and the offsets slower than 1.5x the median of all.

    python bench/recv_offsets.py [--step 8] [--mib 32] [--rounds 2]

Why it matters: malloc serves a new 1 MiB ``bytearray`` from its own mapping with the data
16 bytes past a page boundary (a block of a new cache, a ring made per stream), and on this
host (AMD EPYC, loopback from nginx's ``sendfile``) receiving there measured ~4x slower.
"""

from __future__ import annotations

import argparse
import http.client
import mmap
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MB, MiB, ensure_random  # noqa: E402
from _servers import bench_nginx  # noqa: E402

PAGE = mmap.PAGESIZE


def receive(conn: http.client.HTTPConnection, path: str, window: memoryview, size: int) -> float:
    started = time.perf_counter()
    conn.request("GET", path, headers={"Range": f"bytes=0-{size - 1}"})
    resp = conn.getresponse()
    got = 0
    for _ in range(size // len(window) + 2):
        n = resp.readinto(window)
        if n == 0:
            break
        got += n
    if got != size:
        raise RuntimeError(f"short body: {got} of {size}")
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", type=int, default=8, help="offsets 0, step, 2*step, ... < one page")
    ap.add_argument("--mib", type=int, default=32, help="MiB per measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default="/tmp/kithara-bench-data")
    args = ap.parse_args()
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    path = ensure_random(data / "random200MB.bin", 200 * MB)
    size = args.mib * MiB
    area = mmap.mmap(-1, MiB + PAGE)
    area.write(b"\0" * (MiB + PAGE))
    offsets = list(range(0, PAGE, args.step))
    times: dict = {o: [] for o in offsets}
    with bench_nginx(data) as srv:
        u = urlsplit(srv.url(path.name))
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            receive(conn, u.path, memoryview(area)[:MiB], size)  # warm up
            for _ in range(args.rounds):
                for o in offsets:
                    times[o].append(receive(conn, u.path, memoryview(area)[o : o + MiB], size))
        finally:
            conn.close()
    per = {o: statistics.median(t) for o, t in times.items()}
    typical = statistics.median(per.values())
    print(f"median of all offsets: {1000 * typical:.1f} ms per {args.mib} MiB ({size / typical / MB:.0f} MB/s)")
    slow = [o for o in offsets if per[o] > 1.5 * typical]
    for o in slow:
        print(f"  offset {o:4d}: {1000 * per[o]:.1f} ms ({per[o] / typical:.1f}x)")
    if not slow:
        print("  no offset slower than 1.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
