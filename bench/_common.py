"""Shared helpers of the benchmark: machine description, test data, clients, results, table.

Every client is used the way its documentation shows, with its defaults:

* ``kithara-io``  ``kithara_io.open(url)``
* ``fsspec``      ``HTTPFileSystem().open(url, "rb")`` (what ``fsspec.open(url, "rb")`` builds;
                  default "bytes" read-ahead cache of 5 MB blocks). A fresh filesystem object is
                  made per measured open (``skip_instance_cache=True``), so fsspec, like the other
                  clients, starts every measurement without warm keep-alive connections.
* ``smart_open``  ``smart_open.open(url, "rb")``
* ``obstore``     ``HTTPStore.from_url(url)``; per case its API for the access pattern (``get``
                  streamed, ``get_range``, ``get_ranges``) or, for a decoder, ``open_reader``
                  (see ``_obstore``)
* ``floor``       the raw minimum for the access pattern (``requests`` or ``http.client``).

Over https (``tls``: the run's :class:`tests.servers.tls.TlsFiles`) every client verifies the
server against the run's CA, each the way its documentation says: kithara-io ``verify=<CA
path>``, requests ``verify=<CA path>``, ``http.client.HTTPSConnection(context=...)``, fsspec
``HTTPFileSystem(ssl=<SSLContext>)`` (a request option aiohttp takes), smart_open
``transport_params={"session": <requests.Session with verify, trust_env off>}``, obstore
``client_options={"root_certificate": <the CA's PEM>}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

if TYPE_CHECKING:
    import http.client

    import requests

    from tests.servers.tls import TlsFiles

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
if str(REPO) not in sys.path:  # `python bench/run.py` puts bench/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000

CLIENTS = ["kithara-io", "floor", "obstore", "fsspec", "smart_open"]
LIBS = ["kithara-io", "obstore", "fsspec", "smart_open"]  # the clients that are libraries (not the floor)


# -- machine ----------------------------------------------------------------------------------
def _version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def machine_info() -> Dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    nginx = None
    try:
        from tests.servers.nginx import find_nginx

        out = subprocess.run([find_nginx(), "-v"], capture_output=True, text=True, timeout=10)
        nginx = (out.stderr or out.stdout).strip().split("/")[-1]
    except Exception:
        pass
    libsndfile = None
    try:
        import soundfile

        libsndfile = soundfile.__libsndfile_version__
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "versions": {
            "kithara-io": _version("kithara-io"),
            "requests": _version("requests"),
            "urllib3": _version("urllib3"),
            "fsspec": _version("fsspec"),
            "aiohttp": _version("aiohttp"),
            "smart_open": _version("smart_open"),
            "obstore": _version("obstore"),
            "soundfile": _version("soundfile"),
            "libsndfile": libsndfile,
            "numpy": _version("numpy"),
            "nginx": nginx,
        },
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def machine_line(m: Dict[str, Any]) -> str:
    v = m["versions"]
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['os']} (kernel {m['kernel']}); "
        f"Python {m['python']}; kithara-io {v['kithara-io']}, requests {v['requests']}, urllib3 {v['urllib3']}, "
        f"fsspec {v['fsspec']} (aiohttp {v['aiohttp']}), smart_open {v['smart_open']}, obstore {v.get('obstore')}, "
        f"soundfile {v['soundfile']} (libsndfile {v['libsndfile']}), nginx {v['nginx']}. "
        "Client and server share the machine's cores."
    )


# -- statistics -------------------------------------------------------------------------------
def median(values: List[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rotated(items: List[str], k: int) -> List[str]:
    """The client order of repeat ``k``: rotated so no client always runs first or last."""
    k %= len(items)
    return items[k:] + items[:k]


# -- test data --------------------------------------------------------------------------------
def _done_marker(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def ensure_random(path: Path, size: int, *, pattern: bool = False) -> Path:
    """A file of ``size`` random bytes (``pattern``: one random MiB repeated, much faster)."""
    marker = _done_marker(path)
    if marker.exists() and path.exists() and path.stat().st_size == size:
        return path
    started = time.monotonic()
    block = os.urandom(MiB) if pattern else None
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MiB if not pattern else MiB)
            f.write(block[:n] if pattern else os.urandom(n))
            left -= n
    marker.touch()
    log(f"generated {path.name} ({size / MB:.0f} MB) in {time.monotonic() - started:.1f}s")
    return path


AUDIO = {  # name -> (format, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def ensure_audio(directory: Path, seconds: int) -> Dict[str, Path]:
    """``music<seconds>.{wav,flac,ogg,mp3}``: the tests' stereo sweep + noise signal, 44.1 kHz.

    Written in blocks: libsndfile's Vorbis encoder crashes on one very large write.
    """
    import soundfile as sf

    from tests.servers.media import SAMPLE_RATE, signal

    files = {fmt: directory / f"music{seconds}.{fmt}" for fmt in AUDIO}
    if all(_done_marker(p).exists() for p in files.values()):
        return files
    started = time.monotonic()
    data = signal(seconds).astype("float32")
    for fmt, path in files.items():
        major, subtype = AUDIO[fmt]
        with sf.SoundFile(path, "w", SAMPLE_RATE, data.shape[1], format=major, subtype=subtype) as out:
            for i in range(0, len(data), 32768):
                out.write(data[i : i + 32768])
        _done_marker(path).touch()
    log(f"generated {seconds} s of audio in 4 formats in {time.monotonic() - started:.1f}s")
    return files


# -- clients ----------------------------------------------------------------------------------
@contextlib.contextmanager
def open_client(client: str, url: str, tls: "Optional[TlsFiles]" = None, **kithara_kw) -> Iterator[Any]:
    """A readable, seekable file object of ``url`` through one of the libraries, closed after;
    over https trusting ``tls.ca``."""
    if client == "kithara-io":
        import kithara_io

        if tls is not None:
            kithara_kw.setdefault("verify", str(tls.ca))
        with kithara_io.open(url, **kithara_kw) as f:
            yield f
    elif client == "fsspec":
        from fsspec.implementations.http import HTTPFileSystem

        request_options = {"ssl": tls.client_context()} if tls is not None else {}
        fs = HTTPFileSystem(skip_instance_cache=True, **request_options)
        try:
            with fs.open(url, "rb") as f:
                yield f
        finally:
            if fs._session is not None:  # otherwise closed only by a GC finaliser
                HTTPFileSystem.close_session(fs.loop, fs._session)
    elif client == "smart_open":
        import requests
        import smart_open

        if tls is None:
            with smart_open.open(url, "rb") as f:
                yield f
            return
        with requests.Session() as session:
            session.verify = str(tls.ca)
            # smart_open passes no verify= per request, and then requests lets REQUESTS_CA_BUNDLE
            # (set on many machines) override session.verify; loopback needs no proxy or netrc.
            session.trust_env = False
            with smart_open.open(url, "rb", transport_params={"session": session}) as f:
                yield f
    elif client == "obstore":
        import _obstore

        f = _obstore.open_reader(url, tls)
        try:
            yield f
        finally:
            f.close()
    else:
        raise ValueError(client)


def floor_get(url: str, tls: "Optional[TlsFiles]" = None, **kw) -> "requests.Response":
    """The raw floor's streaming ``requests.get`` (over https trusting ``tls.ca``)."""
    import requests

    return requests.get(url, stream=True, timeout=60, verify=str(tls.ca) if tls is not None else True, **kw)


