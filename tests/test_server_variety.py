"""Byte-exact reads against HTTP servers this project did not write.

nginx is what most tests use; these servers answer ranges their own way, where nginx is
silent: weak or strong ETags and how ``If-Range`` is judged against them, what a range past
the end answers, whether a HEAD or a 416 carries a length, the content type of a playlist.
Each server runs the seeded sessions of mixed reads of ``tests/test_access_soak.py``
(random, sequential, tail, seeks back, odd ``readinto`` buffers, two streams at once, a
shared disk cache) on a file, then on FFmpeg's HLS playlists (MPEG-TS, fMP4, single-file
byte ranges, AES-128) and DASH manifests (``$Number$`` templates, SegmentLists of files and of
byte ranges, a SegmentBase sidx): every read equals the file, or the local segments joined.

The servers: lighttpd, Apache httpd and Caddy (Go's ``ServeContent``), over http and https;
aiohttp's, tornado's, werkzeug's and Twisted's static files; Node's http-server; and the caching
reverse proxies Varnish and Squid in front of nginx, as a CDN edge sits before an origin. A few
seconds each in ``make test``; longer by hand:

    KITHARA_VARIETY_SECONDS=120 python -m pytest tests/test_server_variety.py -s
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, ContextManager, Dict, Tuple

import pytest

from kithara_io.disk import DiskCache
from tests.servers import app_servers, caches, system_servers
from tests.servers.tls import TlsFiles
from tests.test_access_soak import Batches, file_and_playlists, soak

SECONDS = float(os.environ.get("KITHARA_VARIETY_SECONDS", "2"))
SEED = int(os.environ.get("KITHARA_ACCESS_SEED", "24"))
MiB = 1 << 20

pytestmark = pytest.mark.timeout(2 * SECONDS + 120)

Make = Callable[[Path, TlsFiles], ContextManager]
SERVERS: Dict[str, Tuple[Make, Callable[[], "str | None"]]] = {
    "lighttpd": (lambda root, tls: system_servers.LighttpdServer(root), lambda: system_servers.unavailable("lighttpd")),
    "lighttpd-https": (
        lambda root, tls: system_servers.LighttpdServer(root, tls=tls),
        lambda: system_servers.unavailable("lighttpd"),
    ),
    "apache": (lambda root, tls: system_servers.ApacheServer(root), lambda: system_servers.unavailable("apache")),
    "apache-https": (
        lambda root, tls: system_servers.ApacheServer(root, tls=tls),
        lambda: system_servers.unavailable("apache"),
    ),
    "caddy": (lambda root, tls: system_servers.CaddyServer(root), lambda: system_servers.unavailable("caddy")),
    "caddy-https": (
        lambda root, tls: system_servers.CaddyServer(root, tls=tls),
        lambda: system_servers.unavailable("caddy"),
    ),
    "aiohttp": (lambda root, tls: app_servers.AiohttpServer(root), lambda: app_servers.unavailable("aiohttp")),
    "tornado": (lambda root, tls: app_servers.TornadoServer(root), lambda: app_servers.unavailable("tornado")),
    "werkzeug": (lambda root, tls: app_servers.WerkzeugServer(root), lambda: app_servers.unavailable("werkzeug")),
    "twisted": (lambda root, tls: app_servers.TwistedServer(root), lambda: app_servers.unavailable("twisted")),
    "node-http-server": (
        lambda root, tls: app_servers.NodeHttpServer(root),
        lambda: app_servers.unavailable("node-http-server"),
    ),
    "varnish": (lambda root, tls: caches.VarnishServer(root), lambda: caches.unavailable("varnish")),
    "squid": (lambda root, tls: caches.SquidServer(root), lambda: caches.unavailable("squid")),
}


@pytest.fixture(scope="module")
def content(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, bytes, Dict[str, bytes]]:
    """The served root, the file's bytes, and each playlist's local segments joined."""
    root = tmp_path_factory.mktemp("served").resolve()
    return (root, *file_and_playlists(root))


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_mixed_reads_equal_the_file_and_the_segments(kind, content, tls_files, tmp_path, no_leaks) -> None:
    make, unavailable = SERVERS[kind]
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    root, data, local = content
    disk = DiskCache(tmp_path / "disk", max_bytes=32 * MiB)
    rng = random.Random(f"{SEED}-{kind}")
    with make(root, tls_files) as server:
        batches = Batches(rng, server.url, data, local, tls_files.ca, disk)
        file_counts = soak(SECONDS, batches.files)
        stream_counts = soak(SECONDS, batches.playlists)
    print(
        f"\n{kind}: file {file_counts[0]} sessions, {file_counts[1]} reads;"
        f" HLS/DASH {stream_counts[0]}, {stream_counts[1]}"
    )
    assert file_counts[1] >= 10 and stream_counts[1] >= 10
