#!/usr/bin/env python3
"""What one range request's size costs on the bench nginx: a 200 MB file read through one
keep-alive ``http.client`` connection as consecutive ``Range`` GETs of 1, 2, 4 ... 64 MiB
(``read(1 MiB)`` per call), and as one plain GET, MB/s.

    python bench/range_sizes.py [--passes 2]

Measured 2026-12-06 (quiet machine, two runs): GET 6238-6690, 1M 3155-3499, 2M 1197-1365,
4M 2015-2065, 8M 2901-3273, 16M 3658-4357, 64M 5813-7065 MB/s. A response of 2 MiB or more
on a kept-alive connection costs about 1.3 ms more than one of 1 MiB; one after another,
8 MiB ranges reach about half of one plain GET. The cause is not established: it is not
nginx's ``sendfile_max_chunk`` (the same with ``sendfile_max_chunk 0``).
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MB, MiB, ensure_random  # noqa: E402
from _servers import bench_nginx  # noqa: E402

SIZE = 200 * MB


def read_ranges(url: str, fetch: int) -> int:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    got = 0
    try:
        for start in range(0, SIZE, fetch or SIZE):
            headers = {"Range": f"bytes={start}-{min(SIZE, start + fetch) - 1}"} if fetch else {}
            conn.request("GET", u.path, headers=headers)
            resp = conn.getresponse()
            while True:
                data = resp.read(MiB)
                if not data:
                    break
                got += len(data)
    finally:
        conn.close()
    return got


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--data", default="/tmp/kithara-bench-data")
    args = ap.parse_args()
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    path = ensure_random(data / "random200MB.bin", SIZE)
    sizes = [0, 1, 2, 4, 8, 16, 32, 64]
    with bench_nginx(data) as srv:
        url = srv.url(path.name)
        read_ranges(url, 0)  # the file into the page cache
        for _ in range(args.passes):
            line = []
            for mib in sizes:
                t = time.perf_counter()
                if read_ranges(url, mib * MiB) != SIZE:
                    raise RuntimeError("short read")
                line.append(f"{'GET' if mib == 0 else f'{mib}M'} {SIZE / (time.perf_counter() - t) / MB:.0f}")
            print("  ".join(line), "MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
