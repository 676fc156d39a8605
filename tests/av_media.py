"""Test media made with PyAV (FFmpeg's encoders and muxers): AAC in MP4 (moov at the end or,
with ``+faststart``, at the start), ALAC, Opus in WebM, Vorbis in Ogg/MKV, MP3 with an ID3v2
tag, AAC in MPEG-TS and ADTS. Nothing binary is committed: tests write these at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import av
import numpy as np

#: name -> (codec, container format, muxer options, sample rate)
AV_FORMATS: Dict[str, tuple] = {
    "aac-moov-end.m4a": ("aac", "mp4", {}, 44100),
    "aac-faststart.m4a": ("aac", "mp4", {"movflags": "+faststart"}, 44100),
    "alac.m4a": ("alac", "ipod", {}, 44100),
    "opus.webm": ("libopus", "webm", {}, 48000),
    "vorbis.mkv": ("vorbis", "matroska", {}, 44100),
    "opus.ogg": ("libopus", "ogg", {}, 48000),
    "id3v2.mp3": ("mp3", "mp3", {}, 44100),
    "aac.ts": ("aac", "mpegts", {}, 44100),
    "aac.adts": ("aac", "adts", {}, 44100),
}

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def encode(
    path: Path,
    data: np.ndarray,
    rate: int,
    codec: str,
    container: str,
    options: Optional[dict] = None,
    title: Optional[str] = None,
) -> Path:
    """Encode float ``data`` (frames x channels, in [-1, 1]) into ``path``."""
    layout = _LAYOUTS[data.shape[1]]
    with av.open(str(path), "w", format=container, options=options or {}) as out:
        if title:
            out.metadata["title"] = title
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if codec == "aac":
            stream.codec_context.options = {"aac_pns": "0"}  # no noise substitution: repeatable
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}  # FFmpeg's own encoder
        fmt = stream.format
        size = stream.codec_context.frame_size or 1024
        pts = 0
        for start in range(0, len(data), size):
            chunk = np.asarray(data[start : start + size], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(_samples(chunk, fmt), format=fmt.name, layout=layout)
            frame.sample_rate, frame.pts = rate, pts
            pts += len(chunk)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _samples(chunk: np.ndarray, fmt) -> np.ndarray:
    planar = np.ascontiguousarray(chunk.T) if fmt.is_planar else chunk.reshape(1, -1)
    kind = fmt.name.rstrip("p")
    if kind == "s16":
        return np.round(planar * 32767).astype(np.int16)
    if kind == "s32":
        return np.round(planar * 2147483647).astype(np.int32)
    return planar.astype(np.float32)


def make_av_media(directory: Path, data_for_rate) -> Dict[str, Path]:
    """Every file of AV_FORMATS in ``directory``; ``data_for_rate(rate)`` gives the samples."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, (codec, container, options, rate) in AV_FORMATS.items():
        files[name] = encode(directory / name, data_for_rate(rate), rate, codec, container, options,
                             title="Test Title" if name.endswith(".mp3") else None)
    return files


def decode_all(path: Path) -> np.ndarray:
    """The reference: FFmpeg decoding the local file, frames x channels float32."""
    from kithara_io.playback.pyav import frame_to_float32

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        blocks = [frame_to_float32(frame) for frame in container.decode(stream)]
        frames = None
        if container.format.name.startswith("mov") and stream.duration is not None:
            frames = int(round(stream.duration * stream.time_base * stream.codec_context.sample_rate))
    return np.concatenate(blocks)[:frames]
