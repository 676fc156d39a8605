"""An access-pattern soak, checked byte for byte: seeded sessions of mixed reads through
``kithara_io.open`` against nginx over http, over https (HTTP/1.1 only), over https offering
HTTP/2, and serving the file chunked (no length, no ranges).

A session opens the file with one of several option sets (defaults; no tail probe; one
fetch at a time; a small cache that evicts; small pieces), a third of them through a disk
cache shared by every session (small enough to evict), and makes up to 40 reads: random
offsets of 1 B to 1 MiB, sequential runs, reads near the end, short seeks back,
``readinto`` into odd-sized buffers, ``SEEK_CUR``/``SEEK_END`` seeks, a read to the end.
Sometimes two sessions run at once on the shared default downloader. Checked: every read
equals the file there and is whole (fewer bytes only at the end); nothing hangs (each read
is bounded by ``Timeout``, the test by its timeout); nothing is left running (``no_leaks``).
It found the TLS abort that stored ciphertext (``connections.shutdown_socket``): a far seek
cancelling a read-ahead over https, about once in 3,000 reads.

The second test runs the same sessions over HLS: FFmpeg's media playlists (MPEG-TS, fMP4,
single-file byte ranges, AES-128) served by the HLS test server, and by nginx over https
and over HTTP/2; every byte equals the local segments joined (decrypted).

The third test runs the same sessions against the fault server (http and https), each with
a seeded script of faults on its requests: resets, truncations, stalls, 5xx, dropped
connections, capped ranges, chunked or close-delimited bodies, and answers that must be
refused (a changed ETag, a wrong Content-Range, a range answered 200, gzip, an HTML page, 404).
There a read may also fail, with a ``StreamError`` naming the URL that failed, which ends the
session; it may never return a wrong byte or hang. The fourth runs HLS sessions through the
same faults on every part (HEADs included). It found five ways an HLS stream gave wrong bytes
or ended early (``tests/test_hls_ambiguous.py``).

``make test`` runs each for ~12 s. A longer run, by hand, prints its counts:

    KITHARA_ACCESS_SECONDS=600 python -m pytest tests/test_access_soak.py -s

(``KITHARA_ACCESS_SEED`` picks another seed of the file and of the sessions.)
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

import kithara_io
from kithara_io import Retry, StreamError, Timeout
from kithara_io.disk import DiskCache
from tests.servers import ChunkedNginxServer, Http2NginxServer, NginxServer
from tests.servers.hls import HlsServer
from tests.servers.dash_media import make_dash_media, top_boxes
from tests.servers.hls_media import make_hls_media
from tests.servers.faults import (
    CapRange,
    ChangedETag,
    Chunked,
    Disconnect,
    FaultSpec,
    Gzip,
    HtmlPage,
    IgnoreRange,
    Latency,
    NoContentLength,
    RangeAs200,
    Reset,
    Stall,
    Status,
    Throttle,
    Truncate,
    WrongContentRange,
)
from tests.servers.tls import TlsFiles

SECONDS = float(os.environ.get("KITHARA_ACCESS_SECONDS", "12"))
SEED = int(os.environ.get("KITHARA_ACCESS_SEED", "24"))
SIZE = 24 << 20
KiB, MiB = 1 << 10, 1 << 20

pytestmark = pytest.mark.timeout(SECONDS + 120)

OPTION_SETS: List[Dict[str, int]] = [
    {},
    {"tail": 0},
    {"max_outstanding": 1},
    {"cache_budget": 16 * MiB, "max_fetch": 4 * MiB, "read_ahead": 4 * MiB},  # evicts
    {"first_fetch": 16 * KiB, "min_fetch": 16 * KiB, "chunk": 64 * KiB},
]
BOUNDED = dict(timeout=Timeout(connect=5, read=10), retry=Retry(attempts=3, backoff=0.01, max_backoff=0.1))
FAULTY = dict(timeout=Timeout(connect=2, read=1), retry=Retry(attempts=4, backoff=0.01, max_backoff=0.05))
FAULTY_SIZE = 6 << 20


def _fault(rng: random.Random) -> FaultSpec:
    """One request's fault: survivable ones (a retry or a resume gets the bytes), or an
    answer the stream must refuse."""
    cut = rng.randrange(0, 300_000)
    return rng.choice(
        [
            Reset(after_bytes=cut),
            Truncate(after_bytes=cut),
            Stall(0.05, after_bytes=cut),
            Status(503, retry_after="0"),
            Status(500),
            Disconnect(rst=rng.random() < 0.5),
            Latency(0.02),
            CapRange(max_bytes=rng.choice([1000, 64 * KiB, 300_000])),
            Chunked(),
            NoContentLength(),
            (Throttle(4_000_000), Reset(after_bytes=cut)),
            ChangedETag(),
            WrongContentRange(shift=rng.choice([-1, 1, 100])),
            IgnoreRange(),
            RangeAs200(),
            Gzip(),
            HtmlPage(200),
            Status(404),
        ]
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[Tuple[bytes, Dict[str, str]]]:
    """The file's bytes and its URL on each server (name -> URL)."""
    root = tmp_path_factory.mktemp("access-soak")
    data = random.Random(SEED).randbytes(SIZE)
    (root / "f.bin").write_bytes(data)
    with NginxServer(root) as plain, NginxServer(root, tls=tls_files) as tls, Http2NginxServer(
        root, tls=tls_files
    ) as h2, ChunkedNginxServer(root) as chunked:
        yield data, {
            "http": plain.url("f.bin"),
            "https": tls.url("f.bin"),
            "https-h2": h2.url("f.bin"),
            "chunked": chunked.url("f.bin"),
        }


