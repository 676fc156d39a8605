#!/usr/bin/env python3
"""HTTP/2 or HTTP/1.1 for libcurl's small ranges over https: what speaking HTTP/2 where the
server offers it costs per cold random ``seek`` + ``read(64 KiB)``.

    python bench/http2.py [--count 400] [--passes 7]

One nginx offering ``h2`` by ALPN and one offering only ``http/1.1``, same files, same
certificates. Rows: kithara-io (its random reads go over libcurl, so over HTTP/2 on the
first server), and bare pycurl easy handles asking for each version. Passes alternate the
ways on the same offsets; medians of the ms per read are printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import Http2NginxServer, NginxServer  # noqa: E402
from tests.servers.tls import TlsFiles, make_tls_files  # noqa: E402

READ = 64 * 1024
SIZE = 64 << 20


def _kithara(url: str, tls: TlsFiles, offsets: List[int]) -> float:
    import kithara_io

    with kithara_io.open(url, verify=str(tls.ca), tail=0) as f:
        for pos in offsets[:20]:  # warm-up: open, first connections
            f.seek(pos)
            f.read(READ)
        started = time.perf_counter()
        for pos in offsets[20:]:
            f.seek(pos)
            f.read(READ)
        return time.perf_counter() - started


def _pycurl(version_name: str) -> Callable[[str, TlsFiles, List[int]], float]:
    def run(url: str, tls: TlsFiles, offsets: List[int]) -> float:
        import pycurl

        curl = pycurl.Curl()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.CAINFO, str(tls.ca))
        curl.setopt(pycurl.HTTP_VERSION, getattr(pycurl, version_name))
        curl.setopt(pycurl.BUFFERSIZE, READ)
        chunks: List[bytes] = []
        curl.setopt(pycurl.WRITEFUNCTION, chunks.append)
        started = 0.0
        for i, pos in enumerate(offsets):
            if i == 20:
                started = time.perf_counter()
            curl.setopt(pycurl.RANGE, f"{pos}-{pos + READ - 1}")
            chunks.clear()
            curl.perform()
        elapsed = time.perf_counter() - started
        curl.close()
        return elapsed

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kithara-bench-h2-") as d:
        root = Path(d)
        (root / "f.bin").write_bytes(random.Random(1).randbytes(SIZE))
        tls = make_tls_files(root)
        with Http2NginxServer(root, tls=tls) as h2, NginxServer(root, tls=tls) as h1:
            ways = {
                "kithara-io, server offers h2": (_kithara, h2),
                "kithara-io, server offers http/1.1 only": (_kithara, h1),
                "pycurl asking HTTP/2 (h2 server)": (_pycurl("CURL_HTTP_VERSION_2TLS"), h2),
                "pycurl asking HTTP/1.1 (h2 server)": (_pycurl("CURL_HTTP_VERSION_1_1"), h2),
                "pycurl asking HTTP/1.1 (http/1.1 server)": (_pycurl("CURL_HTTP_VERSION_1_1"), h1),
            }
            times: Dict[str, List[float]] = {name: [] for name in ways}
            for p in range(args.passes):
                rng = random.Random(p)
                offsets = [rng.randrange(0, SIZE - READ) for _ in range(args.count + 20)]
                for name, (run, server) in ways.items():
                    times[name].append(run(server.url("f.bin"), tls, offsets) / args.count * 1e3)
    for name, values in times.items():
        print(f"{name:42s} {statistics.median(values):.3f} ms per read  (all: {sorted(round(v, 3) for v in values)})")


if __name__ == "__main__":
    main()
