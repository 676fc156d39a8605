#!/usr/bin/env python3
"""A second stream of an origin while the first is open (a player preloading the next track,
a data job opening the next file): ``open`` + the first 4 KiB, then its first far
``read(64 KiB)`` (a random read: over libcurl), on a 50 ms RTT link.

    python bench/second_stream.py [--https] [--rounds 8]

Streams of one origin share their idle connections (``net.connections.SharedIdle``), so the
second one starts on a connection the first left: no TCP handshake (1 RTT) and, over https,
no TLS handshake (1 more RTT with TLS 1.3). Floors from ``http.client`` in the same run: a
4 KiB range GET on a fresh connection, and on a kept-alive one. Prints medians in ms.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import KiB, MiB, ensure_random, log  # noqa: E402
from _servers import DelayProxy, bench_nginx  # noqa: E402


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path, headers={"Range": f"bytes=0-{4 * KiB - 1}"})
    return conn.getresponse().read()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--https", action="store_true")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--data", default="/tmp/kithara-bench-data")
    args = ap.parse_args()
    import kithara_io

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    first, second = (ensure_random(data / f"second-stream-{i}.bin", 8 * MiB) for i in (0, 1))
    with bench_nginx(data, https=args.https) as srv:
        link = DelayProxy(srv.port, rtt=0.05, bandwidth=12.5e6, scheme="https" if args.https else "http")
        try:
            kw = {"verify": str(srv.tls.ca)} if srv.tls is not None else {}
            port = urlsplit(link.url(second.name)).port

            def connection() -> http.client.HTTPConnection:
                if srv.tls is None:
                    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                return http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=srv.tls.client_context())

            times: dict = {"kithara-io": [], "kithara-io far read": [], "fresh connection": [], "kept-alive connection": []}
            far = 6 * MiB
            for _ in range(args.rounds):
                with kithara_io.open(link.url(first.name), **kw) as playing:
                    playing.read(64 * KiB)
                    playing.seek(far)  # a random read: its libcurl connection is idle after it
                    playing.read(64 * KiB)
                    t = time.perf_counter()
                    with kithara_io.open(link.url(second.name), **kw) as nxt:
                        assert len(nxt.read(4 * KiB)) == 4 * KiB
                        times["kithara-io"].append(time.perf_counter() - t)
                        nxt.seek(far)
                        t = time.perf_counter()
                        assert len(nxt.read(64 * KiB)) == 64 * KiB
                        times["kithara-io far read"].append(time.perf_counter() - t)
                conn = connection()
                t = time.perf_counter()
                assert len(get(conn, "/" + second.name)) == 4 * KiB
                times["fresh connection"].append(time.perf_counter() - t)
                t = time.perf_counter()
                assert len(get(conn, "/" + second.name)) == 4 * KiB
                times["kept-alive connection"].append(time.perf_counter() - t)
                conn.close()
        finally:
            link.stop()
    scheme = "https" if args.https else "http"
    for name, values in times.items():
        log(f"{scheme}, 50 ms RTT: {name}: {1000 * statistics.median(values):.0f} ms "
            f"[{1000 * min(values):.0f}-{1000 * max(values):.0f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
