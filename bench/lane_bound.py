#!/usr/bin/env python3
"""Where case ``random``'s time goes above the floor, with kithara-io's own byte cache kept:
four ways of a cold ``seek`` + ``read(64 KiB)`` alternate, pass after pass, on one nginx.

    python bench/lane_bound.py [--passes 10] [--count 70] [--data DIR]

* ``floor``: one kept-alive ``http.client`` connection (case ``random``'s floor).
* ``lane``: one libcurl easy handle (``CURLOPT_RANGE``, the head and body appended to lists
  in C), the status and ``Content-Range`` checked, the body stored as one piece in a
  stream's ``SparseCache`` under a claim and read back out of it: what a reader would cost
  with a minimal range request and no engine.
* ``direct``: the same, the request through kithara-io's network layer (``HttpSource.fetch``:
  the policy, the pool, ``Client``, ``CurlConnection``, validation).
* ``kithara-io``: ``Stream.seek`` + ``read`` (the engine: planning, the fetch command and
  the Downloader's place, the fetch loop, completion).

So ``lane`` -> ``direct`` is the network layer's Python over libcurl, ``direct`` ->
``kithara-io`` the engine's. The offsets are distinct 64 KiB slots (no read finds bytes an
earlier one brought), new for every pass; wall and process CPU per read, medians over passes.
The ``lane`` and ``direct`` ways reach into a stream's cache (a prototype, not an API).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MB, KiB, ensure_random
from _servers import bench_nginx

import kithara_io
from kithara_io.reading.blocks import joined

READ = 64 * KiB
_CONTENT_RANGE = re.compile(rb"content-range: *bytes (\d+)-(\d+)/(\d+)", re.I)


def ways(url: str) -> Dict[str, Callable[[List[int]], None]]:
    import pycurl

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    f = kithara_io.open(url)
    f.read(READ)
    # The stream whose cache lane and direct fill: opened, never read (no read-ahead), so
    # it holds only the first 64 KiB; a claim must never cover bytes a cache holds.
    g = kithara_io.open(url, tail=0)
    reader = g._reader
    cache, lock, source = reader._cache, reader._lock, reader._source
    ids = itertools.count(1 << 40)  # claim ids no fetch of the stream uses
    easy = pycurl.Curl()
    head: List[bytes] = []
    chunks: List[bytes] = []
    easy.setopt(pycurl.URL, url)
    easy.setopt(pycurl.HEADERFUNCTION, head.append)
    easy.setopt(pycurl.WRITEFUNCTION, chunks.append)
    easy.setopt(pycurl.BUFFERSIZE, READ)

    def floor(offsets: List[int]) -> None:
        for pos in offsets:
            conn.request("GET", parts.path, headers={"Range": f"bytes={pos}-{pos + READ - 1}"})
            if len(conn.getresponse().read()) != READ:
                raise RuntimeError("short read")

    def cached(pos: int, receive: Callable[[int, int], bytes], _keep: object = g) -> None:  # g stays open
        """Claim ``[pos, pos + READ)``, store what ``receive`` brings as one piece, read it out."""
        end = pos + READ
        with lock:
            reader._pattern.record(pos, end, 0)
            fetch_id = next(ids)
            cache.claim(fetch_id, pos, end)
        data = receive(pos, end)
        room = cache.piece_room(fetch_id, pos, READ)  # one piece: 64 KiB slots never span a block
        if type(room) is int:
            cache.store(fetch_id, pos, data)
        else:
            room[:] = data
            cache.commit(fetch_id, pos, len(data))
        with lock:
            cache.release(fetch_id)
            reader._counts.bytes_served += READ
        if len(cache.read_when_present(pos, READ, joined)[1]) != READ:
            raise RuntimeError("short read")

    def over_curl(pos: int, end: int) -> bytes:
        head.clear()
        chunks.clear()
        easy.setopt(pycurl.RANGE, f"{pos}-{end - 1}")
        easy.perform()
        found = _CONTENT_RANGE.search(b"".join(head))
        if head[0].split(b" ")[1] != b"206" or found is None or int(found.group(1)) != pos:
            raise RuntimeError(f"not the range asked: {head!r}")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def over_source(pos: int, end: int) -> bytes:
        body = source.fetch(pos, end, source.new_abort())
        try:
            return body.read_piece(end - pos)
        finally:
            body.close()

    def kithara(offsets: List[int]) -> None:
        for pos in offsets:
            f.seek(pos)
            if len(f.read(READ)) != READ:
                raise RuntimeError("short read")

    def lane(offsets: List[int]) -> None:
        for pos in offsets:
            cached(pos, over_curl)

    def direct(offsets: List[int]) -> None:
        for pos in offsets:
            cached(pos, over_source)

    return {"floor": floor, "lane": lane, "direct": direct, "kithara-io": kithara}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--count", type=int, default=70, help="reads per way and pass")
    ap.add_argument("--data", help="directory for the test file (kept)")
    args = ap.parse_args()
    size = 200 * MB
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="kithara-lane-"))
    ensure_random(data / "random200MB.bin", size)
    rng = random.Random(3)
    needed = args.passes * 4 * args.count
    if needed > size // READ - 2:
        ap.error(f"--passes x 4 x --count must stay under {size // READ - 2} (distinct 64 KiB slots)")
    slots = iter(rng.sample(range(1, size // READ - 1), needed))  # not slot 0: open() read it
    with bench_nginx(data) as srv:
        clients = ways(srv.url("random200MB.bin"))
        wall: Dict[str, List[float]] = {name: [] for name in clients}
        cpu: Dict[str, List[float]] = {name: [] for name in clients}
        for _ in range(args.passes):
            for name, run in clients.items():
                offsets = [next(slots) * READ for _ in range(args.count)]
                started, used = time.perf_counter(), time.process_time()
                run(offsets)
                wall[name].append((time.perf_counter() - started) / args.count * 1e6)
                cpu[name].append((time.process_time() - used) / args.count * 1e6)
    floor = statistics.median(wall["floor"])
    for name in clients:
        median = statistics.median(wall[name])
        print(
            f"{name:11} {median:6.0f} us/read  {median / floor:.2f}x floor  CPU {statistics.median(cpu[name]):5.0f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
