"""The event loop's lag while N streams read a throttled loopback server, three ways:

- ``aopen``: ``kithara_io.aopen`` (a worker thread per stream, the loop only awaits);
- ``to_thread``: ``kithara_io.open`` with each read in ``asyncio.to_thread`` (the loop's
  default executor: min(32, cores + 4) threads shared with everything else);
- ``blocking``: ``kithara_io.open`` read straight from the coroutines (what to avoid).

A probe task schedules itself every 1 ms and records how late it wakes. Each stream reads
``--mib`` MiB of its own part of a random file in 64 KiB reads. Run from the repository root:

    .venv/bin/python bench/aio_lag.py [--streams 8] [--rate 8e6] [--mib 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kithara_io  # noqa: E402
from tests.servers.ranged import RangedServer  # noqa: E402

MiB = 1 << 20
PIECE = 64 << 10


async def probe(stop: asyncio.Event, lags: list) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.001)
        lags.append(loop.time() - before - 0.001)


async def executor_probe(stop: asyncio.Event, waits: list) -> None:
    """Every 20 ms, a no-op through the loop's default executor (which asyncio's own DNS
    lookups use): how long it waits for a thread."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await loop.run_in_executor(None, int)
        waits.append(loop.time() - before)
        await asyncio.sleep(0.02)


async def read_aopen(url: str, part: int, size: int) -> int:
    async with await kithara_io.aopen(url, tail=0) as f:
        await f.seek(part * size)
        done = 0
        while done < size:
            done += len(await f.read(min(PIECE, size - done)))
        return done


async def read_to_thread(url: str, part: int, size: int) -> int:
    f = await asyncio.to_thread(kithara_io.open, url, tail=0)
    try:
        f.seek(part * size)
        done = 0
        while done < size:
            done += len(await asyncio.to_thread(f.read, min(PIECE, size - done)))
        return done
    finally:
        f.close()


async def read_blocking(url: str, part: int, size: int) -> int:
    with kithara_io.open(url, tail=0) as f:
        f.seek(part * size)
        done = 0
        while done < size:
            done += len(f.read(min(PIECE, size - done)))
            await asyncio.sleep(0)
        return done


async def measure(how, url: str, streams: int, size: int) -> dict:
    stop, lags, waits = asyncio.Event(), [], []
    task = asyncio.create_task(probe(stop, lags))
    pinger = asyncio.create_task(executor_probe(stop, waits))
    began = time.monotonic()
    total = sum(await asyncio.gather(*(how(url, i, size) for i in range(streams))))
    elapsed = time.monotonic() - began
    stop.set()
    await task
    await pinger
    lags.sort()
    pick = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] * 1e3  # noqa: E731
    return {"MB/s": total / elapsed / 1e6, "s": elapsed, "probes": len(lags), "p50 ms": pick(0.5),
            "p99 ms": pick(0.99), "max ms": lags[-1] * 1e3 if lags else float("nan"),
            "executor ms": max(waits) * 1e3 if waits else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--rate", type=float, default=8e6, help="the link's bytes/s")
    parser.add_argument("--mib", type=float, default=1.0, help="MiB each stream reads")
    args = parser.parse_args()
    size = int(args.mib * MiB)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "data.bin").write_bytes(os.urandom(size * args.streams))
        with RangedServer(tmp, bandwidth=args.rate) as srv:
            url = srv.url("data.bin")
            print(f"{args.streams} streams x {args.mib:g} MiB, link {args.rate / 1e6:g} MB/s, "
                  f"{os.cpu_count()} cores\n")
            print("| way | MB/s | s | probes | lag p50 ms | lag p99 ms | lag max ms | default executor max wait ms |\n"
                  "|---|---|---|---|---|---|---|---|")
            for name, how in (("aopen", read_aopen), ("to_thread", read_to_thread), ("blocking", read_blocking)):
                row = asyncio.run(measure(how, url, args.streams, size))
                print(f"| {name} | {row['MB/s']:.2f} | {row['s']:.2f} | {row['probes']} | {row['p50 ms']:.2f} | "
                      f"{row['p99 ms']:.2f} | {row['max ms']:.1f} | {row['executor ms']:.1f} |")


if __name__ == "__main__":
    main()
