"""Case 2: 500 random ``seek + read(64 KiB)`` in the 200 MB file over loopback, ms per read.

Floor: one keep-alive ``http.client`` connection doing one ``Range`` GET per read. Each
client opens the file first (not timed), makes 20 warm-up reads, then the timed reads at
offsets drawn from a seeded generator (the same offsets for every client in a repeat). A
repeat uses a fresh stream, so nothing is served from a previous repeat's cache.
``cases.random_https`` runs the same over https (:func:`run_scheme`; the floor is then one
keep-alive ``http.client.HTTPSConnection``).

obstore: ``obstore.get_range`` per read on one ``HTTPStore`` (made with the open, not timed).
An information row adds what obstore's vectored read does when every offset is known up front:
one ``obstore.get_ranges`` call for all of them (coalesced, up to 10 requests in parallel), ms
per range. No file object can do that (a reader learns its next offset after this read), so it
is not compared with the others.
"""

from __future__ import annotations

import random
import time
from typing import Any, Dict, List

from _common import (
    CLIENTS,
    KiB,
    MB,
    Context,
    http_connection,
    kithara_stats,
    log,
    median,
    open_client,
    rotated,
    row,
    tagged,
)
from _servers import bench_nginx, scheme_note

import _obstore

NAME = "random"
TITLE = "2. random seek + read(64 KiB)"
TIMEOUT = 300
READ = 64 * KiB
WARMUP = 20


def offsets(seed: int, count: int, size: int) -> List[int]:
    rng = random.Random(seed)
    return [rng.randrange(0, size - READ) for _ in range(count)]


