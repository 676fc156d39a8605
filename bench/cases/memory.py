"""Case 5: peak RSS while streaming a file end to end with ``read(1 MiB)``, 256 MiB and 1 GiB.

Each (client, size) runs in a fresh child process (``cases.memory._child``), which reports ``VmRSS`` after its imports (baseline) and ``VmHWM`` (peak) at the end,
from ``/proc/self/status``: no case or client can inflate another's number.

kithara-io runs with ``cache_budget=64 MiB`` (the memory its sparse cache may hold). obstore
streams one ``obstore.get`` in chunks of at least 1 MiB (as in case 1).
Target: peak RSS <= that budget + 50 MB, for both sizes.
The files repeat one random MiB (fast to generate; the bytes are opaque to every client).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

from _common import CLIENTS, MB, MiB, Context, ensure_random, log, read_through, row, tagged, vm_status

NAME = "memory"
TITLE = "5. peak RSS while streaming"
TIMEOUT = 420
BUDGET = 64 * MiB  # kithara-io's cache_budget in this case


def _child(client: str, url: str, size: str) -> None:
    size = int(size)
    import requests  # noqa: F401  (every client imports it: part of the baseline)

    if client == "kithara-io":
        import kithara_io  # noqa: F401
    elif client == "fsspec":
        import fsspec.implementations.http  # noqa: F401
    elif client == "smart_open":
        import smart_open  # noqa: F401
    elif client == "obstore":
        import obstore  # noqa: F401
    import _obstore
    from _common import floor_read, open_client

    baseline = vm_status("VmRSS")
    started = time.perf_counter()
    if client == "floor":
        n = floor_read(url)
    elif client == "obstore":
        n = _obstore.read(url)
    else:
        options = {"cache_budget": BUDGET} if client == "kithara-io" else {}
        with open_client(client, url, **options) as f:
            n = read_through(f, MiB, size)
    seconds = time.perf_counter() - started
    print(json.dumps({"baseline_rss": baseline, "peak_rss": vm_status("VmHWM"), "bytes": n, "seconds": seconds}))


def _measure(client: str, url: str, size: int) -> Dict[str, Any]:
    bench = str(Path(__file__).resolve().parents[1])
    code = f"import sys; sys.path.insert(0, {bench!r}); from cases.memory import _child; _child(*sys.argv[1:])"
    cmd = [sys.executable, "-c", code, client, url, str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {client} failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["bytes"] != size:
        raise RuntimeError(f"{client}: streamed {res['bytes']} of {size} bytes")
    return res


def run(ctx: Context) -> Dict[str, Any]:
    from _servers import BenchNginx
    budget = BUDGET
    limit = budget + 50 * MB
    sizes = [64 * MiB, 256 * MiB] if ctx.quick else [256 * MiB, 1024 * MiB]
    results: Dict[str, Any] = {"budget": budget, "limit": limit, "sizes": {}}
    rows = []
    with BenchNginx(ctx.data) as srv:
        for size in sizes:
            path = ensure_random(ctx.data / f"pattern{size // MiB}MiB.bin", size, pattern=True)
            per: Dict[str, Any] = {}
            for client in CLIENTS:
                per[client] = _measure(client, tagged(srv.url(path.name), f"mem-{size}-{client}"), size)
                log(
                    f"memory {size // MiB} MiB {client:10s}: peak {per[client]['peak_rss'] / MB:.0f} MB "
                    f"(baseline {per[client]['baseline_rss'] / MB:.0f} MB), {size / per[client]['seconds'] / MB:.0f} MB/s"
                )
            results["sizes"][size] = per
            peak = {c: per[c]["peak_rss"] / MB for c in CLIENTS}
            label = f"{size // MiB} MiB" if size < 1024 * MiB else f"{size // (1024 * MiB)} GiB"
            rows.append(
                row(
                    "5 memory",
                    f"peak RSS streaming {label} (baseline {per['kithara-io']['baseline_rss'] / MB:.0f}), MB",
                    peak,
                    ratio=peak["kithara-io"] / peak["floor"],
                    target=f"<= budget {budget / MB:.0f} + 50 = {limit / MB:.0f} MB",
                    passed=per["kithara-io"]["peak_rss"] <= limit,
                    fmt="{:.0f}",
                )
            )
            if size >= 1024 * MiB:
                os.unlink(path)  # 1 GiB of disk and page cache back
    return {
        "rows": rows,
        "results": results,
        "model": "nginx on 127.0.0.1; one child process per client and size; VmHWM from /proc/self/status",
    }
