"""A long live stream pushed as fast as the server can: memory stays flat (issue #14).

Twenty minutes of a 320 kbit/s station (48 MB, with ICY metadata every 16000 bytes; twice
the buffer's bound when that is larger) read in a child process, so its peak resident memory
is its own."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.icy import IcyServer, Station, head_listeners, station_bytes

ROOT = Path(__file__).resolve().parent.parent
TOTAL = 20 * 60 * 320_000 // 8  # 48 MB: twenty minutes of the station
DEFAULT_BUDGET = 64 << 20  # the live buffer's bound when cache_budget is not given
SLACK_MB = 12  # pieces in flight, the interpreter's own allocations


def _run(url: str, total: int, *budget: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.live_memory_worker", url, str(total), *map(str, budget)],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(90)
@pytest.mark.parametrize("budget", [(), (16 << 20,)], ids=["default-budget", "16MiB-budget"])
def test_long_fast_push_keeps_memory_flat(budget):
    """Memory after the first MiB (one-time costs paid) grows by at most the buffer's bound,
    over a stream at least twice that long: how far the writer runs ahead of the reader
    depends on the machine's load, the bound must not."""
    bound = budget[0] if budget else DEFAULT_BUDGET
    total = max(TOTAL, 2 * bound)
    payload = os.urandom(1 << 20)  # pushed in a loop: no block of it repeats within a MiB
    with IcyServer() as server:
        url = server.add("/fast.mp3", Station(payload=payload, metaint=16000, icy_headers={"icy-br": "320"}))
        result = _run(url, total, *budget)
        joined = head_listeners(server.listeners("/fast.mp3"))[0].joined_at
    growth_mb = (result["rss_peak_kb"] - result["rss_warm_kb"]) / 1024
    print(f"live push of {total / 1e6:.0f} MB, budget {bound >> 20} MiB: RSS growth after the first MiB {growth_mb:.1f} MB")
    assert result["bytes"] == total and result["requests"] == 1
    assert result["sha256"] == hashlib.sha256(station_bytes(payload, joined, total)).hexdigest()
    assert growth_mb < bound / 2**20 + SLACK_MB, result
