#!/usr/bin/env python3
"""Run one kithara-io access pattern against a local nginx, for a profiler to watch.

    python bench/profile_kithara.py seq|random|open|many [--size MB] [--count N] [--streams N]
                                    [--https] [--cprofile]
    py-spy record --threads --idle -f speedscope -o prof.json -- \\
        .venv/bin/python bench/profile_kithara.py seq

``many`` is case 7: ``--streams`` (32) distinct files of ``--size`` MiB (8), read at once with
``read(1 MiB)`` from one thread each, on the default Downloader; it prints the aggregate MB/s
and the CPU seconds per GiB. ``--https`` serves over TLS (a CA made for the run, which the
streams verify). ``--cprofile`` profiles every thread with cProfile (a ``Thread.run``
wrapper) and prints the top functions by own time, summed over threads. Prints the stream's
stats and the timing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import KiB, MB, MiB, ensure_random, kithara_stats, open_client, read_through  # noqa: E402
from _servers import bench_nginx  # noqa: E402
from tests.servers.tls import TlsFiles  # noqa: E402


def pattern_seq(urls: List[str], size: int, count: int, tls: Optional[TlsFiles]) -> None:
    with open_client("kithara-io", urls[0], tls) as f:
        n = read_through(f, MiB, size)
        print("stats", kithara_stats(f))
    assert n == size, n


def pattern_random(urls: List[str], size: int, count: int, tls: Optional[TlsFiles]) -> None:
    rng = random.Random(1)
    lat = []
    with open_client("kithara-io", urls[0], tls) as f:
        for _ in range(count):
            pos = rng.randrange(0, size - 64 * KiB)
            t = time.perf_counter()
            f.seek(pos)
            assert len(f.read(64 * KiB)) == 64 * KiB
            lat.append(time.perf_counter() - t)
        print("stats", kithara_stats(f))
    lat.sort()
    print(f"per read: mean {1000 * sum(lat) / len(lat):.2f} ms, p50 {1000 * lat[len(lat) // 2]:.2f} ms")


def pattern_open(urls: List[str], size: int, count: int, tls: Optional[TlsFiles]) -> None:
    lat = []
    for _ in range(count):
        t = time.perf_counter()
        with open_client("kithara-io", urls[0], tls) as f:
            f.read(64 * KiB)
            lat.append(time.perf_counter() - t)
    lat.sort()
    print(f"open + read(64 KiB): p50 {1000 * lat[len(lat) // 2]:.2f} ms")


def pattern_many(urls: List[str], size: int, count: int, tls: Optional[TlsFiles]) -> None:
    """Every URL at once, one thread each, default Downloader (what case 7 times)."""
    from cases.many import read_streams

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    read_streams("kithara-io", urls, size, tls)
    seconds = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    total = size * len(urls)
    print(
        f"{len(urls)} streams x {size // MiB} MiB: {total / seconds / MB:.0f} MB/s aggregate, "
        f"{cpu / (total / (1024 * MiB)):.2f} CPU s/GiB (user {ru1.ru_utime - ru0.ru_utime:.2f} s, "
        f"sys {ru1.ru_stime - ru0.ru_stime:.2f} s)"
    )


PATTERNS = {"seq": pattern_seq, "random": pattern_random, "open": pattern_open, "many": pattern_many}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern", choices=sorted(PATTERNS))
    ap.add_argument("--size", type=int, help="file size in MB (default 200; many: MiB per stream, 8)")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--streams", type=int, default=32, help="many: concurrent streams (distinct files)")
    ap.add_argument("--https", action="store_true", help="serve over TLS (a CA made for the run)")
    ap.add_argument("--data", help="directory for the test file (default: a temporary one)")
    ap.add_argument("--cprofile", action="store_true")
    args = ap.parse_args()
    tmp = None
    data = Path(args.data) if args.data else Path(tmp := tempfile.mkdtemp(prefix="kithara-prof-"))
    try:
        if args.pattern == "many":  # the names of case 7's files: --data can reuse them
            size = (args.size or 8) * MiB
            paths = [ensure_random(data / f"many{i:02d}_{size // MiB}MiB.bin", size) for i in range(args.streams)]
        else:
            size = (args.size or 200) * MB
            paths = [ensure_random(data / f"random{size // MB}MB.bin", size)]
        import kithara_io  # noqa: F401  (before the timing: profiles show the work, not imports)
        from cases import many  # noqa: F401

        with bench_nginx(data, https=args.https) as srv:
            urls = [srv.url(p.name) for p in paths]
            prof = None
            if args.cprofile:
                _install_thread_profiling()
                prof = cProfile.Profile()
                prof.enable()
            started = time.perf_counter()
            PATTERNS[args.pattern](urls, size, args.count, srv.tls)
            elapsed = time.perf_counter() - started
            print(f"{args.pattern}: {elapsed:.2f}s" + (f", {size / elapsed / MB:.0f} MB/s" if args.pattern == "seq" else ""))
            if prof is not None:
                prof.disable()
                stats = pstats.Stats(prof)
                for p in _THREAD_PROFILES:
                    try:
                        stats.add(p)
                    except TypeError:
                        pass
                out = io.StringIO()
                stats.stream = out
                stats.sort_stats("tottime").print_stats(25)
                print(out.getvalue())
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


_THREAD_PROFILES: list = []


def _install_thread_profiling() -> None:
    """Start a cProfile.Profile in every thread started from now on (Thread.run wrapper)."""
    original = threading.Thread.run

    def run(self):
        p = cProfile.Profile()
        _THREAD_PROFILES.append(p)
        p.enable()
        try:
            original(self)
        finally:
            p.disable()

    threading.Thread.run = run


if __name__ == "__main__":
    sys.exit(main())
