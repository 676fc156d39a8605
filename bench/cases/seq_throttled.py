"""Case 1b: case 1 on a link of 100 MB/s. Does kithara-io saturate a real link?

The link model, chosen for honesty: the benchmark runs this case in a private network
namespace (``unshare --net``) whose loopback carries a ``tc tbf`` token bucket of 100 MB/s
(800 Mbit/s, 256 KiB burst, 20 ms queue). All connections, both directions, share that one
bucket, as they would share a real link: a client cannot go faster by opening more
connections. (nginx's ``limit_rate`` would be per connection, so a client with two fetches in
flight would get 200 MB/s; it is only the fallback when namespaces are unavailable, and the
result says so.)
"""

from __future__ import annotations

from typing import Any, Dict

from _common import MB, Context, log, row
from _servers import BenchNginx, in_private_netns, shape_loopback

from cases.seq import measure

NAME = "seq_throttled"
TITLE = "1b. sequential read(1 MiB), 100 MB/s link"
TIMEOUT = 300
RATE = 100 * MB
NETNS = True  # run.py runs it in a private network namespace (see _servers.shape_loopback)


def run(ctx: Context) -> Dict[str, Any]:
    if in_private_netns():
        qdisc = shape_loopback(RATE)
        model = f"tc tbf on loopback of a private network namespace, shared by all connections: {qdisc}"
        limit_rate = None
    else:
        model = "FALLBACK nginx limit_rate 100 MB/s PER CONNECTION (no network namespace: not root?)"
        limit_rate = RATE
        log("WARNING: " + model)
    with BenchNginx(ctx.data, limit_rate=limit_rate) as srv:
        res = measure(ctx, srv, ctx.big_size, "seq100")
    med = res["median"]
    ratio = med["kithara-io"] / med["floor"]
    rows = [
        row(
            "1 seq, 100 MB/s link" + ("" if limit_rate is None else " (FALLBACK: per-connection limit)"),
            f"read(1 MiB) of {res['size'] // MB} MB, MB/s",
            med,
            ratio=ratio,
            target=">= 0.95x floor",
            passed=ratio >= 0.95,
            fmt="{:.1f}",
        )
    ]
    return {"rows": rows, "results": res, "model": model, "rate": RATE}

