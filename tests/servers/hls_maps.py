"""An fMP4 playlist whose ``#EXT-X-MAP`` changes between segments: two runs, 44.1 kHz and
48 kHz AAC, each muxed by FFmpeg's HLS muxer (``hls_segment_type=fmp4``, through PyAV) with an
init segment of its own, joined by a hand-written playlist with ``#EXT-X-DISCONTINUITY`` and a
second ``#EXT-X-MAP`` (what stitchers and packagers write after an ad break or codec change).

``make_map_media(directory)`` writes ``maps/<run>/index.m3u8``, ``init.mp4``, ``seg000.m4s``...
for each run (``RUNS``), ``maps/index.m3u8`` joining them, and ``maps/master.m3u8`` with two
variants (``maps/index.m3u8`` and ``maps/twin.m3u8``, the same media under other URIs, so ABR
and ``select`` can move between them). ``run_bytes(directory, run)``: a run's own files joined
(its init segment, then its segments), what a demuxer of that run alone reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import m3u8
import numpy as np

from .hls_media import encode, mux_hls
from .media import signal

SECONDS = 6
RUNS: Tuple[Tuple[str, int], ...] = (("a", 44100), ("b", 48000))


def make_map_media(directory: Path) -> Path:
    folder = directory / "maps"
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-MEDIA-SEQUENCE:0"]
    for number, (name, rate) in enumerate(RUNS):
        _write_run(folder / name, rate)
        run = m3u8.load(str(folder / name / "index.m3u8"))
        if number:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f'#EXT-X-MAP:URI="{name}/{run.segment_map[0].uri}"')
        for seg in run.segments:
            lines += [f"#EXTINF:{seg.duration:.6f},", f"{name}/{seg.uri}"]
    lines.append("#EXT-X-ENDLIST")
    text = "\n".join(lines) + "\n"
    (folder / "index.m3u8").write_text(text)
    twin = folder / "twin"  # the same files under other URIs: a second variant
    for name, _ in RUNS:
        (twin / name).mkdir(parents=True, exist_ok=True)
        for path in (folder / name).iterdir():
            (twin / name / path.name).write_bytes(path.read_bytes())
    (folder / "twin.m3u8").write_text(text.replace('URI="', 'URI="twin/').replace("\na/", "\ntwin/a/").replace("\nb/", "\ntwin/b/"))
    master = ["#EXTM3U", '#EXT-X-STREAM-INF:BANDWIDTH=100000,CODECS="mp4a.40.2"', "index.m3u8",
              '#EXT-X-STREAM-INF:BANDWIDTH=200000,CODECS="mp4a.40.2"', "twin.m3u8"]
    (folder / "master.m3u8").write_text("\n".join(master) + "\n")
    return folder / "index.m3u8"


def run_bytes(directory: Path, name: str) -> bytes:
    base = directory / "maps" / name
    return (base / "init.mp4").read_bytes() + b"".join(p.read_bytes() for p in sorted(base.glob("seg*.m4s")))


def _write_run(folder: Path, rate: int) -> None:
    """``SECONDS`` of the test signal at ``rate`` as AAC, cut into 2 s fMP4 segments."""
    folder.mkdir(parents=True, exist_ok=True)
    options = {
        "hls_time": "2",
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
        "hls_segment_type": "fmp4",
        "hls_fmp4_init_filename": "init.mp4",
        "hls_segment_filename": str(folder / "seg%03d.m4s"),
    }
    mux_hls(encode(signal(SECONDS, rate).astype(np.float32), rate), "mp4", folder / "index.m3u8", options)
