"""Case 7: 32 streams at once: 32 distinct 8 MiB files, each read with ``read(1 MiB)`` in its
own thread. Aggregate MB/s and the client's CPU seconds per GiB.

kithara-io: ``kithara_io.open(url)`` with no ``downloader`` argument, so all 32 streams share
the default ``Downloader``. Floor: 32 threads, each one ``requests`` GET with
``iter_content(1 MiB)``. fsspec and smart_open: 32 threads, each with its own file object.
obstore: 32 threads, each one ``obstore.get`` streamed in chunks of at least 1 MiB, all on one
``HTTPStore`` of the origin (a store is obstore's client and connection pool, scoped like a
bucket; kept across the warm-up and the timed round, as kithara-io's default ``Downloader``).

Each client runs in a fresh child process (:func:`_child`): one untimed warm-up round (32
threads, first MiB of each file: imports, lazy set-up), then the timed round. Aggregate =
all bytes / the time from starting the first thread to the end of the last one (opens
included). CPU = ``resource.getrusage(RUSAGE_SELF)`` user + sys of the child over the timed
round (every thread of the client, nothing of nginx or of another client). Median of 3
repeats, client order rotated. ``cases.many_https`` runs the same over https.
Targets (issue #24): aggregate >= 0.9x floor and >= obstore's, CPU per GiB <= 1.3x floor.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from _common import CLIENTS, MB, MiB, Context, ensure_random, log, median, rotated, row, tagged
from _obstore import path_tagged

NAME = "many"
TITLE = "7. 32 streams at once"
TIMEOUT = 420
STREAMS = 32
FILE_SIZE = 8 * MiB
GiB = 1024 * MiB


def files(ctx: Context) -> List[Path]:
    """The 32 distinct files of the case (random bytes)."""
    return [ensure_random(ctx.data / f"many{i:02d}_8MiB.bin", FILE_SIZE) for i in range(STREAMS)]


# -- child process: one client ----------------------------------------------------------------
def _read_stream(client: str, url: str, size: int, tls) -> int:
    from _common import floor_read, open_client, read_through

    if client == "floor":
        return floor_read(url, size, tls)
    if client == "obstore":
        import _obstore

        return _obstore.read(url, size, tls, shared=True)
    with open_client(client, url, tls) as f:
        return read_through(f, MiB, size)


def read_streams(client: str, urls: List[str], size: int, tls) -> None:
    """Read ``size`` bytes of every URL at once, one thread per URL; raise on any failure."""
    got: Dict[int, int] = {}
    errors: List[BaseException] = []

    def work(i: int, url: str) -> None:
        try:
            got[i] = _read_stream(client, url, size, tls)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, u), name=f"bench-many-{i}") for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if any(t.is_alive() for t in threads):
        raise RuntimeError(f"{client}: a stream did not finish within 120 s")
    if errors:
        raise RuntimeError(f"{client}: {errors[0]!r}") from errors[0]
    short = {i: n for i, n in got.items() if n != size}
    if short or len(got) != len(urls):
        raise RuntimeError(f"{client}: streams read {short or len(got)} instead of {size} bytes each")


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _child(client: str, spec: str) -> None:
    """Run in a fresh process: warm-up round, timed round; print the result as JSON."""
    s = json.loads(spec)
    import requests  # noqa: F401  (every client imports it)

    if client == "kithara-io":
        import kithara_io  # noqa: F401
    elif client == "fsspec":
        import fsspec.implementations.http  # noqa: F401
    elif client == "smart_open":
        import smart_open  # noqa: F401
    elif client == "obstore":
        import obstore  # noqa: F401
    tls = None
    if s["tls"]:
        from tests.servers.tls import TlsFiles

        tls = TlsFiles(*(Path(p) for p in s["tls"]))
    read_streams(client, s["warm_urls"], MiB, tls)
    cpu0, t0 = _cpu(), time.perf_counter()
    read_streams(client, s["urls"], s["size"], tls)
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    total = s["size"] * len(s["urls"])
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "bytes": total}))


def _measure(client: str, urls: List[str], warm_urls: List[str], tls) -> Dict[str, Any]:
    bench = str(Path(__file__).resolve().parents[1])
    code = f"import sys; sys.path.insert(0, {bench!r}); from cases.many import _child; _child(*sys.argv[1:])"
    spec = {
        "urls": urls,
        "warm_urls": warm_urls,
        "size": FILE_SIZE,
        "tls": [str(tls.ca), str(tls.cert), str(tls.key)] if tls is not None else None,
    }
    out = subprocess.run([sys.executable, "-c", code, client, json.dumps(spec)], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"many-streams child {client} failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["mb_s"] = res["bytes"] / res["seconds"] / MB
    res["cpu_s_per_gib"] = res["cpu_s"] / (res["bytes"] / GiB)
    return res


# -- the case ---------------------------------------------------------------------------------
def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=False)


def run_scheme(ctx: Context, https: bool) -> Dict[str, Any]:
    """The case over http or https (same files, clients and nginx configuration)."""
    from _servers import bench_nginx, scheme_note

    scheme = "https" if https else "http"
    case = "7 32 streams" + (", HTTPS" if https else "")
    paths = files(ctx)
    mb_s: Dict[str, list] = {c: [] for c in CLIENTS}
    cpu: Dict[str, list] = {c: [] for c in CLIENTS}
    runs: Dict[str, list] = {c: [] for c in CLIENTS}
    with bench_nginx(ctx.data, https=https) as srv:
        note = scheme_note(srv)
        for rep in range(ctx.repeats):
            for client in rotated(CLIENTS, rep):
                tag = f"many-{scheme}-{client}-{rep}"
                tagger = path_tagged if client == "obstore" else tagged
                urls = [tagger(srv.url(p.name), tag) for p in paths]
                warm = [tagger(srv.url(p.name), f"{tag}-warm") for p in paths]
                res = _measure(client, urls, warm, srv.tls)
                res["requests"] = len(srv.settled_requests(tag))
                mb_s[client].append(res["mb_s"])
                cpu[client].append(res["cpu_s_per_gib"])
                runs[client].append(res)
                log(
                    f"many {scheme} {client:10s} rep {rep}: {res['mb_s']:6.0f} MB/s aggregate, "
                    f"{res['cpu_s_per_gib']:.2f} CPU s/GiB ({res['cpu_s']:.2f} s), {res['requests']} requests"
                )
    m_rate = {c: median(v) for c, v in mb_s.items()}
    m_cpu = {c: median(v) for c, v in cpu.items()}
    rate_ratio = m_rate["kithara-io"] / m_rate["floor"]
    cpu_ratio = m_cpu["kithara-io"] / m_cpu["floor"]
    rows = [
        row(
            case,
            f"aggregate MB/s, {STREAMS} x {FILE_SIZE // MiB} MiB files at once, read(1 MiB)",
            m_rate,
            ratio=rate_ratio,
            target=">= 0.9x floor, >= obstore",
            passed=rate_ratio >= 0.9 and m_rate["kithara-io"] >= m_rate["obstore"],
            fmt="{:.0f}",
        ),
        row(
            case,
            "client CPU s per GiB (getrusage user + sys)",
            m_cpu,
            ratio=cpu_ratio,
            target="<= 1.3x floor",
            passed=cpu_ratio <= 1.3,
            fmt="{:.2f}",
        ),
    ]
    model = (
        f"nginx on 127.0.0.1, no shaping{note}; one child process per client "
        f"and repeat; kithara-io on the default Downloader; {STREAMS} threads per client"
    )
    return {
        "rows": rows,
        "results": {"streams": STREAMS, "file_size": FILE_SIZE, "mb_s": mb_s, "cpu_s_per_gib": cpu, "runs": runs},
        "model": model,
    }
