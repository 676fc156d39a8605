"""Byte-exact reads through forward proxies this project did not write: Squid and tinyproxy.

kithara-io honours ``http_proxy``/``https_proxy`` as requests does: plain http goes to the proxy
in absolute form (``GET http://host:port/path``) over kept-alive connections, https through a
``CONNECT`` tunnel. ``tests/test_auth.py`` and ``tests/test_netlayer.py`` check that against
this project's own proxy; here real ones stand in the path, each with its own ways (see
``tests/servers/forward_proxies.py``): Squid caches what passed through whole and then answers
ranges itself, revalidating with the origin, and forwards the other ranges as they are;
tinyproxy closes the client connection after every plain-http answer without saying so (a kept
connection is dead when it is reused) and relays tunnels slowly.

Each (proxy, origin) pair, nginx over http and https, runs the seeded sessions of mixed reads of
``tests/test_access_soak.py`` on an 8 MiB file, then on FFmpeg's HLS playlists and DASH
manifests: every read equals the file or the local segments joined. Over http one whole GET of the file first fills
Squid's cache (ranges alone never do), so the file's ranges come from Squid, not from nginx.
The proxy's access log must then show that the file's requests, and the playlists', went
through it (absolute-form GETs, or CONNECTs to the origin). A few seconds each in ``make test``;
longer by hand:

    KITHARA_PROXY_SECONDS=120 python -m pytest tests/test_real_proxies.py -s
"""

from __future__ import annotations

import collections
import http.client
import os
import random
import re
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from kithara_io.disk import DiskCache
from tests.servers import forward_proxies
from tests.servers.forward_proxies import ForwardProxy
from tests.servers.nginx import NginxServer
from tests.test_access_soak import Batches, file_and_playlists, soak

SECONDS = float(os.environ.get("KITHARA_PROXY_SECONDS", "2"))
SEED = int(os.environ.get("KITHARA_ACCESS_SEED", "24"))
MiB = 1 << 20

pytestmark = pytest.mark.timeout(2 * SECONDS + 120)


@pytest.fixture(scope="module")
def content(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, bytes, Dict[str, bytes]]:
    """The served root, the file's bytes, and each playlist's local segments joined."""
    root = tmp_path_factory.mktemp("served").resolve()
    return (root, *file_and_playlists(root))


def _fetch_whole(proxy: ForwardProxy, url: str) -> Tuple[int, bytes, str]:
    """One plain GET of ``url`` through ``proxy`` (absolute form): status, body, ``Via``."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Via", "")
    finally:
        conn.close()


def _settled_log(proxy: ForwardProxy, timeout: float = 10.0) -> List[str]:
    """The access log once it has stopped growing for 0.5 s (at most ``timeout`` s): Squid logs
    a transaction when it ends, a tunnel when it has seen it close."""
    deadline = time.monotonic() + timeout
    lines = proxy.log_lines()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = proxy.log_lines()
        if now == lines:
            break
        lines = now
    return lines


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("kind", sorted(forward_proxies.PROXIES))
def test_mixed_reads_through_a_real_proxy_equal_the_file_and_the_segments(
    kind, scheme, content, tls_files, clean_env, tmp_path, no_leaks
) -> None:
    reason = forward_proxies.unavailable(kind)
    if reason:
        pytest.skip(reason)
    root, data, local = content
    disk = DiskCache(tmp_path / "disk", max_bytes=32 * MiB)
    rng = random.Random(f"{SEED}-{kind}-{scheme}")
    with forward_proxies.PROXIES[kind]() as proxy, NginxServer(
        root, tls=tls_files if scheme == "https" else None
    ) as origin:
        clean_env.setenv("http_proxy", proxy.url)
        clean_env.setenv("https_proxy", proxy.url)
        batches = Batches(rng, origin.url, data, local, tls_files.ca, disk)

        if scheme == "http":  # fill Squid's cache: ranges alone never do (range_offset_limit 0)
            status, body, via = _fetch_whole(proxy, origin.url("f.bin"))
            assert (status, body == data, f"({kind}/" in via) == (200, True, True), (status, len(body), via)
        file_counts = soak(SECONDS, batches.files)
        file_log = _settled_log(proxy)
        stream_counts = soak(SECONDS, batches.playlists)
        log = _settled_log(proxy)
        where = re.escape(f"127.0.0.1:{origin.port}")
        file_target, streams_target = (
            (rf"\bGET http://{where}/f\.bin\b", rf"\b(GET|HEAD) http://{where}/(hls|dash)/")
            if scheme == "http" else (rf"\bCONNECT {where}\b",) * 2
        )
        carried = [line for line in file_log if re.search(file_target, line)]
        streamed = [line for line in log[len(file_log):] if re.search(streams_target, line)]
        origin_requests = len(origin.access_log.read_text().splitlines())
    codes = collections.Counter(line.split()[3] for line in log if kind == "squid" and len(line.split()) > 3)
    print(
        f"\n{kind} {scheme}: file {file_counts[0]} sessions, {file_counts[1]} reads; HLS/DASH {stream_counts[0]},"
        f" {stream_counts[1]}; proxy log {len(carried)} file / {len(streamed)} HLS/DASH lines; origin {origin_requests}"
        f" requests{'; ' + str(dict(codes)) if codes else ''}"
    )
    assert file_counts[1] >= 10 and stream_counts[1] >= 10
    assert carried, f"{kind}'s access log shows no request for the file:\n" + "\n".join(log[-20:])
    assert streamed, f"{kind}'s access log shows no HLS or DASH request:\n" + "\n".join(log[-20:])
    if kind == "squid" and scheme == "http":  # its cache answered ranges of the file
        assert any(re.search(r"_(HIT|REFRESH_\w+)/206 ", line) for line in carried), "\n".join(carried[-20:])
