"""MPEG-DASH test media: MPDs and segments written by FFmpeg's ``dash`` muxer (through PyAV),
and hand-written MPDs around FFmpeg's segments for the forms this FFmpeg does not write.

``make_dash_media(directory)`` writes, each under its own folder with ``manifest.mpd``:

- ``timeline``: SegmentTemplate ``$Number%05d$`` + SegmentTimeline (``use_timeline=1``), two
  Representations (64 and 128 kbit/s AAC, 6 s at 44.1 kHz, 2 s segments).
- ``number``: SegmentTemplate ``$Number$`` with a duration (``use_timeline=0``), 7 s: a 1 s
  last segment (the count comes from mediaPresentationDuration).
- ``abr``: ``timeline``'s MPD, its Representations swapped (128 kbit/s first), its files
  reached through an MPD-level ``<BaseURL>../timeline/</BaseURL>``.
- ``list``: ``single_file=1``: one file, a SegmentList of ``mediaRange``s.
- ``files``: ``use_template=0``: a SegmentList of segment files and an Initialization sourceURL.
- ``base``: a hand-written SegmentBase MPD around FFmpeg's ``global_sidx=1`` file (its own sidx
  box, found by walking the file's top-level boxes), with a BaseURL at the MPD level
  (``media/``) and at the Representation level (the file).
- ``periods``: two Periods, each FFmpeg's ``$Number$`` output of a run (44.1 kHz, then 48 kHz
  AAC) under a Period BaseURL (``a/``, ``b/``).
- ``av``: FFmpeg's output of a video stream and two audio streams (English 64 kbit/s, German
  96 kbit/s of another signal), one AdaptationSet each.
- ``live``: ``streaming=1, ldash=1`` (chunked fragments: several moofs per segment), 1 s
  segments of 8 s at 48 kHz; the test server publishes it as a dynamic MPD (``dash.py``).

``DashMedia.local(folder, rep)``: the producer's local files of a Representation joined (its
init segment, then its segments in order), what a demuxer of those files reads.
"""

from __future__ import annotations

import io
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import av
import numpy as np

from .hls_media import encode
from .media import signal

RATE = 44100
SEGMENT = 2


@dataclass(frozen=True)
class DashMedia:
    root: Path

    def local(self, folder: str, rep: int = 0) -> bytes:
        base = self.root / folder
        init = base / f"init-stream{rep}.m4s"
        chunks = sorted(base.glob(f"chunk-stream{rep}-*.m4s"))
        return init.read_bytes() + b"".join(p.read_bytes() for p in chunks)

    def chunks(self, folder: str, rep: int = 0) -> List[bytes]:
        return [p.read_bytes() for p in sorted((self.root / folder).glob(f"chunk-stream{rep}-*.m4s"))]


def mux_dash(encoded: List[bytes], mpd: Path, options: dict, video: Optional[bytes] = None, languages: Optional[List[str]] = None) -> None:
    """FFmpeg's DASH muxer writes ``mpd`` and its segments from the packets of ``encoded``
    (in-memory MP4s, remuxed as they are) and of ``video`` (an in-memory MP4) first."""
    mpd.parent.mkdir(parents=True, exist_ok=True)
    sources = ([av.open(io.BytesIO(video), format="mp4")] if video else []) + [av.open(io.BytesIO(e), format="mp4") for e in encoded]
    try:
        with av.open(str(mpd), "w", format="dash", options=options) as out:
            pairs = []
            for index, source in enumerate(sources):
                template = source.streams[0]
                stream = out.add_stream_from_template(template)
                audio_index = index - (1 if video else 0)
                if languages and audio_index >= 0:
                    stream.metadata["language"] = languages[audio_index]
                pairs.append((source, template, stream))
            for source, template, stream in pairs:
                for packet in source.demux(template):
                    if packet.dts is None:
                        continue
                    packet.stream = stream
                    out.mux(packet)
    finally:
        for source in sources:
            source.close()


