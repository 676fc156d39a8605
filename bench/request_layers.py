#!/usr/bin/env python3
"""Where one range request's time goes: bare ``http.client`` against ``HttpSource.fetch``.

    python bench/request_layers.py [--count 1500] [--passes 3] [--https]

Random 64 KiB GETs on a kept-alive connection to loopback nginx, in passes that alternate
``bare`` (one ``http.client`` connection) and ``ours`` (``HttpSource.fetch`` + reading the
body as one piece + closing it: the network layer, the pool and validation, no engine).
Each layer's calls are timed (``perf_counter`` around them; wrapping costs ~0.5 us per
call), so the print shows per request what ``http.client`` itself takes and what each of
our layers adds around it. Nested: ``Source.fetch`` includes ``Client.request``, which
includes ``_send``, which includes ``getresponse``, ``http.request``, ``Response`` and ``take``.
"""

from __future__ import annotations

import collections
import http.client
import random
import sys
import time
from pathlib import Path
from typing import Callable, Counter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MB, ensure_random  # noqa: E402
from _servers import bench_nginx  # noqa: E402
from random_bound import arguments, connection  # noqa: E402

from kithara_io.net import client as net_client  # noqa: E402
from kithara_io.net import connections, response  # noqa: E402
from kithara_io.sources import http as http_source  # noqa: E402
from kithara_io.sources import transport  # noqa: E402

READ = 64 * 1024
spent: Counter[str] = collections.Counter()


def timed(owner: type, name: str, label: str) -> None:
    """Wrap ``owner.name`` so its calls add their time to ``spent[label]``."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started

    setattr(owner, name, wrapper)


def main() -> int:
    args = arguments(1500, 3)
    for owner, name, label in [
        (http.client.HTTPConnection, "getresponse", "getresponse"),
        (http.client.HTTPConnection, "request", "http.request"),
        (http.client.HTTPResponse, "read", "read"),
        (connections.Pool, "take", "take"),
        (connections.Pool, "give_back", "give_back"),
        (response.Response, "__init__", "Response"),
        (net_client.Client, "_send", "_send"),
        (net_client.Client, "request", "Client.request"),
        (http_source.HttpSource, "_validate", "_validate"),
        (http_source.HttpSource, "fetch", "Source.fetch"),
        (transport.HttpBody, "read_piece", "read_piece"),
        (transport.HttpBody, "close", "body.close"),
    ]:
        timed(owner, name, label)
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    path = ensure_random(data / "random200MB.bin", 200 * MB)
    rng = random.Random(3)
    with bench_nginx(data, https=args.https) as srv:
        url = srv.url(path.name)
        source = http_source.HttpSource(url, verify=str(srv.tls.ca) if srv.tls is not None else True)
        conn = connection(url, srv.tls)
        target = "/" + path.name

        def bare(pos: int) -> None:
            conn.request("GET", target, headers={"Range": f"bytes={pos}-{pos + READ - 1}"})
            resp = conn.getresponse()
            if resp.status != 206 or len(resp.read()) != READ:
                raise RuntimeError("bare: bad answer")

        def ours(pos: int) -> None:
            body = source.fetch(pos, pos + READ, source.new_abort())
            try:
                if len(body.read_piece(READ)) != READ:
                    raise RuntimeError("ours: short body")
            finally:
                body.close()

        ways: "list[tuple[str, Callable[[int], None]]]" = [("bare", bare), ("ours", ours)]
        for way in ways:  # connections opened, validators pinned: not timed
            way[1](0)
        try:
            for _ in range(args.passes):
                for name, way in ways:
                    spent.clear()
                    offsets = [rng.randrange(0, path.stat().st_size - READ) for _ in range(args.count)]
                    started = time.perf_counter()
                    for pos in offsets:
                        way(pos)
                    total = (time.perf_counter() - started) / args.count * 1e6
                    parts = "  ".join(f"{k} {v / args.count * 1e6:.0f}" for k, v in sorted(spent.items()))
                    print(f"{name:4s} {total:4.0f} us per request:  {parts}")
        finally:
            conn.close()
            source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
