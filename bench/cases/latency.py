"""Case 3: a long link (50 ms round trip, 100 Mbit/s): seek-to-first-byte and time-to-first-audio.

The link is ``_servers.DelayProxy`` in front of nginx (see its docstring for the model: a
per-chunk one-way delay of RTT/2 in each direction, one extra RTT before a new connection's
first bytes, as a TCP handshake costs, 12.5 MB/s downstream shared fairly by all connections).

* seek -> first byte: after open and a first ``read(4096)``, 8 times: pause 0.25 s (playback),
  ``seek`` to a random offset of the 200 MB file, time ``read(4096)``. Floor: a warm keep-alive
  ``http.client`` connection doing one 4 KiB Range GET (1 RTT + transfer).
* time to first audio: a fresh client opens the file, ``sf.SoundFile(stream)`` parses the
  header, ``read(4096)`` frames. The target is 3 RTT + the transfer time of the bytes the
  decoder reads for that (counted once on the local file). Floor: a fresh connection fetching
  that many bytes from offset 0 in one GET (2 RTT + transfer time): no client can do better.

obstore: seeks are ``obstore.get_range`` on one store (warmed by the first 4 KiB); time to first
audio goes through ``obstore.open_reader`` (a HEAD for the size, then 1 MiB ranges).

``cases.latency_https`` runs the same over https through the same proxy: the TLS handshake
crosses the modelled link (TLS 1.3: +1 RTT on a fresh connection), so the time-to-first-audio
target there is 4 RTT + transfer; the seek target stays ~1 RTT (a warm connection).
"""

from __future__ import annotations

import io
import random
import time
from pathlib import Path
from typing import Any, Dict, List

import soundfile as sf

from _common import (
    CLIENTS,
    AUDIO,
    MB,
    Context,
    ensure_audio,
    http_connection,
    kithara_stats,
    log,
    median,
    open_client,
    rotated,
    row,
    tagged,
)
from _servers import DelayProxy, bench_nginx, scheme_note

import _obstore

NAME = "latency"
TITLE = "3. 50 ms RTT: seek and time to first audio"
TIMEOUT = 300
RTT = 0.050
BANDWIDTH = 12.5 * MB  # 100 Mbit/s
FRAMES = 4096
PROBE = 4096
PAUSE = 0.25


