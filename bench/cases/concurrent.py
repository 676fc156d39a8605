"""Case 6: eight concurrent streams: aggregate throughput, and the High stream's first byte.

Seven Low-priority streams each read their own 1/8 of the 200 MB file (``seek`` to its start,
then ``read(1 MiB)``, 24 MB each); once every one of them has read its first MiB, an eighth,
High-priority stream is opened and reads its own part the same way. TTFB of the High stream =
``open`` + its first ``read(64 KiB)``. Aggregate = all bytes / the time from the first open
to the last byte. kithara-io: all eight streams on one ``Downloader()`` (default
``max_concurrent=5``). The others have no priorities: eight threads, each with its own file
object (fsspec's share its event-loop thread); floor: eight ``requests`` GETs with a Range;
obstore: eight ``obstore.get`` of the stream's range, each on its own ``HTTPStore``, streamed in
chunks of at least 64 KiB.
Also reported: the same TTFB on an idle server (before the load).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional

import requests

from _common import CLIENTS, KiB, MB, MiB, Context, log, median, open_client, rotated, row, tagged
from _servers import BenchNginx

NAME = "concurrent"
TITLE = "6. eight concurrent streams"
TIMEOUT = 300
STREAMS = 8
FIRST = 64 * KiB


class _Reader(threading.Thread):
    def __init__(self, client: str, url: str, offset: int, length: int, high: bool, downloader=None) -> None:
        super().__init__(name=f"bench-{client}-{'high' if high else 'low'}-{offset}", daemon=True)
        self.client, self.url, self.offset, self.length, self.high = client, url, offset, length, high
        self.downloader = downloader
        self.started_evt = threading.Event()  # first MiB read
        self.first_latency: Optional[float] = None
        self.read = 0
        self.finished_at: Optional[float] = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the case
            self.error = exc
        finally:
            self.finished_at = time.perf_counter()
            self.started_evt.set()

    def _consume(self, read, first: int, t0: float) -> None:
        data = read(first)
        self.first_latency = time.perf_counter() - t0  # from the start of open / the request
        self.read = len(data)
        for _ in range(self.length // MiB + 2):
            if self.read >= MiB:
                self.started_evt.set()
            if self.read >= self.length:
                break
            data = read(min(MiB, self.length - self.read))
            if not data:
                break
            self.read += len(data)

    def _run(self) -> None:
        first = FIRST if self.high else MiB
        t0 = time.perf_counter()
        if self.client == "floor":
            rng = f"bytes={self.offset}-{self.offset + self.length - 1}"
            with requests.get(self.url, headers={"Range": rng}, stream=True, timeout=60) as r:
                r.raise_for_status()
                self._consume(lambda n: r.raw.read(n), first, t0)
        elif self.client == "obstore":
            import _obstore

            self._consume(_obstore.RangeStream(self.url, self.offset, self.length).read, first, t0)
        else:
            kw = {}
            if self.client == "kithara-io":
                kw = {"priority": "high" if self.high else "low", "downloader": self.downloader}
            with open_client(self.client, self.url, **kw) as f:
                f.seek(self.offset)
                self._consume(f.read, first, t0)


def one_round(client: str, url: str, size: int, per_stream: int) -> Dict[str, Any]:
    downloader = None
    if client == "kithara-io":
        import kithara_io

        downloader = kithara_io.Downloader()
    try:
        part = size // STREAMS
        lows = [
            _Reader(client, url, i * part, per_stream, False, downloader) for i in range(STREAMS - 1)
        ]
        t_start = time.perf_counter()
        for r in lows:
            r.start()
        for r in lows:
            r.started_evt.wait(60)
        errors = [r.error for r in lows if r.error]
        if errors:
            raise RuntimeError(f"{client}: {errors[0]!r}")
        high = _Reader(client, url, (STREAMS - 1) * part, per_stream, True, downloader)
        t_high = time.perf_counter()
        high.start()
        high.started_evt.wait(60)
        for r in lows + [high]:
            r.join(120)
            if r.is_alive():
                raise RuntimeError(f"{client}: a reader did not finish within 120 s")
            if r.error:
                raise RuntimeError(f"{client}: {r.error!r}")
        t_end = max(r.finished_at for r in lows + [high])
        total = sum(r.read for r in lows + [high])
        if total != STREAMS * per_stream:
            raise RuntimeError(f"{client}: read {total} of {STREAMS * per_stream} bytes")
        return {
            "aggregate_mb_s": total / (t_end - t_start) / MB,
            "high_ttfb_ms": 1000 * high.first_latency,
            "high_started_after_s": t_high - t_start,
            "low_first_mib_ms": [1000 * r.first_latency for r in lows],
        }
    finally:
        if downloader is not None:
            downloader.close()


def idle_ttfb(client: str, url: str, offset: int) -> float:
    r = _Reader(client, url, offset, FIRST, True, None)
    r.start()
    r.join(60)
    if r.error:
        raise RuntimeError(f"{client}: {r.error!r}")
    return 1000 * r.first_latency


def run(ctx: Context) -> Dict[str, Any]:
    path = ctx.big_file()
    size = path.stat().st_size
    per_stream = min(24 * MB, size // STREAMS)
    agg: Dict[str, list] = {c: [] for c in CLIENTS}
    ttfb: Dict[str, list] = {c: [] for c in CLIENTS}
    idle: Dict[str, list] = {c: [] for c in CLIENTS}
    runs: Dict[str, list] = {c: [] for c in CLIENTS}
    with BenchNginx(ctx.data) as srv:
        for client in CLIENTS:  # warm-up: imports, page cache of the first parts
            one_round(client, tagged(srv.url(path.name), f"conc-warm-{client}"), size, min(per_stream, 2 * MiB))
        for rep in range(ctx.repeats):
            for client in rotated(CLIENTS, rep):
                url = tagged(srv.url(path.name), f"conc-{client}-{rep}")
                idle[client].append(idle_ttfb(client, url, (STREAMS - 1) * (size // STREAMS)))
                res = one_round(client, url, size, per_stream)
                res["idle_ttfb_ms"] = idle[client][-1]
                res["requests"] = len(srv.settled_requests(f"conc-{client}-{rep}"))
                agg[client].append(res["aggregate_mb_s"])
                ttfb[client].append(res["high_ttfb_ms"])
                runs[client].append(res)
                log(
                    f"concurrent {client:10s} rep {rep}: {res['aggregate_mb_s']:6.0f} MB/s aggregate, High TTFB "
                    f"{res['high_ttfb_ms']:6.1f} ms (idle {res['idle_ttfb_ms']:.1f} ms), {res['requests']} requests"
                )
    m_agg = {c: median(v) for c, v in agg.items()}
    m_ttfb = {c: median(v) for c, v in ttfb.items()}
    m_idle = {c: median(v) for c, v in idle.items()}
    rows = [
        row(
            "6 eight streams",
            f"aggregate MB/s (8 x {per_stream // MB} MB, 7 Low + 1 High)",
            m_agg,
            ratio=m_agg["kithara-io"] / m_agg["floor"],
            target="(no target; case 1: >= 0.5x)",
            passed=None,
            fmt="{:.0f}",
        ),
        row(
            "6 eight streams",
            "High stream TTFB under load, ms (open + read 64 KiB)",
            m_ttfb,
            ratio=m_ttfb["kithara-io"] / m_ttfb["floor"],
            target="(no target)",
            passed=None,
            fmt="{:.1f}",
        ),
        row(
            "6 eight streams",
            "same TTFB, idle server, ms",
            m_idle,
            ratio=m_idle["kithara-io"] / m_idle["floor"],
            target="(reference)",
            passed=None,
            fmt="{:.1f}",
        ),
    ]
    return {
        "rows": rows,
        "results": {"per_stream": per_stream, "aggregate": agg, "high_ttfb_ms": ttfb, "idle_ttfb_ms": idle, "runs": runs},
        "model": "nginx on 127.0.0.1, no shaping; kithara-io streams share one Downloader(max_concurrent=5)",
    }
