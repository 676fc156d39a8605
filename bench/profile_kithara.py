#!/usr/bin/env python3
"""Run one kithara-io access pattern against a local nginx, for a profiler to watch.

    python bench/profile_kithara.py seq|random|open [--size MB] [--count N] [--cprofile]
    py-spy record --threads --idle -f speedscope -o prof.json -- \\
        .venv/bin/python bench/profile_kithara.py seq

``--cprofile`` profiles every thread with cProfile (``threading.setprofile``) and prints the
top functions by own time, summed over threads. Prints the stream's stats and the timing.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import KiB, MB, MiB, ensure_random, kithara_stats, read_through  # noqa: E402
from _servers import BenchNginx  # noqa: E402


def pattern_seq(url: str, size: int, count: int) -> None:
    import kithara_io

    with kithara_io.open(url) as f:
        n = read_through(f, MiB, size)
        print("stats", kithara_stats(f))
    assert n == size, n


def pattern_random(url: str, size: int, count: int) -> None:
    import kithara_io

    rng = random.Random(1)
    lat = []
    with kithara_io.open(url) as f:
        for _ in range(count):
            pos = rng.randrange(0, size - 64 * KiB)
            t = time.perf_counter()
            f.seek(pos)
            assert len(f.read(64 * KiB)) == 64 * KiB
            lat.append(time.perf_counter() - t)
        print("stats", kithara_stats(f))
    lat.sort()
    print(f"per read: mean {1000 * sum(lat) / len(lat):.2f} ms, p50 {1000 * lat[len(lat) // 2]:.2f} ms")


def pattern_open(url: str, size: int, count: int) -> None:
    import kithara_io

    lat = []
    for _ in range(count):
        t = time.perf_counter()
        with kithara_io.open(url) as f:
            f.read(64 * KiB)
            lat.append(time.perf_counter() - t)
    lat.sort()
    print(f"open + read(64 KiB): p50 {1000 * lat[len(lat) // 2]:.2f} ms")


PATTERNS = {"seq": pattern_seq, "random": pattern_random, "open": pattern_open}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern", choices=sorted(PATTERNS))
    ap.add_argument("--size", type=int, default=200, help="file size in MB")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--data", help="directory for the test file (default: a temporary one)")
    ap.add_argument("--cprofile", action="store_true")
    args = ap.parse_args()
    tmp = None
    data = Path(args.data) if args.data else Path(tmp := tempfile.mkdtemp(prefix="kithara-prof-"))
    try:
        path = ensure_random(data / f"random{args.size}MB.bin", args.size * MB)
        with BenchNginx(data) as srv:
            url = srv.url(path.name)
            prof = None
            if args.cprofile:
                _install_thread_profiling()
                prof = cProfile.Profile()
                prof.enable()
            started = time.perf_counter()
            PATTERNS[args.pattern](url, path.stat().st_size, args.count)
            elapsed = time.perf_counter() - started
            print(f"{args.pattern}: {elapsed:.2f}s" + (f", {path.stat().st_size / elapsed / MB:.0f} MB/s" if args.pattern == "seq" else ""))
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
