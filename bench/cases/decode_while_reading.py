"""Case 8: decode while reading: ``sf.read`` of a long FLAC straight from the stream.

Each client opens the FLAC (120 s stereo 44.1 kHz; 20 s with --quick) and ``soundfile.read``
decodes it whole from the file object (float32); the time runs from the open to the decoded
array, which must equal the local file's samples. Shown as decode speed (seconds of audio per
second, higher is better). A client that reads ahead in other threads while the decoder works
overlaps the transfer with the decoding; one thread cannot.

The floor is the faster, in the same run, of the two ways one thread can do it:

* ``download, then decode``: one ``requests`` GET of the whole file into memory, then
  ``sf.read`` of an ``io.BytesIO`` (transfer time + decode time);
* ``decode while reading``: ``sf.read`` of :class:`ProgressiveBody`, a file object over one
  streaming GET that the decoder's own thread reads on demand, keeping what it read (seeks
  inside it are free). The kernel's socket buffer fills while the thread decodes, so part of
  the transfer overlaps the decoding even here.

Clients: kithara-io ``kithara_io.open(url)``, obstore ``open_reader`` (``ReadableFile``),
fsspec and smart_open file objects (``_common.open_client``). Two links: loopback, and a
100 MB/s link (``tc tbf`` on the loopback of a private network namespace, as case 1b; without
root, nginx's per-connection ``limit_rate``, said in the set-up notes). On loopback the
transfer is a few percent of the decode time, so there is little to overlap; on the 100 MB/s
link it is ~20%. Target (issue #24): >= 1.0x the floor on both.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import requests
import soundfile as sf

from _common import CLIENTS, MB, Context, ensure_audio, log, median, open_client, rotated, row, tagged
from _servers import BenchNginx, in_private_netns, loopback_up, shape_loopback

NAME = "decode_while_reading"
TITLE = "8. decode while reading (FLAC, soundfile)"
TIMEOUT = 420
NETNS = True  # run.py runs it in a private network namespace: the 100 MB/s link is shaped there
RATE = 100 * MB
REPEATS = 9  # a decode takes ~0.2 s; 3 were within this machine's noise of each other
DTYPE = "float32"
FILL = 256 * 1024  # ProgressiveBody's smallest read from the socket


class ProgressiveBody(io.RawIOBase):
    """A seekable file object over one streaming GET, read by the caller's thread on demand:
    a read past what has arrived so far reads the response up to there (at least FILL bytes);
    everything read is kept, so seeking back is free. The single-threaded floor of this case."""

    def __init__(self, url: str) -> None:
        self._resp = requests.get(url, stream=True, timeout=60)
        self._resp.raise_for_status()
        self._size = int(self._resp.headers["Content-Length"])
        self._buf = bytearray()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _fill(self, upto: int) -> None:
        upto = min(upto, self._size)
        while len(self._buf) < upto:  # bounded: each pass reads bytes or stops at EOF
            piece = self._resp.raw.read(max(upto - len(self._buf), FILL))
            if not piece:
                raise OSError(f"response ended at {len(self._buf)} of {self._size} bytes")
            self._buf += piece

    def readinto(self, b) -> int:
        end = min(self._pos + len(b), self._size)
        if end <= self._pos:
            return 0
        self._fill(end)
        n = end - self._pos
        memoryview(b)[:n] = self._buf[self._pos : end]
        self._pos = end
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._resp.close()
        super().close()


FLOORS = ("download, then decode", "decode while reading")


def decode_once(client: str, url: str) -> "tuple[float, np.ndarray]":
    """Seconds from open to the decoded array, and the array (``client`` a library or a floor)."""
    started = time.perf_counter()
    if client == FLOORS[0]:
        resp = requests.get(url, timeout=60)
        resp.raise_for_status()
        data = sf.read(io.BytesIO(resp.content), dtype=DTYPE)[0]
    elif client == FLOORS[1]:
        with ProgressiveBody(url) as body:
            data = sf.read(body, dtype=DTYPE)[0]
    else:
        with open_client(client, url) as f:
            data = sf.read(f, dtype=DTYPE)[0]
    return time.perf_counter() - started, data


def measure(ctx: Context, srv: BenchNginx, path: Path, label: str, reference: np.ndarray,
            warm: bool) -> Dict[str, Any]:
    """Every client and both floors, ``REPEATS`` times (order rotated): seconds per decode;
    ``warm``: one untimed decode each first (imports, page cache)."""
    names: List[str] = [c for c in CLIENTS if c != "floor"] + list(FLOORS)
    seconds: Dict[str, list] = {c: [] for c in names}
    requests_made: Dict[str, list] = {c: [] for c in names}
    sent: Dict[str, list] = {c: [] for c in names}
    for client in names if warm else []:
        decode_once(client, tagged(srv.url(path.name), f"dwr-{label}-warm"))
    for rep in range(ctx.reps(REPEATS)):
        for client in rotated(names, rep):
            tag = f"dwr-{label}-{client.replace(' ', '_').replace(',', '')}-{rep}"
            took, data = decode_once(client, tagged(srv.url(path.name), tag))
            if not np.array_equal(data, reference):
                raise RuntimeError(f"{client}: decoded samples differ from the local file's")
            seconds[client].append(took)
            reqs = srv.settled_requests(tag)
            requests_made[client].append(len(reqs))
            sent[client].append(sum(e["bytes"] for e in reqs))
            log(f"decode-while-reading {label} {client:22s} rep {rep}: {took:.3f} s, "
                f"{len(reqs)} requests, {sent[client][-1] / path.stat().st_size:.2f}x the file sent")
    return {"seconds": seconds, "requests": requests_made, "bytes_sent": sent,
            "median": {c: median(v) for c, v in seconds.items()}}


def link_row(label: str, audio_s: float, res: Dict[str, Any]) -> Dict[str, Any]:
    med: Dict[str, Optional[float]] = res["median"]
    floor_name = min(FLOORS, key=lambda f: med[f])
    other = FLOORS[1] if floor_name == FLOORS[0] else FLOORS[0]
    speed = {c: audio_s / med[c] for c in CLIENTS if c != "floor"}
    speed["floor"] = audio_s / med[floor_name]
    ratio = speed["kithara-io"] / speed["floor"]
    res["floor"] = floor_name
    return row(
        "8 decode while reading" + label,
        f"FLAC {audio_s:.0f} s, sf.read from open to samples: x realtime (floor: {floor_name}; "
        f"{other}: {audio_s / med[other]:.0f})",
        speed,
        ratio=ratio,
        target=">= 1.0x floor",
        passed=ratio >= 1.0,
        fmt="{:.0f}",
    )


def run(ctx: Context) -> Dict[str, Any]:
    path = ensure_audio(ctx.data, ctx.audio_seconds)["flac"]
    info = sf.info(str(path))
    audio_s = info.frames / info.samplerate
    reference = sf.read(str(path), dtype=DTYPE)[0]
    t = time.perf_counter()
    sf.read(str(path), dtype=DTYPE)
    local_decode = time.perf_counter() - t
    results: Dict[str, Any] = {"file_size": path.stat().st_size, "audio_seconds": audio_s,
                               "local_decode_s": local_decode}
    netns = in_private_netns()
    if netns:
        loopback_up()
    with BenchNginx(ctx.data) as srv:
        results["loopback"] = measure(ctx, srv, path, "loopback", reference, warm=True)
    if netns:
        link = "tc tbf " + shape_loopback(RATE)
        limit_rate = None
    else:
        link = "FALLBACK nginx limit_rate 100 MB/s PER CONNECTION (no network namespace: not root?)"
        limit_rate = RATE
        log("WARNING: " + link)
    with BenchNginx(ctx.data, limit_rate=limit_rate) as srv:
        results["100MB/s"] = measure(ctx, srv, path, "100MBps", reference, warm=False)
    rows = [link_row(", loopback", audio_s, results["loopback"]),
            link_row(", 100 MB/s link" + ("" if netns else " (FALLBACK)"), audio_s, results["100MB/s"])]
    model = (
        f"FLAC {path.stat().st_size / MB:.1f} MB, {audio_s:.0f} s stereo 44.1 kHz, decoded to {DTYPE} "
        f"(local file: {local_decode:.2f} s); loopback, then a 100 MB/s link: {link}; floor = the faster "
        "single thread of 'download, then decode' and 'decode while reading'"
    )
    return {"rows": rows, "results": results, "model": model}
