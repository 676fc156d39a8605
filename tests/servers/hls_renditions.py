"""HLS masters whose audio is apart from the video (``#EXT-X-MEDIA:TYPE=AUDIO``).

``make_rendition_media(directory, hls_root)`` writes, beside the media of ``hls_media``:

- ``groups/``: FFmpeg's own master (``var_stream_map "v:0,agroup:aud a:0,agroup:aud,..."``)
  of a tiny MPEG-2 video variant whose audio (AAC) is one rendition with its own playlist,
  as every packager that muxes video and audio apart writes it;
- ``languages.m3u8``: a video variant with two audio renditions, ``en`` (DEFAULT, the 64 kbit/s
  ``ts/v0``) and ``de`` (the 160 kbit/s ``ts/v1``), so which one was read shows in the bytes;
- ``mixed.m3u8``: a muxed video+audio variant listed first, then an audio-only variant
  (``ts/v2``), which an audio library should prefer.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .media import signal

SECONDS = 6
RATE = 44100
FPS = 10


def make_rendition_media(root: Path) -> None:
    """``root`` is the directory of ``make_hls_media`` (its ``ts/`` variants are reused)."""
    _ffmpeg_groups(root / "groups")
    (root / "languages.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="English",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2",URI="ts/v0/index.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aac",NAME="Deutsch",LANGUAGE="de",AUTOSELECT=YES,CHANNELS="2",URI="ts/v1/index.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="mp4v.20.9,mp4a.40.2",AUDIO="aac"\n'
        "groups/out_0/index.m3u8\n"
    )
    (root / "mixed.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.42e01e,mp4a.40.2"\n'
        "groups/out_0/index.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=308000,CODECS="mp4a.40.2"\n'
        "ts/v2/index.m3u8\n"
    )


def _ffmpeg_groups(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    options = {
        "hls_time": "2",
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
        "master_pl_name": "master.m3u8",
        "var_stream_map": "v:0,agroup:aud a:0,agroup:aud,default:yes,language:en",
        "hls_segment_filename": str(directory / "out_%v" / "seg%03d.ts"),
    }
    pcm = signal(SECONDS, RATE).astype(np.float32)
    with av.open(str(directory / "out_%v" / "index.m3u8"), "w", format="hls", options=options) as out:
        video = out.add_stream("mpeg2video", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = out.add_stream("aac", rate=RATE, layout="stereo")
        frames = 0
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[start : start + 1024].T), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            for packet in audio.encode(frame):
                out.mux(packet)
            while frames / FPS <= start / RATE:
                picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), frames % 255, np.uint8), format="rgb24")
                picture.pts, picture.time_base = frames, Fraction(1, FPS)
                for packet in video.encode(picture):
                    out.mux(packet)
                frames += 1
        for stream in (audio, video):
            for packet in stream.encode(None):
                out.mux(packet)
