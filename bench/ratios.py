#!/usr/bin/env python3
"""Quick ratios of one process, for checking a change: the floor, obstore and kithara-io
alternate, pass after pass, and the median of each and of each pass's ratio is printed with
the client CPU per GiB (``getrusage`` around each pass). Much shorter than ``run.py``.

    python bench/ratios.py seq [--https] [--passes 7] [--size 200] [--data DIR] [--option NAME=VALUE]
    python bench/ratios.py random [--https] [--passes 5] [--count 300]
    python bench/ratios.py partial [--passes 5] [--count 2000]

``partial``: kithara-io alone: thread CPU per ``read(8192)`` over bytes already held of a
stream that is not held whole (the first 24 MiB read, then read again from 0), best pass:
the per-read cost of planning on a partly cached stream.

``seq``: ``read(1 MiB)`` of the whole file (floor: one ``requests`` GET, ``iter_content``;
obstore: ``get`` streamed). ``random``: ``seek`` + ``read(64 KiB)`` at seeded offsets, open
not timed (floor: one keep-alive ``http.client`` connection; obstore: ``get_range``).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import KiB, MB, MiB, ensure_random, floor_read, http_connection, open_client, read_through  # noqa: E402
from _servers import bench_nginx  # noqa: E402

import _obstore  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _usage() -> List[float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return [r.ru_utime, r.ru_stime, r.ru_minflt, r.ru_nvcsw + r.ru_nivcsw]


def seq_clients(url: str, size: int, tls, **kithara_kw) -> Dict[str, Callable[[], int]]:
    def kithara() -> int:
        with open_client("kithara-io", url, tls, **kithara_kw) as f:
            return read_through(f, MiB, size)

    return {
        "floor": lambda: floor_read(url, size, tls),
        "obstore": lambda: _obstore.read(url, size, tls),
        "kithara-io": kithara,
    }


def random_clients(url: str, size: int, count: int, tls, **kithara_kw) -> Dict[str, Callable[[], int]]:
    import obstore

    rng = random.Random(7)
    offsets: List[int] = []

    def new_offsets() -> None:  # each pass reads new places (kithara-io's cache is not cold otherwise)
        offsets[:] = [rng.randrange(0, size - 64 * KiB) for _ in range(count)]

    new_offsets()
    conn, target = http_connection(url, tls)
    store = _obstore.store(url, tls)
    kithara_cm = open_client("kithara-io", url, tls, **kithara_kw)
    f = kithara_cm.__enter__()
    f.read(64 * KiB)

    def floor() -> int:
        n = 0
        for pos in offsets:
            conn.request("GET", target, headers={"Range": f"bytes={pos}-{pos + 64 * KiB - 1}"})
            n += len(conn.getresponse().read())
        return n

    def obs() -> int:
        return sum(len(obstore.get_range(store, "", start=pos, length=64 * KiB)) for pos in offsets)

    def kithara(keep=kithara_cm) -> int:  # holds the context manager: its stream stays open
        n = 0
        for pos in offsets:
            f.seek(pos)
            n += len(f.read(64 * KiB))
        return n

    clients = {"floor": floor, "obstore": obs, "kithara-io": kithara}
    return {name: _then(fn, new_offsets) if name == "kithara-io" else fn for name, fn in clients.items()}


def _then(fn: Callable[[], int], after: Callable[[], None]) -> Callable[[], int]:
    def run() -> int:
        n = fn()
        after()
        return n

    return run


def partial(url: str, passes: int, count: int, tls) -> int:
    with open_client("kithara-io", url, tls) as f:
        f.read(24 * MiB)
        best = None
        for _ in range(passes):
            f.seek(0)
            t0 = time.thread_time()
            for _ in range(count):
                f.read(8192)
            per = (time.thread_time() - t0) / count
            best = per if best is None else min(best, per)
        print(f"read(8192) on a partly cached stream: best {best * 1e6:.1f} us thread CPU; {f.stats()}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern", choices=["seq", "random", "partial"])
    ap.add_argument("--https", action="store_true")
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--size", type=int, default=200, help="file size in MB")
    ap.add_argument("--count", type=int, default=300, help="random, partial: reads per pass")
    ap.add_argument("--data", help="directory for the test file (kept)")
    ap.add_argument(
        "--option", action="append", default=[], metavar="NAME=VALUE",
        help="a kithara-io option (an integer; 'None'), e.g. read_ahead=4194304; repeatable",
    )
    args = ap.parse_args()
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="kithara-ratios-"))
    size = args.size * MB
    path = ensure_random(data / f"random{size // MB}MB.bin", size)
    import kithara_io  # noqa: F401

    kw = {name: None if value == "None" else int(value) for name, value in (o.split("=", 1) for o in args.option)}

    with bench_nginx(data, https=args.https) as srv:
        url = srv.url(path.name)
        if args.pattern == "partial":
            return partial(url, args.passes, args.count, srv.tls)
        if args.pattern == "seq":
            clients = seq_clients(url, size, srv.tls, **kw)
            unit = size
        else:
            clients = random_clients(url, size, args.count, srv.tls, **kw)
            unit = args.count * 64 * KiB
        times: Dict[str, List[float]] = {c: [] for c in clients}
        cpus: Dict[str, List[float]] = {c: [] for c in clients}
        usage: Dict[str, List[List[float]]] = {c: [] for c in clients}
        for fn in clients.values():  # warm-up
            fn()
        for p in range(args.passes):
            order = list(clients)[p % 3 :] + list(clients)[: p % 3]
            for name in order:
                u0, c0, t0 = _usage(), _cpu(), time.perf_counter()
                n = clients[name]()
                t, c = time.perf_counter() - t0, _cpu() - c0
                usage[name].append([b - a for a, b in zip(u0, _usage())])
                if n != unit:
                    raise RuntimeError(f"{name}: {n} of {unit} bytes")
                times[name].append(t)
                cpus[name].append(c)
    gib = unit / (1 << 30)
    med = {c: statistics.median(v) for c, v in times.items()}
    for name in clients:
        if args.pattern == "seq":
            speed = f"{unit / med[name] / MB:8.0f} MB/s"
        else:
            speed = f"{1000 * med[name] / args.count:8.3f} ms/read"
        ratios = [f / k for f, k in zip(times["floor"], times[name])]
        print(
            f"{name:10s} {speed}  ratio vs floor (speed) median {statistics.median(ratios):.2f}"
            f" [{min(ratios):.2f}-{max(ratios):.2f}]  CPU {statistics.median(cpus[name]) / gib:.2f} s/GiB"
        )
    for name in clients:
        cols = list(zip(*usage[name]))
        user, sys_, faults, switches = (statistics.median(c) for c in cols)
        print(f"{name:10s} per pass: user {user:.3f} s, sys {sys_:.3f} s, {faults:.0f} page faults, {switches:.0f} context switches")
    k = times["kithara-io"]
    vs_obs = [o / x for o, x in zip(times["obstore"], k)]
    print(f"kithara-io speed / obstore speed: median {statistics.median(vs_obs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
