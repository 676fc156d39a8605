"""A ranged file server for HLS tests: a User-Agent log, and a live sliding-window playlist.

``HlsServer(root, bandwidth=..., live=LiveConfig(...))`` serves the files under ``root`` like
:class:`RangedServer` (ranges, validators, a shared token bucket) and records every request's
User-Agent (``agents``), so a test can assert that every request came from kithara-io and not
from FFmpeg. ``GET /live/live.m3u8`` answers a live media playlist made from
``live/source.m3u8``: a window of ``window`` segments whose live edge advances one segment
per ``period`` seconds from the first request on, ``#EXT-X-ENDLIST`` once ``publish``
segments are out (bounded: a live test always ends). ``LiveConfig(event=True)``: the same as
an EVENT playlist, which only ever appends (it starts with ``window`` segments).
``LiveConfig(low_latency=True)``: LL-HLS, each segment also listed as two ``#EXT-X-PART``
byte ranges, the first part of the segment being made and an ``#EXT-X-PRELOAD-HINT``.
``LiveConfig(start="TIME-OFFSET=..")``: an ``#EXT-X-START`` line with those attributes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import List, Optional

import m3u8

from ._base import ServerBase
from .ranged import RangedConfig, RangedHandler, TokenBucket


@dataclasses.dataclass(frozen=True)
class LiveConfig:
    window: int = 5  # segments listed at once
    period: float = 1.0  # seconds between two new segments (the target duration)
    publish: int = 10  # segments published in all, then ENDLIST
    event: bool = False  # an EVENT playlist: append-only (``window`` segments at first), typed EVENT
    low_latency: bool = False  # LL-HLS: parts of each segment, parts of the next one and a preload hint
    start: Optional[str] = None  # the attributes of an #EXT-X-START line ("TIME-OFFSET=-2.5,PRECISE=YES")


class _Live:
    def __init__(self, root: Path, config: LiveConfig) -> None:
        self.config = config
        self.root = root
        self.source = m3u8.load(str(root / "live" / "source.m3u8"))
        self._lock = threading.Lock()
        self._t0: Optional[float] = None
        self.served_windows: List[tuple] = []  # (first sequence, last sequence, ended)

    def _parts(self, seg, count: int) -> List[str]:
        """``#EXT-X-PART`` lines for the first ``count`` halves of ``seg``'s file."""
        size = (self.root / "live" / seg.uri).stat().st_size
        half = size // 2
        spans = [(half, 0), (size - half, half)][:count]
        return [f'#EXT-X-PART:DURATION={seg.duration / 2:.6f},URI="{seg.uri}",BYTERANGE="{n}@{at}"' for n, at in spans]

    def playlist(self) -> bytes:
        cfg = self.config
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()
            elapsed = time.monotonic() - self._t0
        published = min(cfg.publish, len(self.source.segments), cfg.window + int(elapsed / cfg.period))
        first = 0 if cfg.event else max(0, published - cfg.window)
        ended = published >= min(cfg.publish, len(self.source.segments))
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(cfg.period + 0.999)}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        if cfg.event:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
        if cfg.start is not None:
            lines.append(f"#EXT-X-START:{cfg.start}")
        if cfg.low_latency:
            lines[1] = "#EXT-X-VERSION:9"
            lines += [f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=NO,PART-HOLD-BACK={3 * cfg.period / 2:.3f}",
                      f"#EXT-X-PART-INF:PART-TARGET={cfg.period / 2:.3f}"]
        for seg in self.source.segments[first:published]:
            if cfg.low_latency:
                lines += self._parts(seg, 2)
            lines += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
        if ended:
            lines.append("#EXT-X-ENDLIST")
        elif cfg.low_latency and published < len(self.source.segments):
            # The segment being made: its first part out, the next one hinted.
            coming = self.source.segments[published]
            lines += self._parts(coming, 1)
            size = (self.root / "live" / coming.uri).stat().st_size
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{coming.uri}",BYTERANGE-START={size // 2}')
        with self._lock:
            self.served_windows.append((first, published - 1, ended))
        return ("\n".join(lines) + "\n").encode()


class HlsHandler(RangedHandler):
    def _start(self, status, headers, length, rng, if_range):
        with self.server.agents_lock:
            self.server.agents.append((self.path, self.headers.get("User-Agent", "")))
        return super()._start(status, headers, length, rng, if_range)

    def do_GET(self) -> None:
        with self.server.agents_lock:
            status = self.server.fail_next.pop(self.path, None)
        if status is not None:  # an injected transient failure, once
            self._start(status, [("Content-Type", "text/plain"), ("Retry-After", "0")], 0, self.headers.get("Range"), None)
            return
        live = self.server.live
        if live is not None and self.path.split("?")[0] == "/live/live.m3u8":
            body = live.playlist()
            self._start(200, [("Content-Type", "application/vnd.apple.mpegurl"), ("Cache-Control", "no-cache")], len(body), None, None)
            self.wfile.write(body)
            return
        super().do_GET()


class HlsServer(ServerBase):
    kind = "hls"
    supports_ranges = True

    def __init__(self, root, *, bandwidth: Optional[float] = None, latency: float = 0.0, live: Optional[LiveConfig] = None) -> None:
        chunk = 64 * 1024 if bandwidth is None else int(min(64 * 1024, max(1024, bandwidth / 50)))
        bucket = TokenBucket(bandwidth, chunk) if bandwidth is not None else None
        super().__init__(root, HlsHandler, RangedConfig(latency, chunk, bucket, 60.0))
        self.httpd.agents = []
        self.httpd.agents_lock = threading.Lock()
        self.httpd.live = _Live(self.root, live) if live is not None else None
        self.httpd.fail_next = {}  # path -> status answered once to its next GET

    def fail_once(self, path: str, status: int) -> None:
        """Answer the next GET of ``path`` with ``status`` (a transient fault to retry)."""
        with self.httpd.agents_lock:
            self.httpd.fail_next[path] = status

    @property
    def agents(self) -> List[tuple]:
        with self.httpd.agents_lock:
            return list(self.httpd.agents)

    @property
    def live(self) -> Optional[_Live]:
        return self.httpd.live

    def reset_log(self) -> None:
        super().reset_log()
        with self.httpd.agents_lock:
            self.httpd.agents.clear()