def floor_read(url: str, size: "Optional[int]" = None, tls: "Optional[TlsFiles]" = None) -> int:
    """The floor's whole read: one streaming GET read with ``iter_content(1 MiB)``, up to
    ``size`` bytes (None: to the end); returns the bytes read."""
    n = 0
    with floor_get(url, tls) as r:
        r.raise_for_status()
        for piece in r.iter_content(MiB):
            n += len(piece)
            if size is not None and n >= size:
                break
    return n


def http_connection(url: str, tls: "Optional[TlsFiles]" = None) -> "Tuple[http.client.HTTPConnection, str]":
    """One keep-alive ``http.client`` connection to ``url``'s origin (``HTTPSConnection``
    trusting ``tls.ca`` over https), and the request target of ``url``."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    if parts.scheme == "https":
        if tls is None:
            raise ValueError(f"{url}: https needs the run's TLS files")
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=30, context=tls.client_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    return conn, target


def read_through(f, chunk: int, limit: int) -> int:
    """``read(chunk)`` until EOF or ``limit`` bytes; bounded by the expected number of calls."""
    total = 0
    for _ in range(limit // chunk + 2):
        want = min(chunk, limit - total)
        if want <= 0:
            break
        data = f.read(want)
        if not data:
            break
        total += len(data)
    return total


def tagged(url: str, tag: str) -> str:
    """The URL with a query tag, so nginx's access log attributes each request to a run."""
    return f"{url}?bench={tag}"


