"""Case 4: full soundfile decode of each format over loopback: read amplification, requests.

Bytes fetched are the body bytes nginx sent for the run (its access log, tagged per run):
what crossed the wire, including the tail of a response a client aborted. Requests are the
logged requests of the run (fsspec's HEAD included). Floor: one GET of the whole file.
obstore decodes from ``obstore.open_reader`` (its file object: 1 MiB ranges, the buffer
cleared on every seek).
"""

from __future__ import annotations

import time
from typing import Any, Dict

import soundfile as sf

from _common import CLIENTS, Context, ensure_audio, floor_read, kithara_stats, log, open_client, row, tagged
from _servers import BenchNginx

NAME = "decode"
TITLE = "4. full decode: read amplification"
TIMEOUT = 300


def decode(client: str, url: str, frames: int, extra: Dict[str, Any]) -> float:
    started = time.perf_counter()
    if client == "floor":
        floor_read(url)
        return time.perf_counter() - started
    got = 0
    with open_client(client, url) as f:
        with sf.SoundFile(f) as snd:
            for block in snd.blocks(blocksize=65536, dtype="float32"):
                got += len(block)
        if client == "kithara-io":
            extra["stats"] = kithara_stats(f)
    if got != frames:
        raise RuntimeError(f"{client}: decoded {got} of {frames} frames")
    return time.perf_counter() - started


def run(ctx: Context) -> Dict[str, Any]:
    audio = ensure_audio(ctx.data, ctx.audio_seconds)
    results: Dict[str, Any] = {}
    rows = []
    with BenchNginx(ctx.data) as srv:
        for fmt, path in audio.items():
            size = path.stat().st_size
            frames = sf.info(str(path)).frames
            per_client: Dict[str, Any] = {}
            for client in CLIENTS:
                tag = f"decode-{fmt}-{client}"
                extra: Dict[str, Any] = {}
                seconds = decode(client, tagged(srv.url(path.name), tag), frames, extra)
                reqs = srv.settled_requests(tag)
                sent = sum(e["bytes"] for e in reqs)
                per_client[client] = {
                    "amplification": sent / size,
                    "requests": len(reqs),
                    "bytes_sent": sent,
                    "seconds": seconds,
                    "log": [{k: e[k] for k in ("status", "bytes", "range")} for e in reqs][:200],
                    **extra,
                }
                log(f"decode {fmt} {client:10s}: {sent / size:.3f}x of {size} B, {len(reqs)} requests, {seconds:.2f}s")
            results[fmt] = {"file_size": size, "frames": frames, "clients": per_client}
            amp = per_client["kithara-io"]["amplification"]
            rows.append(
                row(
                    "4 full decode",
                    f"{fmt.upper()} ({size / 1e6:.1f} MB): bytes fetched / size, requests",
                    {c: f"{per_client[c]['amplification']:.3f} / {per_client[c]['requests']} req" for c in CLIENTS},
                    ratio=amp / per_client["floor"]["amplification"],
                    vs_obstore=amp / per_client["obstore"]["amplification"],
                    target="<= 1.05",
                    passed=amp <= 1.05,
                )
            )
    return {
        "rows": rows,
        "results": results,
        "model": f"nginx on 127.0.0.1; {ctx.audio_seconds} s stereo 44.1 kHz; soundfile blocks of 65536 frames",
    }
