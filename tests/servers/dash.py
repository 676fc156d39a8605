"""A DASH test server: the HLS test server (ranges, a shared token bucket, a User-Agent log)
that also publishes a live (dynamic) MPD made from a finished FFmpeg run.

``DashServer(root, live=LiveDash(...))``: ``GET /live/live.mpd`` answers ``live/manifest.mpd``
(FFmpeg's MPD of the whole run, SegmentTemplate + SegmentTimeline) as ``type="dynamic"``:
``availabilityStartTime`` is ``window`` segments before the first request, one more segment is
out every segment duration (real time), ``timeShiftBufferDepth`` keeps ``window`` of them, with
``minimumUpdatePeriod`` and ``suggestedPresentationDelay``. With ``timeline=True`` the MPD lists
the window in a SegmentTimeline (as FFmpeg's live MPDs do); with ``timeline=False`` it gives a
``$Number$`` template with a duration only, and the client works the window out from the clock.
Once every segment is out, the MPD turns ``static`` (the whole run): a live test always ends.
``skew``: the server's clock runs that far ahead of the machine's (its availabilityStartTime
too); ``utc_timing="direct"`` or ``"http"`` (``GET /time``) tells it in a UTCTiming element.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Tuple

from .hls import HlsHandler, HlsServer


@dataclasses.dataclass(frozen=True)
class LiveDash:
    window: int = 3  # segments in the time-shift buffer
    timeline: bool = True
    delay: float = 2.0  # suggestedPresentationDelay, seconds
    update: float = 0.5  # minimumUpdatePeriod, seconds
    skew: float = 0.0  # the server's clock is this far ahead of the machine's
    utc_timing: Optional[str] = None  # "direct" or "http" (GET /time): a UTCTiming element


class _LiveMpd:
    def __init__(self, root: Path, config: LiveDash) -> None:
        self.config = config
        self.text = (root / "live" / "manifest.mpd").read_text()
        self.timescale = int(re.search(r'timescale="(\d+)"', self.text).group(1))
        self.segments = _timeline(self.text)  # (t, d) of each, in timescale units
        self.segment = self.segments[1][1] / self.timescale  # the nominal segment duration
        self._lock = threading.Lock()
        self._t0: Optional[float] = None
        self.served: List[Tuple[int, int, bool]] = []  # (first listed, count out, ended)

    def mpd(self) -> bytes:
        cfg = self.config
        with self._lock:
            if self._t0 is None:
                self._t0 = self.now() - cfg.window * self.segment
            start = self._t0
        out = min(len(self.segments), int((self.now() - start) / self.segment))
        ended = out >= len(self.segments)
        first = max(0, out - cfg.window)
        with self._lock:
            self.served.append((first, out, ended))
        if ended:
            return self.text.encode()
        when = _iso(start)
        head = (
            f'type="dynamic" availabilityStartTime="{when}" minimumUpdatePeriod="PT{cfg.update}S" '
            f'timeShiftBufferDepth="PT{cfg.window * self.segment:.3f}S" suggestedPresentationDelay="PT{cfg.delay}S"'
        )
        text = self.text.replace('type="static"', head)
        if cfg.utc_timing == "direct":
            text = text.replace("\t<Period", f'\t<UTCTiming schemeIdUri="urn:mpeg:dash:utc:direct:2014" value="{_iso(self.now())}"/>\n\t<Period', 1)
        elif cfg.utc_timing == "http":
            text = text.replace("\t<Period", '\t<UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="/time"/>\n\t<Period', 1)
        text = re.sub(r'\s*mediaPresentationDuration="[^"]*"', "", text)
        if cfg.timeline:
            entries = "".join(f'<S t="{t}" d="{d}" />' for t, d in self.segments[first:out])
            text = re.sub(r"<SegmentTimeline>.*?</SegmentTimeline>", f"<SegmentTimeline>{entries}</SegmentTimeline>", text, flags=re.S)
            text = text.replace('startNumber="1"', f'startNumber="{first + 1}"')
        else:
            text = re.sub(r"\s*<SegmentTimeline>.*?</SegmentTimeline>\s*", "", text, flags=re.S)
            text = text.replace('startNumber="1"', f'startNumber="1" duration="{round(self.segment * self.timescale)}"')
        return text.encode()


    def now(self) -> float:
        """The server's clock."""
        return time.time() + self.config.skew


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timeline(text: str) -> List[Tuple[int, int]]:
    out, t = [], 0
    for match in re.finditer(r'<S(?: t="(\d+)")? d="(\d+)"(?: r="(\d+)")?\s*/>', text):
        t = int(match.group(1)) if match.group(1) else t
        for _ in range(int(match.group(3) or 0) + 1):
            out.append((t, int(match.group(2))))
            t += int(match.group(2))
    return out


class DashHandler(HlsHandler):
    def do_GET(self) -> None:
        live = self.server.live_mpd
        if live is not None and self.path.split("?")[0] == "/live/live.mpd":
            body = live.mpd()
            self._start(200, [("Content-Type", "application/dash+xml"), ("Cache-Control", "no-cache")], len(body), None, None)
            self.wfile.write(body)
            return
        if live is not None and self.path == "/time":
            body = _iso(live.now()).encode()
            self._start(200, [("Content-Type", "text/plain")], len(body), None, None)
            self.wfile.write(body)
            return
        super().do_GET()


class DashServer(HlsServer):
    kind = "dash"

    def __init__(self, root, *, bandwidth: Optional[float] = None, live: Optional[LiveDash] = None) -> None:
        super().__init__(root, bandwidth=bandwidth)
        self.httpd.RequestHandlerClass = DashHandler
        self.httpd.live_mpd = _LiveMpd(self.root, live) if live is not None else None

    @property
    def live_mpd(self) -> Optional[_LiveMpd]:
        return self.httpd.live_mpd