def _video(seconds: float) -> bytes:
    """A small MPEG-4 Part 2 video (64x48, 10 fps) in an in-memory MP4."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 7 % 255, dtype=np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _aac(seconds: float, rate: int = RATE, bitrate: int = 64000, flip: bool = False) -> bytes:
    pcm = signal(seconds, rate).astype(np.float32)
    return encode(pcm[:, ::-1].copy() if flip else pcm, rate, bitrate=bitrate)


def top_boxes(data: bytes) -> List[tuple]:
    """``(offset, size, type)`` of each top-level ISO-BMFF box."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        out.append((pos, size, kind.decode()))
        pos += size
    return out


def make_dash_media(directory: Path) -> DashMedia:
    root = directory / "dash"
    aac64, aac128 = _aac(6), _aac(6, bitrate=128000)
    common = {"seg_duration": str(SEGMENT)}
    mux_dash([aac64, aac128], root / "timeline" / "manifest.mpd", {**common, "use_template": "1", "use_timeline": "1", "adaptation_sets": "id=0,streams=a"})
    mux_dash([_aac(7)], root / "number" / "manifest.mpd", {**common, "use_template": "1", "use_timeline": "0"})
    mux_dash([aac64], root / "list" / "manifest.mpd", {**common, "single_file": "1"})
    mux_dash([aac64], root / "files" / "manifest.mpd", {**common, "use_template": "0", "use_timeline": "0"})
    _write_abr(root)
    _write_base(root)
    _write_periods(root)
    mux_dash(
        [_aac(6), _aac(6, bitrate=96000, flip=True)], root / "av" / "manifest.mpd",
        {**common, "use_template": "1", "use_timeline": "1", "adaptation_sets": "id=0,streams=v id=1,streams=1 id=2,streams=2"},
        video=_video(6), languages=["eng", "deu"],
    )
    mux_dash([_aac(8, rate=48000)], root / "live" / "manifest.mpd",
             {"seg_duration": "1", "frag_duration": "0.25", "use_template": "1", "use_timeline": "1", "streaming": "1", "ldash": "1", "window_size": "0"})
    return DashMedia(root)


def _write_abr(root: Path) -> None:
    """``timeline``'s MPD with its Representations in the other order (128 kbit/s first: where
    ``auto`` starts) and an MPD-level BaseURL back to its files (``../timeline/``)."""
    text = (root / "timeline" / "manifest.mpd").read_text()
    reps = re.findall(r"\t*<Representation.*?</Representation>\n", text, re.S)
    assert len(reps) == 2
    swapped = text.replace(reps[0] + reps[1], reps[1] + reps[0])
    swapped = swapped.replace("\t<Period", "\t<BaseURL>../timeline/</BaseURL>\n\t<Period", 1)
    (root / "abr").mkdir(parents=True, exist_ok=True)
    (root / "abr" / "manifest.mpd").write_text(swapped)


def _write_base(root: Path) -> None:
    """SegmentBase: FFmpeg's single file with a global sidx, described by a hand-written MPD."""
    work = root / "base" / "ffmpeg"
    mux_dash([_aac(6)], work / "manifest.mpd", {"seg_duration": str(SEGMENT), "single_file": "1", "global_sidx": "1", "use_template": "0", "use_timeline": "0"})
    data = (work / "manifest-stream0.mp4").read_bytes()
    (root / "base" / "media").mkdir(parents=True, exist_ok=True)
    (root / "base" / "media" / "audio.mp4").write_bytes(data)
    sidx = next((at, size) for at, size, kind in top_boxes(data) if kind == "sidx")
    text = (work / "manifest.mpd").read_text()
    duration = re.search(r'mediaPresentationDuration="([^"]+)"', text).group(1)
    (root / "base" / "manifest.mpd").write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="{duration}"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" minBufferTime="PT2S">
  <BaseURL>media/</BaseURL>
  <Period id="0">
    <AdaptationSet contentType="audio" mimeType="audio/mp4" lang="en">
      <Representation id="a" codecs="mp4a.40.2" bandwidth="64000" audioSamplingRate="{RATE}">
        <BaseURL>audio.mp4</BaseURL>
        <SegmentBase indexRange="{sidx[0]}-{sidx[0] + sidx[1] - 1}">
          <Initialization range="0-{sidx[0] - 1}"/>
        </SegmentBase>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