class Session:
    """One open-to-close run of seeded reads; ``failure`` says the first wrong read."""

    def __init__(
        self, seed: int, url: str, data: bytes, ca: Path, ranged: bool, disk: DiskCache, faulty: bool = False
    ) -> None:
        self.rng = random.Random(seed)
        self.url, self.data, self.ca, self.ranged, self.faulty = url, data, ca, ranged, faulty
        self.options: Dict[str, object] = dict(self.rng.choice(OPTION_SETS))
        if self.rng.random() < 0.3:
            self.options["cache"] = disk
        self.reads = 0
        self.failure = ""
        self.refused = ""  # faulty: the StreamError that ended the session

    def run(self) -> None:
        try:
            with kithara_io.open(
                self.url, verify=str(self.ca), **self.options, **(FAULTY if self.faulty else BOUNDED)
            ) as f:
                for _ in range(self.rng.randrange(5, 40 if self.ranged else 12)):
                    if not self._one(f):
                        return
        except StreamError as exc:
            origin = "/".join(self.url.split("/", 3)[:3])  # the URL failing may be an HLS part's
            if self.faulty and origin in str(exc):
                self.refused = type(exc).__name__
            else:
                self.failure = f"{exc!r}"
        except Exception as exc:  # noqa: BLE001 - reported as the session's failure
            self.failure = f"{exc!r}"

    def _one(self, f: io.RawIOBase) -> bool:
        rng, size = self.rng, len(self.data)
        op = rng.random()
        n = rng.choice([1, 100, 4 * KiB, 8 * KiB, 64 * KiB, 200_000, MiB])
        if op < 0.30:
            pos = f.seek(rng.randrange(0, size))  # a random read
        elif op < 0.60:
            pos = f.tell()  # go on where the last read ended
        elif op < 0.70:
            pos = f.seek(max(0, size - rng.randrange(1, 300_000)))
        elif op < 0.80:
            pos = f.seek(-min(f.tell(), rng.randrange(1, 2 * MiB)), io.SEEK_CUR)
        elif op < 0.90:  # a decoder's buffer of an odd size
            pos = f.tell()
            buf = bytearray(rng.randrange(1, 70_000))
            got = bytes(buf[: f.readinto(buf)])
            return self._check(pos, len(buf), got)
        else:
            pos = f.tell()
            if size - pos < 4 * MiB:
                return self._check(pos, size - pos, f.read())
        return self._check(pos, n, f.read(n))

    def _check(self, pos: int, n: int, got: bytes) -> bool:
        self.reads += 1
        want = self.data[pos : pos + n]
        if got == want:
            return True
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        self.failure = (
            f"{self.url} with {self.options}: read of {n} at {pos} gave {len(got)} bytes, "
            f"first wrong at {pos + first}"
        )
        return False