def floor_reads(url: str, positions: List[int], warm: List[int], tls=None) -> List[float]:
    conn, target = http_connection(url, tls)
    try:

        def get(pos: int) -> None:
            conn.request("GET", target, headers={"Range": f"bytes={pos}-{pos + READ - 1}"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 206 or len(body) != READ:
                raise RuntimeError(f"floor: status {resp.status}, {len(body)} bytes")

        for pos in warm:
            get(pos)
        times = []
        for pos in positions:
            t = time.perf_counter()
            get(pos)
            times.append(time.perf_counter() - t)
        return times
    finally:
        conn.close()


def obstore_reads(url: str, positions: List[int], warm: List[int], tls=None) -> List[float]:
    """``obstore.get_range`` per read on one store (its connection warmed by ``warm``)."""
    import obstore

    st = _obstore.store(url, tls)
    for pos in warm:
        obstore.get_range(st, "", start=pos, length=READ)
    times = []
    for pos in positions:
        t = time.perf_counter()
        data = obstore.get_range(st, "", start=pos, length=READ)
        times.append(time.perf_counter() - t)
        if len(data) != READ:
            raise RuntimeError(f"obstore: short read {len(data)} at {pos}")
    return times


def obstore_vectored(url: str, positions: List[int], warm: List[int], tls=None) -> float:
    """Seconds of one ``obstore.get_ranges`` of every position (after ``warm`` reads)."""
    import obstore

    st = _obstore.store(url, tls)
    for pos in warm:
        obstore.get_range(st, "", start=pos, length=READ)
    t = time.perf_counter()
    got = obstore.get_ranges(st, "", starts=positions, lengths=[READ] * len(positions))
    seconds = time.perf_counter() - t
    if [len(b) for b in got] != [READ] * len(positions):
        raise RuntimeError("obstore get_ranges: short ranges")
    return seconds


def client_reads(
    client: str, url: str, positions: List[int], warm: List[int], extra: Dict[str, Any], tls=None
) -> List[float]:
    with open_client(client, url, tls) as f:
        for pos in warm:
            f.seek(pos)
            f.read(READ)
        times = []
        for pos in positions:
            t = time.perf_counter()
            f.seek(pos)
            data = f.read(READ)
            times.append(time.perf_counter() - t)
            if len(data) != READ:
                raise RuntimeError(f"{client}: short read {len(data)} at {pos}")
        if client == "kithara-io":
            extra["stats"] = kithara_stats(f)
    return times


# https? -> (case label, target, maximum ratio, fsspec speed-up target or None): issue #24
# (no slower than obstore's get_range too); the fsspec speed-up is issue #13's
TARGETS = {
    False: ("2 random, loopback", "<= 1.3x floor, no slower than obstore", 1.3, 8.0),
    True: ("2 random, loopback, HTTPS", "<= 1.3x floor, no slower than obstore", 1.3, None),
}


def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=False)


def run_scheme(ctx: Context, https: bool) -> Dict[str, Any]:
    """The case over http or https (same file, offsets, clients and nginx configuration)."""
    case, target, limit, speedup_min = TARGETS[https]
    scheme = "https" if https else "http"
    count = 100 if ctx.quick else 500
    path = ctx.big_file()
    size = path.stat().st_size
    per_read: Dict[str, list] = {c: [] for c in CLIENTS}
    runs: Dict[str, list] = {c: [] for c in CLIENTS}
    vectored: List[Dict[str, Any]] = []
    with bench_nginx(ctx.data, https=https) as srv:
        note = scheme_note(srv)
        for rep in range(ctx.repeats):
            positions = offsets(1000 + rep, count, size)
            warm = offsets(2000 + rep, WARMUP, size)
            for client in rotated(CLIENTS, rep):
                tag = f"random-{scheme}-{client}-{rep}"
                url = tagged(srv.url(path.name), tag)
                extra: Dict[str, Any] = {}
                if client == "floor":
                    times = floor_reads(url, positions, warm, srv.tls)
                elif client == "obstore":
                    times = obstore_reads(url, positions, warm, srv.tls)
                else:
                    times = client_reads(client, url, positions, warm, extra, srv.tls)
                reqs = srv.settled_requests(tag)
                ms = 1000 * sum(times) / len(times)
                srt = sorted(times)
                result = {
                    "ms_per_read": ms,
                    "p50_ms": 1000 * srt[len(srt) // 2],
                    "p95_ms": 1000 * srt[int(len(srt) * 0.95)],
                    "max_ms": 1000 * srt[-1],
                    "requests": len(reqs),
                    "bytes_sent": sum(e["bytes"] for e in reqs),
                    **extra,
                }
                per_read[client].append(ms)
                runs[client].append(result)
                log(
                    f"random {scheme} {client:10s} rep {rep}: {ms:7.2f} ms/read (p50 {result['p50_ms']:.2f}, "
                    f"p95 {result['p95_ms']:.2f}), {len(reqs)} requests, {result['bytes_sent'] / MB:.0f} MB sent"
                )
            tag = f"random-{scheme}-obstore-ranges-{rep}"
            seconds = obstore_vectored(tagged(srv.url(path.name), tag), positions, warm, srv.tls)
            reqs = srv.settled_requests(tag)
            vectored.append({"ms_per_range": 1000 * seconds / count, "requests": len(reqs),
                             "bytes_sent": sum(e["bytes"] for e in reqs)})
            log(f"random {scheme} obstore get_ranges rep {rep}: {vectored[-1]['ms_per_range']:.3f} ms/range, "
                f"{len(reqs)} requests")
    med = {c: median(v) for c, v in per_read.items()}
    ratio = med["kithara-io"] / med["floor"]
    speedup = med["fsspec"] / med["kithara-io"]
    rows = [
        row(
            case,
            f"{count}x seek + read(64 KiB), ms per read",
            med,
            ratio=ratio,
            target=target,
            passed=ratio <= limit and med["kithara-io"] <= med["obstore"],
            fmt="{:.2f}",
        ),
        row(
            case,
            "fsspec time / kithara-io time",
            {"kithara-io": speedup},
            target=f">= {speedup_min:.0f}x" if speedup_min else "(no target)",
            passed=speedup >= speedup_min if speedup_min else None,
            fmt="{:.1f}x",
        ),
        row(
            case,
            f"obstore.get_ranges of all {count} offsets known up front, ms per range (not a file object)",
            {"obstore": median([v["ms_per_range"] for v in vectored]),
             "floor": med["floor"]},
            target="(information)",
            fmt="{:.3f}",
        ),
    ]
    return {
        "rows": rows,
        "results": {"count": count, "size": size, "ms_per_read": per_read, "runs": runs, "median": med,
                    "obstore_get_ranges": vectored},
        "model": "nginx on 127.0.0.1, no shaping" + note + "; open and 20 warm-up reads not timed",
    }