class _CountingFile(io.RawIOBase):
    """A local file that records which bytes were read."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")
        self.spans: List[tuple] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        pos = self._f.tell()
        n = self._f.readinto(b)
        if n:
            self.spans.append((pos, pos + n))
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()

    def distinct_bytes(self) -> int:
        total, end = 0, -1
        for s, e in sorted(self.spans):
            if e <= end:
                continue
            total += e - max(s, end)
            end = e
        return total


def needed_bytes(path: Path) -> int:
    """Bytes libsndfile reads to open ``path`` and decode its first FRAMES frames."""
    with _CountingFile(path) as f:
        with sf.SoundFile(f) as snd:
            snd.read(FRAMES, dtype="float32")
        return f.distinct_bytes()


def _get(conn, target: str, start: int, length: int) -> None:
    conn.request("GET", target, headers={"Range": f"bytes={start}-{start + length - 1}"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 206 or len(body) != length:
        raise RuntimeError(f"floor: status {resp.status}, {len(body)} bytes")


def seek_times(client: str, url: str, positions: List[int], extra: Dict[str, Any], tls=None) -> List[float]:
    times = []
    if client == "floor":
        conn, target = http_connection(url, tls)
        try:
            _get(conn, target, 0, PROBE)
            for pos in positions:
                time.sleep(PAUSE)
                t = time.perf_counter()
                _get(conn, target, pos, PROBE)
                times.append(time.perf_counter() - t)
        finally:
            conn.close()
        return times
    if client == "obstore":
        import obstore

        st = _obstore.store(url, tls)
        obstore.get_range(st, "", start=0, length=PROBE)
        for pos in positions:
            time.sleep(PAUSE)
            t = time.perf_counter()
            data = obstore.get_range(st, "", start=pos, length=PROBE)
            times.append(time.perf_counter() - t)
            if len(data) != PROBE:
                raise RuntimeError(f"obstore: short read at {pos}")
        return times
    with open_client(client, url, tls) as f:
        f.read(PROBE)
        for pos in positions:
            time.sleep(PAUSE)
            t = time.perf_counter()
            f.seek(pos)
            data = f.read(PROBE)
            times.append(time.perf_counter() - t)
            if len(data) != PROBE:
                raise RuntimeError(f"{client}: short read at {pos}")
        if client == "kithara-io":
            extra["stats"] = kithara_stats(f)
    return times


def first_audio(client: str, url: str, need: int, extra: Dict[str, Any], tls=None) -> float:
    started = time.perf_counter()
    if client == "floor":
        conn, target = http_connection(url, tls)
        try:
            _get(conn, target, 0, need)
            return time.perf_counter() - started
        finally:
            conn.close()
    with open_client(client, url, tls) as f:
        with sf.SoundFile(f) as snd:
            block = snd.read(FRAMES, dtype="float32")
        elapsed = time.perf_counter() - started
        if len(block) != FRAMES:
            raise RuntimeError(f"{client}: {len(block)} frames")
        if client == "kithara-io":
            extra["stats"] = kithara_stats(f)
    return elapsed


def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=False)


def run_scheme(ctx: Context, https: bool) -> Dict[str, Any]:
    """The case over http or https (same proxy, files, positions and clients)."""
    case = "3 RTT 50 ms" + (", HTTPS" if https else "")
    target_rtts = 3 + (1 if https else 0)  # time-to-first-audio target: RTTs + transfer
    scheme = "https" if https else "http"
    big = ctx.big_file()
    audio = ensure_audio(ctx.data, ctx.audio_seconds)
    nseeks = 3 if ctx.quick else 8
    rng = random.Random(7)
    positions = [rng.randrange(0, big.stat().st_size - PROBE) for _ in range(nseeks)]
    results: Dict[str, Any] = {"rtt": RTT, "bandwidth": BANDWIDTH, "seek": {}, "ttfa": {}}
    rows = []
    with bench_nginx(ctx.data, https=https) as srv, DelayProxy(
        srv.port, rtt=RTT, bandwidth=BANDWIDTH, scheme=scheme
    ) as proxy:
        note = scheme_note(srv)
        # -- seek -> first byte
        seek_ms: Dict[str, float] = {}
        for client in CLIENTS:
            tag = f"seek-{scheme}-{client}"
            extra: Dict[str, Any] = {}
            times = seek_times(client, tagged(proxy.url(big.name), tag), positions, extra, srv.tls)
            reqs = srv.settled_requests(tag)
            seek_ms[client] = 1000 * median(times)
            results["seek"][client] = {
                "ms": [1000 * t for t in times],
                "median_ms": seek_ms[client],
                "requests": len(reqs),
                "bytes_sent": sum(e["bytes"] for e in reqs),
                **extra,
            }
            log(f"seek {scheme} {client:10s}: median {seek_ms[client]:6.1f} ms = {seek_ms[client] / 1000 / RTT:.2f} RTT")
        limit = 1.5 * RTT * 1000
        worst = {c: max(results["seek"][c]["ms"]) for c in CLIENTS}
        rows.append(
            row(
                case,
                f"seek -> first 4 KiB, ms: median / worst of {nseeks}",
                {c: f"{seek_ms[c]:.0f} / {worst[c]:.0f}" for c in CLIENTS},
                ratio=seek_ms["kithara-io"] / seek_ms["floor"],
                vs_obstore=seek_ms["kithara-io"] / seek_ms["obstore"],
                target=f"~1 RTT (<= {limit:.0f} ms)",
                passed=seek_ms["kithara-io"] <= limit,
                fmt="{:.0f}",
            )
        )
        # -- time to first audio
        for fmt, path in audio.items():
            need = needed_bytes(path)
            transfer = need / BANDWIDTH
            samples: Dict[str, list] = {c: [] for c in CLIENTS}
            details: Dict[str, list] = {c: [] for c in CLIENTS}
            for rep in range(ctx.reps(5)):
                for client in rotated(CLIENTS, rep):
                    tag = f"ttfa-{scheme}-{fmt}-{client}-{rep}"
                    extra = {}
                    t = first_audio(client, tagged(proxy.url(path.name), tag), need, extra, srv.tls)
                    reqs = srv.settled_requests(tag)
                    samples[client].append(t)
                    details[client].append(
                        {"ms": 1000 * t, "requests": len(reqs), "bytes_sent": sum(e["bytes"] for e in reqs), **extra}
                    )
            med = {c: 1000 * median(v) for c, v in samples.items()}
            target_ms = 1000 * (target_rtts * RTT + transfer)
            results["ttfa"][fmt] = {
                "file_size": path.stat().st_size,
                "needed_bytes": need,
                "transfer_ms": 1000 * transfer,
                "target_ms": target_ms,
                "median_ms": med,
                "runs": details,
            }
            log(
                f"ttfa {scheme} {fmt}: need {need} B; "
                + ", ".join(f"{c} {med[c]:.0f} ms ({med[c] / 1000 / RTT:.1f} RTT)" for c in CLIENTS)
            )
            rows.append(
                row(
                    case,
                    f"time to first audio, {fmt.upper()} ({AUDIO[fmt][1]}), ms",
                    med,
                    ratio=med["kithara-io"] / med["floor"],
                    target=f"<= {target_rtts} RTT + transfer = {target_ms:.0f} ms",
                    passed=med["kithara-io"] <= target_ms,
                    fmt="{:.0f}",
                )
            )
        results["proxy_connections"] = proxy.connections
    model = (
        f"nginx behind a delaying proxy: RTT {RTT * 1000:.0f} ms per round trip (RTT/2 per chunk each way, "
        f"+1 RTT before a new connection's first bytes = TCP handshake), {BANDWIDTH * 8 / 1e6:.0f} Mbit/s "
        "downstream shared fairly by all connections; "
        + (f"TLS through the proxy (its handshake pays the modelled RTTs){note}" if https else "no TLS")
        + ", no slow start"
    )
    return {"rows": rows, "results": results, "model": model}
