#!/usr/bin/env python3
"""The bound of case ``random`` for a Python file object: how close to the ``http.client``
floor can *any* seekable file object with a byte cache get?

    python bench/random_bound.py [--count 500] [--passes 7] [--https]

``Minimal`` is the least such a file object does per cold ``seek`` + ``read(64 KiB)``: one
lock hold to look the bytes up, one ``Range`` GET on a kept-alive ``http.client``
connection, the body read as one ``bytes`` kept in the cache uncopied, one lock hold to
record it, the bytes handed back. No priorities, no read-ahead, no events, no retries, no
validation beyond the status: what kithara-io adds on top of it is the engine. ``OverSource``
is ``Minimal`` over kithara-io's own network layer and validation; ``OverCurl`` is ``Minimal``
over libcurl (pycurl), and obstore's ``get_range`` runs beside them when installed. Passes alternate the
ways on new offsets each (each way's open and first read are not timed); the medians of
the per-pass ratios are printed.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import io
import random
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import KiB, MB, ensure_random, open_client  # noqa: E402
from _servers import bench_nginx  # noqa: E402

READ = 64 * KiB


def connection(url: str, tls) -> http.client.HTTPConnection:
    u = urlsplit(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(tls.ca))
        return http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
    return http.client.HTTPConnection(u.hostname, u.port)


class Minimal(io.RawIOBase):
    """A seekable file object over Range GETs with a cache of the pieces it fetched."""

    def __init__(self, url: str, size: int, tls) -> None:
        self._conn = connection(url, tls)
        self._target = urlsplit(url).path
        self._size = size
        self._pos = 0
        self._lock = threading.Lock()
        self._starts: List[int] = []  # sorted piece starts
        self._pieces: Dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos
        return pos

    def read(self, n: int = -1) -> Optional[bytes]:
        pos, end = self._pos, min(self._size, self._pos + n)
        with self._lock:
            i = bisect.bisect_right(self._starts, pos) - 1
            if i >= 0:
                start = self._starts[i]
                piece = self._pieces[start]
                if start + len(piece) >= end:
                    self._pos = end
                    return piece[pos - start : end - start]
        data = self._get(pos, end)
        if len(data) != end - pos:
            raise OSError(f"{len(data)} bytes of {end - pos}")
        with self._lock:
            bisect.insort(self._starts, pos)
            self._pieces[pos] = data
        self._pos = end
        return data

    def _get(self, pos: int, end: int) -> bytes:
        self._conn.request("GET", self._target, headers={"Range": f"bytes={pos}-{end - 1}"})
        resp = self._conn.getresponse()
        data = resp.read()
        if resp.status != 206:
            raise OSError(f"status {resp.status}")
        return data

    def close(self) -> None:
        self._conn.close()
        super().close()


class OverSource(Minimal):
    """``Minimal`` with kithara-io's own network layer and validation in place of the bare
    connection: each miss is one ``HttpSource.fetch`` (policy headers, kept-alive pool,
    redirects, Content-Range and validator checks), its body read as one piece. What a
    kithara-io stream would cost with an engine that cost nothing."""

    def __init__(self, url: str, size: int, tls) -> None:
        super().__init__(url, size, tls)
        from kithara_io.sources.http import HttpSource

        self._conn.close()
        self._source = HttpSource(url, verify=str(tls.ca) if tls is not None else True)

    def _get(self, pos: int, end: int) -> bytes:
        body = self._source.fetch(pos, end, self._source.new_abort())
        try:
            return body.read_piece(end - pos)
        finally:
            body.close()

    def close(self) -> None:
        self._source.close()
        super().close()


class OverCurl(Minimal):
    """``Minimal`` over libcurl (pycurl): one kept easy handle, whose connection libcurl keeps
    alive, a Range GET per miss, the body gathered from libcurl's write callbacks. Where a
    transport that builds requests and parses answers in C would put the bound (``None``
    where pycurl is not installed)."""

    def __init__(self, url: str, size: int, tls) -> None:
        super().__init__(url, size, tls)
        import pycurl

        self._conn.close()
        self._curl = c = pycurl.Curl()
        c.setopt(pycurl.URL, url)
        if tls is not None:
            c.setopt(pycurl.CAINFO, str(tls.ca))
        self._chunks: List[bytes] = []
        c.setopt(pycurl.WRITEFUNCTION, self._chunks.append)
        self._pycurl = pycurl

    def _get(self, pos: int, end: int) -> bytes:
        c = self._curl
        c.setopt(self._pycurl.RANGE, f"{pos}-{end - 1}")
        self._chunks.clear()
        c.perform()
        if c.getinfo(self._pycurl.RESPONSE_CODE) != 206:
            raise OSError("status")
        return b"".join(self._chunks)

    def close(self) -> None:
        self._curl.close()
        super().close()


def arguments(count: int, passes: int) -> argparse.Namespace:
    """``--count`` reads per pass, ``--passes``, ``--https``, ``--data`` (where the file is made)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=count)
    ap.add_argument("--passes", type=int, default=passes)
    ap.add_argument("--https", action="store_true")
    ap.add_argument("--data", default="/tmp/kithara-bench-data")
    return ap.parse_args()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> int:
    args = arguments(500, 7)
    size = 200 * MB
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    path = ensure_random(data / "random200MB.bin", size)
    rng = random.Random(7)
    with bench_nginx(data, https=args.https) as srv:
        url = srv.url(path.name)
        tls = srv.tls

        def floor(offsets: List[int]) -> float:
            conn = connection(url, tls)
            target = urlsplit(url).path

            def get(pos: int) -> None:
                conn.request("GET", target, headers={"Range": f"bytes={pos}-{pos + READ - 1}"})
                resp = conn.getresponse()
                if resp.status != 206 or len(resp.read()) != READ:
                    raise OSError("floor: bad answer")

            try:
                get(offsets[0])  # the connection: not timed, as the others' open
                started = time.perf_counter()
                for pos in offsets[1:]:
                    get(pos)
                return time.perf_counter() - started
            finally:
                conn.close()

        def timed_reads(f, offsets: List[int]) -> float:
            """Seconds of the reads at ``offsets[1:]`` (the first read, which opens, is not timed)."""
            for i, pos in enumerate(offsets):
                if i == 1:
                    started = time.perf_counter()
                f.seek(pos)
                if len(f.read(READ)) != READ:
                    raise OSError("short read")
            return time.perf_counter() - started

        def minimal(offsets: List[int]) -> float:
            with Minimal(url, size, tls) as f:
                return timed_reads(f, offsets)

        def over_source(offsets: List[int]) -> float:
            with OverSource(url, size, tls) as f:
                return timed_reads(f, offsets)

        def over_curl(offsets: List[int]) -> float:
            with OverCurl(url, size, tls) as f:
                return timed_reads(f, offsets)

        def obstore_range(offsets: List[int]) -> float:
            import _obstore
            import obstore

            store = _obstore.store(url, tls)
            obstore.get_range(store, "", start=offsets[0], length=READ)  # the connection, untimed
            started = time.perf_counter()
            for pos in offsets[1:]:
                if len(obstore.get_range(store, "", start=pos, length=READ)) != READ:
                    raise OSError("obstore: short read")
            return time.perf_counter() - started

        def kithara(offsets: List[int]) -> float:
            with open_client("kithara-io", url, tls) as f:
                return timed_reads(f, offsets)

        ways = [("floor", floor), ("minimal", minimal), ("over-source", over_source), ("kithara-io", kithara)]
        if _has("obstore"):
            ways.append(("obstore", obstore_range))
        if _has("pycurl"):
            ways.append(("over-curl", over_curl))
        times: Dict[str, List[float]] = {name: [] for name, _ in ways}
        for _ in range(args.passes):
            offsets = [rng.randrange(0, size - READ) for _ in range(args.count + 1)]
            for name, way in ways:
                times[name].append(way(offsets))
    per = {k: [s / args.count * 1000 for s in v] for k, v in times.items()}
    for name in [name for name, _ in ways if name != "floor"]:
        ratios = sorted(a / b for a, b in zip(per[name], per["floor"]))
        print(f"{name:11s} {sorted(per[name])[len(ratios) // 2]:.3f} ms/read  x floor: median {ratios[len(ratios) // 2]:.2f} "
              f"[{ratios[0]:.2f}-{ratios[-1]:.2f}]")
    print(f"floor       {sorted(per['floor'])[args.passes // 2]:.3f} ms/read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
