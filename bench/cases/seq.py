"""Case 1: sequential ``read(1 MiB)`` of a 200 MB random file over loopback, MB/s.

Floor: one ``requests`` GET of the whole file read with ``iter_content(1 MiB)``. Every client's
time includes its open (first request); each run uses a fresh client (no warm connection).
obstore: one ``obstore.get`` streamed in chunks of at least 1 MiB (its documented sequential
scan; a fresh ``HTTPStore`` per run). One warm-up pass per client (32 MB: imports, page
cache), then 5 full passes with the client order rotated per repeat; the table shows the
median.
``cases.seq_https`` runs the same over https (:func:`run_scheme`).
"""

from __future__ import annotations

import time
from typing import Any, Dict

from _common import (
    CLIENTS,
    MB,
    MiB,
    Context,
    floor_read,
    kithara_stats,
    log,
    median,
    open_client,
    read_through,
    rotated,
    row,
    tagged,
)
from _servers import BenchNginx, bench_nginx, scheme_note

import _obstore

NAME = "seq"
TITLE = "1. sequential read(1 MiB)"
TIMEOUT = 300
REPEATS = 5


def read_once(client: str, url: str, size: int, tls=None) -> Dict[str, Any]:
    started = time.perf_counter()
    extra: Dict[str, Any] = {}
    if client == "floor":
        n = floor_read(url, size, tls)
    elif client == "obstore":
        n = _obstore.read(url, size, tls)
    else:
        with open_client(client, url, tls) as f:
            n = read_through(f, MiB, size)
            if client == "kithara-io":
                extra["stats"] = kithara_stats(f)
    seconds = time.perf_counter() - started
    if n < size:
        raise RuntimeError(f"{client}: read {n} of {size} bytes")
    return {"mb_s": size / seconds / MB, "seconds": seconds, **extra}


def measure(ctx: Context, srv: BenchNginx, size: int, label: str) -> Dict[str, Any]:
    path = ctx.big_file()
    total = path.stat().st_size
    size = min(size, total)
    warm = min(size, 32 * MB)
    for client in CLIENTS:
        read_once(client, tagged(srv.url(path.name), f"{label}-warm-{client}"), warm, srv.tls)
    samples: Dict[str, list] = {c: [] for c in CLIENTS}
    runs: Dict[str, list] = {c: [] for c in CLIENTS}
    for rep in range(ctx.reps(REPEATS)):
        for client in rotated(CLIENTS, rep):
            tag = f"{label}-{client}-{rep}"
            result = read_once(client, tagged(srv.url(path.name), tag), size, srv.tls)
            result["requests"] = len(srv.settled_requests(tag))
            samples[client].append(result["mb_s"])
            runs[client].append(result)
            log(f"{label} {client:10s} rep {rep}: {result['mb_s']:7.1f} MB/s, {result['requests']} requests")
    return {"size": size, "samples": samples, "runs": runs, "median": {c: median(v) for c, v in samples.items()}}


# https? -> (case label, target, minimum ratio, ahead of obstore too): the targets of issue #24
TARGETS = {
    False: ("1 seq, loopback", ">= 0.8x floor, ahead of obstore", 0.8, True),
    True: ("1 seq, loopback, HTTPS", ">= 0.9x floor", 0.9, False),
}


def run_scheme(ctx: Context, https: bool) -> Dict[str, Any]:
    """The case over http or https (same file, same clients, same nginx configuration)."""
    with bench_nginx(ctx.data, https=https) as srv:
        res = measure(ctx, srv, ctx.big_size, "seqs" if https else "seq")
        model = "nginx on 127.0.0.1, no shaping" + scheme_note(srv)
    med = res["median"]
    ratio = med["kithara-io"] / med["floor"]
    case, target, minimum, beat_obstore = TARGETS[https]
    ahead = med["kithara-io"] > med["obstore"] if beat_obstore else True
    rows = [
        row(
            case,
            f"read(1 MiB) of {res['size'] // MB} MB, MB/s",
            med,
            ratio=ratio,
            target=target,
            passed=ratio >= minimum and ahead,
            fmt="{:.0f}",
        )
    ]
    return {"rows": rows, "results": res, "model": model}


def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=False)
