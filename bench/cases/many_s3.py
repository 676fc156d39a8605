"""Case 7c: 32 objects of an S3 store at once (moto's S3 server on 127.0.0.1), each read
with ``read(1 MiB)`` in its own thread, beside obstore's ``S3Store``.

kithara-io: ``kithara_io.open("s3://bucket/key", storage_options={endpoint_url, key,
secret})``, every request SigV4-signed by botocore, all streams on the default Downloader.
obstore: one ``S3Store(bucket, endpoint=..., access_key_id=..., ...)`` shared by the 32
threads, each one ``obstore.get(store, key).stream(min_chunk_size=1 MiB)``. floor: boto3's
``get_object`` body read in 1 MiB pieces, one client shared by the threads (what most S3
code does). moto runs in its own process (``python -m moto.server``), without signature
checks: the clients sign, the server's CPU is not counted; but it shares the machine's
cores, and moto copies the whole object for every ranged GET, so a client's requests per
object (kithara-io: 64 KiB at open, a 64 KiB tail, then doubling; obstore and boto3: one GET
by construction) weigh more here than on a real store. kithara-io's requests are counted
(``requests_per_object``). Each client in a fresh child process: a warm-up round (4 whole
objects: imports, pools, signing set-up), then the timed round; aggregate MB/s and client
CPU s per GiB, median of 3 repeats, client order rotated (1 with --quick, and 16 x 4 MiB
objects). ``KITHARA_BENCH_S3_OPTIONS`` (JSON) passes stream options to kithara-io, for
experiments.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from _common import MB, Context, MiB, log, median, rotated, row

NAME = "many_s3"
TITLE = "7c. 32 S3 objects at once (moto)"
TIMEOUT = 600
CLIENTS = ["kithara-io", "obstore", "floor"]
BUCKET = "bench"
KEY, SECRET = "bench-key", "bench-secret"
GiB = 1024 * MiB


def _shape(ctx: Context):
    return (16, 4 * MiB) if ctx.quick else (32, 8 * MiB)


# -- the server -------------------------------------------------------------------------------
class Moto:
    """``python -m moto.server`` on a free loopback port, stopped on exit."""

    def __enter__(self) -> "Moto":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.__exit__()
                    raise RuntimeError("moto server did not start")
                time.sleep(0.1)  # polling a port that is not open yet: nothing to wait on

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


def _upload(endpoint: str, n: int, size: int) -> List[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    keys = [f"many/obj{i:02d}.bin" for i in range(n)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(size))
    return keys


# -- child process: one client ----------------------------------------------------------------
def _reader(client: str, endpoint: str):
    """A function reading one object to its end (returns the bytes read)."""
    if client == "kithara-io":
        import kithara_io

        options = {"endpoint_url": endpoint, "key": KEY, "secret": SECRET}
        tuning = json.loads(os.environ.get("KITHARA_BENCH_S3_OPTIONS", "{}"))  # experiments only

        def read(key: str) -> int:
            n = 0
            with kithara_io.open(f"s3://{BUCKET}/{key}", storage_options=options, **tuning) as f:
                while True:
                    chunk = f.read(MiB)
                    if not chunk:
                        with _REQUESTS_LOCK:
                            _REQUESTS.append(f.stats().requests)
                        return n
                    n += len(chunk)
        return read
    if client == "obstore":
        import obstore
        from obstore.store import S3Store

        store = S3Store(BUCKET, endpoint=endpoint, access_key_id=KEY, secret_access_key=SECRET, region="us-east-1",
                        client_options={"allow_http": True})
        return lambda key: sum(len(c) for c in obstore.get(store, key).stream(min_chunk_size=MiB))
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                      region_name="us-east-1")

    def read_boto(key: str) -> int:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
        return sum(len(c) for c in iter(lambda: body.read(MiB), b""))
    return read_boto


_REQUESTS: List[int] = []  # kithara-io's requests per object, this process
_REQUESTS_LOCK = threading.Lock()


def _round(read, keys: List[str], size: int) -> None:
    got: Dict[int, int] = {}
    errors: List[BaseException] = []

    def work(i: int, key: str) -> None:
        try:
            got[i] = read(key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, k), name=f"bench-s3-{i}") for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if any(t.is_alive() for t in threads) or errors:
        raise RuntimeError(f"a stream failed or hung: {errors[:1]!r}")
    if any(n != size for n in got.values()) or len(got) != len(keys):
        raise RuntimeError(f"streams read {sorted(set(got.values()))} instead of {size} bytes each")


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _child(client: str, spec: str) -> None:
    s = json.loads(spec)
    read = _reader(client, s["endpoint"])
    warm = read  # the warm-up reads whole objects too: imports, pools, signing set-up
    _round(warm, s["keys"][:4], s["size"])
    _REQUESTS.clear()
    cpu0, t0 = _cpu(), time.perf_counter()
    _round(read, s["keys"], s["size"])
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
    per_object = sum(_REQUESTS) / len(_REQUESTS) if _REQUESTS else 1.0
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "bytes": s["size"] * len(s["keys"]),
                      "requests_per_object": per_object}))


def _measure(client: str, endpoint: str, keys: List[str], size: int) -> Dict[str, Any]:
    bench = str(Path(__file__).resolve().parents[1])
    code = f"import sys; sys.path.insert(0, {bench!r}); from cases.many_s3 import _child; _child(*sys.argv[1:])"
    spec = json.dumps({"endpoint": endpoint, "keys": keys, "size": size})
    out = subprocess.run([sys.executable, "-c", code, client, spec], capture_output=True, text=True, timeout=300,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"s3 child {client} failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["mb_s"] = res["bytes"] / res["seconds"] / MB
    res["cpu_s_per_gib"] = res["cpu_s"] / (res["bytes"] / GiB)
    return res


def run(ctx: Context) -> Dict[str, Any]:
    n, size = _shape(ctx)
    mb_s: Dict[str, list] = {c: [] for c in CLIENTS}
    cpu: Dict[str, list] = {c: [] for c in CLIENTS}
    per_object: Dict[str, list] = {c: [] for c in CLIENTS}
    with Moto() as moto:
        keys = _upload(moto.endpoint, n, size)
        for rep in range(ctx.repeats):
            for client in rotated(CLIENTS, rep):
                res = _measure(client, moto.endpoint, keys, size)
                mb_s[client].append(res["mb_s"])
                cpu[client].append(res["cpu_s_per_gib"])
                per_object[client].append(res["requests_per_object"])
                log(f"many s3 {client:10s} rep {rep}: {res['mb_s']:6.0f} MB/s aggregate, "
                    f"{res['cpu_s_per_gib']:.2f} CPU s/GiB, {res['requests_per_object']:.1f} requests per object")
    m_rate = {c: median(v) for c, v in mb_s.items()}
    m_cpu = {c: median(v) for c, v in cpu.items()}
    case = f"7c {n} S3 objects"
    rows = [
        row(case, f"aggregate MB/s, {n} x {size // MiB} MiB objects at once (moto), read(1 MiB); floor: boto3",
            m_rate, ratio=m_rate["kithara-io"] / m_rate["floor"], target="beside obstore", fmt="{:.0f}"),
        row(case, "client CPU s per GiB (getrusage user + sys)", m_cpu,
            ratio=m_cpu["kithara-io"] / m_cpu["floor"], target="beside obstore", fmt="{:.2f}"),
        row(case, "GET requests per object", {c: median(v) for c, v in per_object.items()}, fmt="{:.1f}"),
    ]
    model = ("moto's S3 server (python -m moto.server, no signature checks; it copies the whole object for "
             "every ranged GET) on 127.0.0.1 in its own process; "
             f"one child process per client and repeat; {n} threads per client")
    return {"rows": rows, "results": {"objects": n, "size": size, "mb_s": mb_s, "cpu_s_per_gib": cpu,
                                     "requests_per_object": per_object}, "model": model}
