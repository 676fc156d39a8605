"""HLS written by GStreamer (``gst-launch-1.0``), a producer other than FFmpeg.

``make_gstreamer_media(directory)`` runs, each bounded (a few seconds of audio, a timeout):

- ``gst/aac/index.m3u8`` + ``seg00000.ts``...: ``hlssink2`` (MPEG-TS) of AAC from ``avenc_aac``
  (GStreamer's libav plugin) through ``aacparse``;
- ``gst/mp3/index.m3u8``: ``hlssink2`` of MP3 from ``lamemp3enc`` through ``mpegaudioparse``;
- ``gst/fmp4/index.m3u8`` + init segment + ``.m4s``: ``hlscmafsink`` (fMP4/CMAF, from
  gst-plugins-rs) where that element is installed; Debian 12 does not package it.

The source is ``audiotestsrc`` pink noise, stereo 44.1 kHz. ``missing()`` says why a case
cannot be made here (no ``gst-launch-1.0``, or an element missing), None when it can.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import List, Optional

import m3u8

SECONDS = 4
RATE = 44100
_SOURCE = f"audiotestsrc wave=pink-noise volume=0.5 num-buffers={SECONDS * RATE // 1024} samplesperbuffer=1024 ! audio/x-raw,rate={RATE},channels=2 ! audioconvert"
_ENCODERS = {
    "aac": "avenc_aac bitrate=128000 ! aacparse",
    "mp3": "lamemp3enc target=bitrate bitrate=128 ! mpegaudioparse",
}


def missing(case: str) -> Optional[str]:
    """Why GStreamer cannot write ``case`` on this machine; None if it can. The MPEG-TS cases
    need only what ``make test`` installs (a missing plugin there fails the test)."""
    if shutil.which("gst-launch-1.0") is None:
        return "gst-launch-1.0 is not installed (Debian: gstreamer1.0-tools and plugins; `make test` installs them as root)"
    if case == "fmp4" and subprocess.run(["gst-inspect-1.0", "--exists", "hlscmafsink"], timeout=30).returncode != 0:
        return "GStreamer element hlscmafsink (fMP4 HLS, gst-plugins-rs) is not installed: not packaged in Debian 12"
    return None


_BOUND = 60.0  # seconds a pipeline may run (a normal run takes ~0.3 s)


def _ended(playlist: Path) -> bool:
    return playlist.exists() and playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")


def _run(pipeline: str, playlist: Path) -> None:
    """Run a pipeline that writes ``playlist``. GStreamer 1.22's gst-launch-1.0 sometimes never
    exits after hlssink2 has closed its last segment and written ``#EXT-X-ENDLIST`` (measured:
    9 runs of 50; the pipeline's EOS never reaches the bus): a run whose playlist is complete
    is stopped; one that did not complete it within the bound is an error."""
    proc = subprocess.Popen(["gst-launch-1.0", "-q", *pipeline.split()], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + _BOUND
    while True:
        try:
            _, err = proc.communicate(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if _ended(playlist) or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                if _ended(playlist):
                    return
                raise RuntimeError(f"gst-launch-1.0 did not finish {playlist}: {err.decode(errors='replace')}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"gst-launch-1.0 failed ({proc.returncode}): {err.decode(errors='replace')}")


def make_gstreamer_media(directory: Path, case: str) -> Path:
    """Write ``gst/<case>/index.m3u8`` and its segments; returns the playlist's path."""
    folder = directory / "gst" / case
    folder.mkdir(parents=True, exist_ok=True)
    if case == "fmp4":
        sink = (
            f"hlscmafsink location={folder}/seg%05d.m4s init-location={folder}/init%05d.mp4 "
            f"playlist-location={folder}/index.m3u8 target-duration=1 playlist-type=vod"
        )
        _run(f"{_SOURCE} ! avenc_aac bitrate=128000 ! aacparse ! {sink}", folder / "index.m3u8")
    else:
        sink = f"hlssink2 location={folder}/seg%05d.ts playlist-location={folder}/index.m3u8 target-duration=1 max-files=0 playlist-length=0"
        _run(f"{_SOURCE} ! {_ENCODERS[case]} ! {sink}", folder / "index.m3u8")
    return folder / "index.m3u8"


def local_parts(playlist: Path) -> List[bytes]:
    """The init segment (if any) and each segment file of a local playlist, in order."""
    parsed = m3u8.load(str(playlist))
    parts = [(playlist.parent / parsed.segment_map[0].uri).read_bytes()] if parsed.segment_map else []
    return parts + [(playlist.parent / seg.uri).read_bytes() for seg in parsed.segments]