# -- output -----------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def row(
    case: str,
    metric: str,
    values: Dict[str, Any],
    *,
    ratio: Optional[float] = None,
    target: str = "",
    passed: Optional[bool] = None,
    fmt: str = "{:.1f}",
    vs_obstore: Optional[float] = None,
) -> Dict[str, Any]:
    """One table row: ``values`` per client (numbers are formatted with ``fmt``).
    ``vs_obstore``: kithara-io's value / obstore's (default: computed when both are numbers)."""
    cells = {}
    for client in CLIENTS:
        v = values.get(client)
        if v is None:
            cells[client] = "—"
        elif isinstance(v, str):
            cells[client] = v
        else:
            cells[client] = fmt.format(v)
    k, o = values.get("kithara-io"), values.get("obstore")
    if vs_obstore is None and isinstance(k, (int, float)) and isinstance(o, (int, float)) and o:
        vs_obstore = k / o
    return {
        "case": case,
        "metric": metric,
        "values": {k: v for k, v in values.items()},
        "cells": cells,
        "ratio": ratio,
        "vs_obstore": vs_obstore,
        "target": target,
        "passed": passed,
    }


def write_result(name: str, payload: Dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def verdict(passed: Optional[bool]) -> str:
    return {True: "pass", False: "**FAIL**", None: "info"}[passed]


def markdown_table(rows: List[Dict[str, Any]]) -> str:
    """The rows as one Markdown table; the ratios are kithara-io's value / the floor's and /
    obstore's (so > 1 is faster for rates, slower for times, CPU and memory)."""
    head = (
        "| case | metric | kithara-io | floor | obstore | fsspec | smart_open | ratio vs floor | "
        "vs obstore | target | result |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ratio = "—" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        vs_ob = "—" if r.get("vs_obstore") is None else f"{r['vs_obstore']:.2f}x"
        c = r["cells"]
        lines.append(
            f"| {r['case']} | {r['metric']} | {c['kithara-io']} | {c['floor']} | {c['obstore']} | {c['fsspec']} | "
            f"{c['smart_open']} | {ratio} | {vs_ob} | {r['target']} | {verdict(r.get('passed'))} |"
        )
    return "\n".join(lines)


# -- nginx access log -------------------------------------------------------------------------
_LOG_LINE = re.compile(
    r'^(?P<msec>[\d.]+) (?P<status>\d{3}) (?P<bytes>\d+) (?P<rtime>[\d.]+) "(?P<range>[^"]*)" "(?P<request>[^"]*)"$'
)


def parse_access_log(path: Path) -> List[Dict[str, Any]]:
    """The requests of a ``bench``-format nginx access log."""
    out = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m:
            out.append(
                {
                    "status": int(m["status"]),
                    "bytes": int(m["bytes"]),
                    "range": m["range"],
                    "request": m["request"],
                    "time": float(m["rtime"]),
                }
            )
    return out


def settle(fn: Callable[[], Any], *, rounds: int = 40, interval: float = 0.05, stable: int = 3) -> Any:
    """Call ``fn`` until its answer stops changing (nginx logs an aborted request only when it
    notices the closed connection); bounded to ``rounds`` calls."""
    last, same = None, 0
    for _ in range(rounds):
        value = fn()
        if value == last:
            same += 1
            if same >= stable:
                return value
        else:
            last, same = value, 0
        time.sleep(interval)
    return last


def vm_status(field: str) -> Optional[int]:
    """A ``/proc/self/status`` field in bytes (VmRSS, VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Context:
    """What a case gets: the shared data directory and the run mode."""

    def __init__(self, data: Path, quick: bool) -> None:
        self.data = Path(data)
        self.quick = quick
        self.repeats = 1 if quick else 3

    def reps(self, full: int) -> int:
        """Timed repeats of a case: ``full``, or 1 with --quick."""
        return 1 if self.quick else full

    @property
    def big_size(self) -> int:
        """The file of cases 1, 2 and 6: 200 MB (64 MB with --quick)."""
        return 64 * MB if self.quick else 200 * MB

    def big_file(self) -> Path:
        return ensure_random(self.data / f"random{self.big_size // MB}MB.bin", self.big_size)

    @property
    def audio_seconds(self) -> int:
        return 20 if self.quick else 120


def kithara_stats(f) -> Dict[str, Any]:
    """A kithara-io stream's ``stats()`` as a dict."""
    import dataclasses

    st = f.stats()
    return dataclasses.asdict(st) if dataclasses.is_dataclass(st) else dict(vars(st))