def run_sessions(batch: List[Session]) -> None:
    """Run the sessions at once; fail on the first wrong read or unexpected error."""
    threads = [threading.Thread(target=s.run, name=f"access-soak-{i}") for i, s in enumerate(batch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a session did not end within 60 s"
    failures = [s.failure for s in batch if s.failure]
    assert not failures, failures[0]


def soak(seconds: float, batch: Callable[[], List[Session]]) -> Tuple[int, int]:
    """Run batches of sessions (``batch()`` makes the next) for ``seconds``; (sessions, reads)."""
    sessions: List[Session] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sessions += (new := batch())
        run_sessions(new)
    return len(sessions), sum(s.reads for s in sessions)


class Batches:
    """Seeded batches of sessions against one server, ``url(name)`` its URL of a name under
    the served root: of the file (one session, or two at once), or of a playlist or manifest
    (see :func:`file_and_playlists`)."""

    def __init__(
        self,
        rng: random.Random,
        url: Callable[[str], str],
        data: bytes,
        streams: Dict[str, bytes],
        ca: Path,
        disk: DiskCache,
    ) -> None:
        self.rng, self.url, self.data, self.streams, self.ca, self.disk = rng, url, data, streams, ca, disk
        self.names = sorted(streams)

    def files(self) -> List[Session]:
        count = 2 if self.rng.random() < 0.3 else 1
        url = self.url("f.bin")
        return [Session(self.rng.randrange(1 << 30), url, self.data, self.ca, True, self.disk) for _ in range(count)]

    def playlists(self) -> List[Session]:
        name = self.rng.choice(self.names)
        return [Session(self.rng.randrange(1 << 30), self.url(name), self.streams[name], self.ca, True, self.disk)]


def file_and_playlists(root: Path, size: int = 8 << 20) -> Tuple[bytes, Dict[str, bytes]]:
    """A random file ``root/f.bin``, FFmpeg's HLS media under ``root/hls`` and its DASH media
    under ``root/dash``: the file's bytes, and each playlist's or manifest's stream as read
    locally, by its path under ``root`` (the DASH ones have one representation each:
    ``$Number$`` templates, a SegmentList of files, one of byte ranges, a SegmentBase sidx)."""
    data = random.Random(SEED).randbytes(size)
    (root / "f.bin").write_bytes(data)
    hls = make_hls_media(root / "hls")
    streams = {f"hls/{name}": hls.local_bytes(name) for name in HLS_PLAYLISTS}
    dash = make_dash_media(root)
    streams["dash/number/manifest.mpd"] = dash.local("number")
    streams["dash/files/manifest.mpd"] = dash.local("files")
    streams["dash/list/manifest.mpd"] = (dash.root / "list" / "manifest-stream0.mp4").read_bytes()
    whole = (dash.root / "base" / "media" / "audio.mp4").read_bytes()
    at, length = next((at, n) for at, n, kind in top_boxes(whole) if kind == "sidx")
    streams["dash/base/manifest.mpd"] = whole[:at] + whole[at + length :]  # the file less its sidx
    return data, streams


def test_mixed_reads_over_every_kind_of_server_equal_the_file(served, tls_files, tmp_path, no_leaks) -> None:
    data, urls = served
    disk = DiskCache(tmp_path / "disk", max_bytes=32 * MiB)
    rng = random.Random(SEED)
    kinds = sorted(urls)
    deadline = time.monotonic() + SECONDS
    sessions: List[Session] = []
    while time.monotonic() < deadline:
        batch = [
            Session(rng.randrange(1 << 30), urls[kind], data, tls_files.ca, kind != "chunked", disk)
            for kind in rng.sample(kinds, 2 if rng.random() < 0.3 else 1)
        ]
        run_sessions(batch)
        sessions += batch
    reads = sum(s.reads for s in sessions)
    print(f"\naccess soak: {len(sessions)} sessions, {reads} reads, all equal to the file")
    assert reads >= 50


HLS_PLAYLISTS = [
    "ts/v0/index.m3u8",
    "ts/v2/index.m3u8",
    "fmp4/v1/index.m3u8",
    "single_ts/index.m3u8",
    "single_fmp4/index.m3u8",
    "aes/index.m3u8",
]


def test_mixed_reads_over_hls_equal_the_segments(tls_files, tmp_path, no_leaks) -> None:
    media = make_hls_media((tmp_path / "hls").resolve())
    local = {name: media.local_bytes(name) for name in HLS_PLAYLISTS}
    rng = random.Random(SEED + 2)
    disk = DiskCache(tmp_path / "disk", max_bytes=32 * MiB)
    sessions: List[Session] = []
    with (
        HlsServer(media.root) as plain,
        NginxServer(media.root, tls=tls_files) as tls,
        Http2NginxServer(media.root, tls=tls_files) as h2,
    ):
        servers = [plain, tls, h2]
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            batch = []
            for _ in range(2 if rng.random() < 0.3 else 1):
                name = rng.choice(HLS_PLAYLISTS)
                url = rng.choice(servers).url(name)
                batch.append(Session(rng.randrange(1 << 30), url, local[name], tls_files.ca, True, disk))
            run_sessions(batch)
            sessions += batch
    reads = sum(s.reads for s in sessions)
    print(f"\nhls soak: {len(sessions)} sessions, {reads} reads, all equal to the segments")
    assert reads >= 50


def test_mixed_reads_over_hls_through_faults_equal_the_segments_or_fail_loudly(
    make_fault_server, tls_files, tmp_path, no_leaks
) -> None:
    rng = random.Random(SEED + 3)
    media = make_hls_media((tmp_path / "hls").resolve())
    local = {name: media.local_bytes(name) for name in HLS_PLAYLISTS}
    disk = DiskCache(tmp_path / "disk", max_bytes=32 * MiB)
    servers = [make_fault_server(), make_fault_server(tls=tls_files.server_context())]
    files = {"/" + p.relative_to(media.root).as_posix(): p.read_bytes() for p in media.root.rglob("*") if p.is_file()}
    for server in servers:
        for path, data in files.items():
            server.add(path, data)
    deadline = time.monotonic() + SECONDS
    sessions: List[Session] = []
    while time.monotonic() < deadline:
        name = rng.choice(HLS_PLAYLISTS)
        server = rng.choice(servers)
        folder = "/" + name.rsplit("/", 1)[0] + "/"
        for path in files:
            if path.startswith(folder) and not path.endswith(".m3u8"):
                server.script(path, [_fault(rng) if rng.random() < 0.3 else None for _ in range(6)])
        session = Session(rng.randrange(1 << 30), server.url(name), local[name], tls_files.ca, True, disk, faulty=True)
        run_sessions([session])
        sessions.append(session)
        server.clear_faults()
    reads = sum(s.reads for s in sessions)
    refused = sorted({s.refused for s in sessions if s.refused})
    print(f"\nfaulty hls soak: {len(sessions)} sessions, {reads} reads, all equal; ended by {refused}")
    assert reads >= 20


def test_mixed_reads_through_faults_equal_the_file_or_fail_loudly(make_fault_server, tls_files, tmp_path, no_leaks) -> None:
    rng = random.Random(SEED + 1)
    disk = DiskCache(tmp_path / "disk", max_bytes=32 * MiB)
    data = rng.randbytes(FAULTY_SIZE)
    servers = [make_fault_server(), make_fault_server(tls=tls_files.server_context())]
    deadline = time.monotonic() + SECONDS
    sessions: List[Session] = []
    while time.monotonic() < deadline:
        batch = []
        for _ in range(2 if rng.random() < 0.3 else 1):
            server = rng.choice(servers)
            path = f"/s{len(sessions) + len(batch)}.bin"
            url = server.add(path, data)
            server.script(path, [_fault(rng) if rng.random() < 0.4 else None for _ in range(16)])
            batch.append(Session(rng.randrange(1 << 30), url, data, tls_files.ca, True, disk, faulty=True))
        run_sessions(batch)
        sessions += batch
        for server in servers:
            server.clear_faults()
    reads = sum(s.reads for s in sessions)
    refused = sorted({s.refused for s in sessions if s.refused})
    print(f"\nfaulty soak: {len(sessions)} sessions, {reads} reads, all equal to the file; ended by {refused}")
    assert reads >= 50
