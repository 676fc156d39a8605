"""Per-request cost of the candidate transports for range requests (issue 24, part 3).

One kept-alive connection to a loopback nginx, ``N`` range GETs of 64 KiB at random offsets
of a 64 MiB file, one after another, each body received into one reused buffer where the
engine allows it. Printed: wall and CPU microseconds per request (median of ``ROUNDS``
rounds), http and https. Run by hand: ``python -m bench.transport`` (needs nginx; pycurl
is measured when installed).
"""

from __future__ import annotations

import http.client
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

N = int(os.environ.get("TRANSPORT_BENCH_N", "2000"))
ROUNDS = int(os.environ.get("TRANSPORT_BENCH_ROUNDS", "5"))
SIZE = 64 << 20
PIECE = int(os.environ.get("TRANSPORT_BENCH_PIECE", str(64 << 10)))


def offsets(seed: int) -> List[int]:
    rng = random.Random(seed)
    return [rng.randrange(0, SIZE - PIECE) // 4096 * 4096 for _ in range(N)]


def http_client(url: str, ctx) -> Callable[[int], None]:
    host, port = url.split("://")[1].split(":")
    port = int(port.split("/")[0])
    conn = (
        http.client.HTTPSConnection(host, port, context=ctx)
        if ctx
        else http.client.HTTPConnection(host, port)
    )
    buf = memoryview(bytearray(PIECE))

    def get(start: int) -> None:
        conn.request(
            "GET",
            "/big.bin",
            headers={
                "Range": f"bytes={start}-{start + PIECE - 1}",
                "Accept-Encoding": "identity",
            },
        )
        r = conn.getresponse()
        n = 0
        while n < PIECE:
            got = r.readinto(buf[n:])
            if not got:
                break
            n += got
        r.read()  # marks the answer done
        assert r.status == 206 and n == PIECE

    return get


def urllib3_pool(url: str, ctx) -> Callable[[int], None]:
    import urllib3

    pool = (
        urllib3.connection_from_url(url, ssl_context=ctx)
        if ctx
        else urllib3.connection_from_url(url)
    )
    buf = memoryview(bytearray(PIECE))

    def get(start: int) -> None:
        r = pool.urlopen(
            "GET",
            "/big.bin",
            headers={
                "Range": f"bytes={start}-{start + PIECE - 1}",
                "Accept-Encoding": "identity",
            },
            preload_content=False,
            decode_content=False,
            retries=False,
            redirect=False,
        )
        n = 0
        while n < PIECE:
            got = r.readinto(buf[n:])
            if not got:
                break
            n += got
        r.release_conn()
        assert r.status == 206 and n == PIECE

    return get


def kithara_net(url: str, ctx, ca: str) -> Callable[[int], None]:
    from kithara_io.net import Client, Policy

    client = Client(Policy(url, verify=ca if ctx else True))
    buf = memoryview(bytearray(PIECE))

    def get(start: int) -> None:
        r = client.request(
            "GET",
            url + "/big.bin",
            {
                "Range": f"bytes={start}-{start + PIECE - 1}",
                "Accept-Encoding": "identity",
            },
        )
        n = 0
        while n < PIECE:
            got = r.readinto(buf[n:])
            if not got:
                break
            n += got
        r.release_conn()
        assert r.status == 206 and n == PIECE

    return get


def requests_session(url: str, ctx, ca: str) -> Callable[[int], None]:
    import requests

    s = requests.Session()
    s.verify = ca if ctx else True

    def get(start: int) -> None:
        r = s.get(
            url + "/big.bin",
            verify=s.verify,
            headers={
                "Range": f"bytes={start}-{start + PIECE - 1}",
                "Accept-Encoding": "identity",
            },
        )
        assert r.status_code == 206 and len(r.content) == PIECE

    return get


def pycurl_easy(url: str, ctx, ca: str, http2: bool = False) -> Callable[[int], None]:
    import pycurl

    c = pycurl.Curl()
    c.setopt(pycurl.URL, url + "/big.bin")
    if ctx:
        c.setopt(pycurl.CAINFO, ca)
    c.setopt(
        pycurl.HTTP_VERSION,
        pycurl.CURL_HTTP_VERSION_2TLS if http2 else pycurl.CURL_HTTP_VERSION_1_1,
    )
    buf = bytearray(PIECE)
    state = [0]

    def write(data: bytes) -> None:
        n = state[0]
        buf[n : n + len(data)] = data  # libcurl hands each piece as a new bytes object
        state[0] = n + len(data)

    c.setopt(pycurl.WRITEFUNCTION, write)

    def get(start: int) -> None:
        state[0] = 0
        c.setopt(pycurl.RANGE, f"{start}-{start + PIECE - 1}")
        c.perform()
        assert c.getinfo(pycurl.RESPONSE_CODE) == 206 and state[0] == PIECE

    return get


def pycurl_pull(url: str, ctx, ca: str) -> Callable[[int], None]:
    """pycurl as a pull transport would have to run it: a multi handle driven by the reader's
    ``readinto`` (libcurl pushes pieces into a queue; each call performs until one is there)."""
    import collections

    import pycurl

    multi = pycurl.CurlMulti()
    c = pycurl.Curl()
    c.setopt(pycurl.URL, url + "/big.bin")
    if ctx:
        c.setopt(pycurl.CAINFO, ca)
    c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    pieces: collections.deque = collections.deque()
    c.setopt(pycurl.WRITEFUNCTION, pieces.append)
    buf = memoryview(bytearray(PIECE))

    def readinto(view: memoryview, done: list) -> int:
        for _ in range(1 << 20):
            if pieces:
                data = pieces.popleft()
                n = min(len(view), len(data))
                view[:n] = data[:n]
                if n < len(data):
                    pieces.appendleft(data[n:])
                return n
            if done[0]:
                return 0
            ret, running = multi.perform()
            while ret == pycurl.E_CALL_MULTI_PERFORM:
                ret, running = multi.perform()
            if not running:
                done[0] = True
                continue
            multi.select(1.0)
        raise RuntimeError("no progress")

    def get(start: int) -> None:
        c.setopt(pycurl.RANGE, f"{start}-{start + PIECE - 1}")
        multi.add_handle(c)
        done = [False]
        n = 0
        try:
            while n < PIECE:
                got = readinto(buf[n:], done)
                if not got:
                    break
                n += got
            while not done[0]:
                readinto(buf[n:n], done)
        finally:
            multi.remove_handle(c)
        assert c.getinfo(pycurl.RESPONSE_CODE) == 206 and n == PIECE

    return get


def measure(get: Callable[[int], None]) -> Tuple[float, float]:
    for start in offsets(0)[:100]:  # warm: connection up, pages cached
        get(start)
    walls, cpus = [], []
    for r in range(ROUNDS):
        starts = offsets(r + 1)
        w0, c0 = time.perf_counter(), time.process_time()
        for start in starts:
            get(start)
        walls.append((time.perf_counter() - w0) / N * 1e6)
        cpus.append((time.process_time() - c0) / N * 1e6)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.servers.nginx import NginxServer
    from tests.servers.tls import make_tls_files

    engines: Dict[str, Callable] = {
        "http.client": lambda url, ctx, ca: http_client(url, ctx),
        "kithara_io.net": kithara_net,
        "urllib3 pool.urlopen": lambda url, ctx, ca: urllib3_pool(url, ctx),
        "requests": requests_session,
    }
    try:
        import pycurl  # noqa: F401

        engines["pycurl easy (HTTP/1.1)"] = pycurl_easy
        engines["pycurl multi, pulled"] = pycurl_pull
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        (root / "big.bin").write_bytes(os.urandom(SIZE))
        tls = make_tls_files(Path(tmp) / "tls")
        for scheme, files in (("http", None), ("https", tls)):
            with NginxServer(root, tls=files) as srv:
                ctx = files.client_context() if files else None
                print(
                    f"{scheme}: per {PIECE >> 10} KiB range GET, kept-alive loopback nginx, N={N}, median of {ROUNDS}"
                )
                base = None
                for name, make in engines.items():
                    wall, cpu = measure(
                        make(srv.base_url, ctx, str(files.ca) if files else "")
                    )
                    base = base or wall
                    print(
                        f"  {name:24s} {wall:7.1f} us wall ({wall / base:4.2f}x)  {cpu:7.1f} us CPU"
                    )


if __name__ == "__main__":
    main()
