"""An HLS playlist stitched from three streams, as ad breaks and stitched channels are:
``#EXT-X-DISCONTINUITY`` between 44.1 kHz AAC, 48 kHz AAC and 44.1 kHz MP3, each part's
segments written by FFmpeg's HLS muxer (through PyAV) from its own encode.

``make_stitched_media(directory)`` writes ``stitched/index.m3u8`` and the parts' segments,
and returns the parts' names in order (``a``, ``b``, ``c``): ``stitched/<name>.m3u8`` is the
part's own playlist, so a test can decode each part alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import m3u8
import numpy as np

from .hls_media import encode, mux_hls
from .media import signal

SECONDS = 4
PARTS: Tuple[Tuple[str, str, int], ...] = (("a", "aac", 44100), ("b", "aac", 48000), ("c", "mp3", 44100))


def make_stitched_media(directory: Path) -> List[str]:
    folder = directory / "stitched"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:3", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-MEDIA-SEQUENCE:0"]
    for number, (name, codec, rate) in enumerate(PARTS):
        _write_part(folder, name, codec, rate)
        part = m3u8.load(str(folder / f"{name}.m3u8"))
        if number:
            lines.append("#EXT-X-DISCONTINUITY")
        for seg in part.segments:
            lines += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
    lines.append("#EXT-X-ENDLIST")
    (folder / "index.m3u8").write_text("\n".join(lines) + "\n")
    return [name for name, _, _ in PARTS]


def _write_part(folder: Path, name: str, codec: str, rate: int) -> None:
    """One stream encoded at ``rate`` with ``codec``, cut into 2 s MPEG-TS segments."""
    container = "mp3" if codec == "mp3" else "adts"
    encoded = encode(signal(SECONDS, rate).astype(np.float32), rate, codec, container)
    options = {
        "hls_time": "2",
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
        "hls_segment_type": "mpegts",
        "hls_segment_filename": str(folder / f"{name}%03d.ts"),
    }
    mux_hls(encoded, container, folder / f"{name}.m3u8", options)
