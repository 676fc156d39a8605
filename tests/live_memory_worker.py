"""Child process of the live memory test: ``python -m tests.live_memory_worker URL TOTAL [BUDGET]``.

Reads ``TOTAL`` bytes of a live stream as fast as it can and prints one JSON line: resident
memory before the open, after the first MiB and at its peak (kB, from /proc/self/status),
and the SHA-256 of the bytes read, so the parent checks both the bound and the content.
"""

from __future__ import annotations

import hashlib
import json
import sys

import kithara_io


WARM_UP = 1 << 20  # bytes read before the steady state is measured from


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def main() -> None:
    url, total = sys.argv[1], int(sys.argv[2])
    options = {"cache_budget": int(sys.argv[3]), "max_fetch": 1 << 20} if len(sys.argv) > 3 else {}
    before = _status("VmRSS")
    digest = hashlib.sha256()
    got, warm = 0, None
    with kithara_io.open(url, **options) as f:
        while got < total:
            chunk = f.read(min(64 * 1024, total - got))
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
            if warm is None and got >= WARM_UP:
                warm = _status("VmRSS")  # one-time costs (lazy imports, first request) are in
        stats = f.stats()
    print(json.dumps({
        "rss_before_kb": before, "rss_warm_kb": warm, "rss_peak_kb": _status("VmHWM"), "bytes": got,
        "sha256": digest.hexdigest(), "requests": stats.requests,
    }), flush=True)


if __name__ == "__main__":
    main()