""")


PERIOD_RUNS = (("a", 44100), ("b", 48000))


def _write_periods(root: Path) -> None:
    """Two Periods of FFmpeg output at two rates, under Period BaseURLs."""
    folder = root / "periods"
    periods = []
    start = 0.0
    for name, rate in PERIOD_RUNS:
        mux_dash([_aac(4, rate=rate)], folder / name / "manifest.mpd", {"seg_duration": str(SEGMENT), "use_template": "1", "use_timeline": "1"})
        text = (folder / name / "manifest.mpd").read_text()
        adaptation = re.search(r"<AdaptationSet.*</AdaptationSet>", text, re.S).group(0)
        periods.append(f'  <Period id="{name}" start="PT{start:.1f}S" duration="PT4.0S">\n    <BaseURL>{name}/</BaseURL>\n    {adaptation}\n  </Period>')
        start += 4.0
    (folder / "manifest.mpd").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
        f'mediaPresentationDuration="PT{start:.1f}S" minBufferTime="PT2S" profiles="urn:mpeg:dash:profile:isoff-live:2011">\n'
        + "\n".join(periods) + "\n</MPD>\n"
    )


def gstreamer_missing() -> Optional[str]:
    """Why GStreamer's ``dashsink`` cannot write here; None when it can (Makefile's
    DEB_PACKAGES install it: gstreamer1.0-plugins-bad)."""
    import shutil
    import subprocess

    if shutil.which("gst-launch-1.0") is None:
        return "gst-launch-1.0 is not installed (Debian: gstreamer1.0-tools and plugins; `make test` installs them as root)"
    if subprocess.run(["gst-inspect-1.0", "--exists", "dashsink"], timeout=30).returncode != 0:
        return "GStreamer element dashsink (gstreamer1.0-plugins-bad) is not installed"
    return None


def make_gstreamer_dash(directory: Path) -> Path:
    """GStreamer's ``dashsink`` (a producer other than FFmpeg): AAC from ``avenc_aac`` in
    MPEG-TS segments (``muxer=ts``: its ``mp4`` muxer writes empty segments in GStreamer 1.22,
    and ``use-segment-list=true`` crashes it), a SegmentTemplate ``$Number$`` with a duration
    in seconds. Bounded: the pipeline runs 4 s of audio with a timeout."""
    import subprocess

    folder = directory / "gst-dash"
    folder.mkdir(parents=True, exist_ok=True)
    source = f"audiotestsrc wave=pink-noise volume=0.5 num-buffers={4 * RATE // 1024} samplesperbuffer=1024 ! audio/x-raw,rate={RATE},channels=2 ! audioconvert"
    pipeline = f"{source} ! avenc_aac bitrate=128000 ! aacparse ! d.audio_0 dashsink name=d mpd-root-path={folder} mpd-filename=manifest.mpd target-duration=1 muxer=ts"
    manifest = folder / "manifest.mpd"
    # Like hlssink2 (hls_gstreamer._run), gst-launch-1.0 sometimes never exits after dashsink
    # wrote its last MPD (measured: 1 run of 3): a run whose MPD covers the 4 s is stopped.
    proc = subprocess.Popen(["gst-launch-1.0", "-q", *pipeline.split()], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            _, err = proc.communicate(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            done = _complete(manifest)
            if done or time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                if done:
                    return manifest
                raise RuntimeError(f"gst-launch-1.0 did not finish {manifest}: {err.decode(errors='replace')}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"gst-launch-1.0 failed ({proc.returncode}): {err.decode(errors='replace')}")
    return manifest


def _complete(manifest: Path) -> bool:
    """Does the MPD dashsink wrote cover the whole run (3.9 s and more)?"""
    if not manifest.exists():
        return False
    found = re.search(r'mediaPresentationDuration="P0Y0M0DT0H0M([0-9.]+)S"', manifest.read_text())
    return found is not None and float(found.group(1)) >= 3.9
