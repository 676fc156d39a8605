"""Live-radio test media: MP3, AAC (ADTS) and Ogg Vorbis streams made with soundfile and
PyAV, PyAV decoding, and finding where a listener joined by matching decoded samples."""

from __future__ import annotations

import io
import struct
from typing import List, Optional, Tuple

import av
import numpy as np
import soundfile as sf

from tests.servers.media import SAMPLE_RATE, signal

_MP3_BITRATES = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]


def mp3_frames(data: bytes) -> List[Tuple[int, int]]:
    """(offset, length) of each MPEG-1 Layer III frame, from the first sync word on."""
    frames = []
    pos = data.find(b"\xff\xfb")
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] & 0xE0 == 0xE0:
        header = data[pos + 2]
        bitrate = _MP3_BITRATES[header >> 4] * 1000
        rate = (44100, 48000, 32000)[(header >> 2) & 3]
        length = 144 * bitrate // rate + ((header >> 1) & 1)
        if length < 4:
            break
        frames.append((pos, length))
        pos += length
    return frames


def mp3_payload(seconds: float, quality: float = 0.5) -> bytes:
    """What a station sends: MP3 frames only (no Info frame, no tags), constant bitrate."""
    out = io.BytesIO()
    sf.write(out, signal(seconds), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=quality, bitrate_mode="CONSTANT")
    data = out.getvalue()
    frames = mp3_frames(data)
    first = frames[1][0]  # frame 0 is the LAME Info frame
    end = frames[-1][0] + frames[-1][1]
    return data[first:end]


def adts_payload(seconds: float) -> bytes:
    """AAC-LC in ADTS frames (what AAC stations send), 128 kbit/s stereo, by PyAV."""
    out = io.BytesIO()
    with av.open(out, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=SAMPLE_RATE)
        stream.layout = "stereo"
        stream.bit_rate = 128000
        # No perceptual noise substitution: the decoder fills such bands from a random
        # generator whose state depends on where decoding began, so no join could match.
        stream.options = {"aac_pns": "0"}
        data = signal(seconds).astype(np.float32)
        step = 1024
        for i in range(0, len(data), step):
            block = np.ascontiguousarray(data[i : i + step].T)
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def ogg_pages(data: bytes) -> List[Tuple[int, int, int, int]]:
    """(offset, length, header_type, granule) of each Ogg page."""
    pages = []
    pos = 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        header_type = data[pos + 5]
        granule = struct.unpack_from("<q", data, pos + 6)[0]
        segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + segments]
        length = 27 + segments + sum(lacing)
        pages.append((pos, length, header_type, granule))
        pos += length
    return pages


def ogg_payload(seconds: float) -> Tuple[bytes, bytes, List[int]]:
    """An Ogg Vorbis station: (header pages, audio pages, offsets in the audio pages where a
    listener may join: page starts that begin a packet)."""
    out = io.BytesIO()
    sf.write(out, signal(seconds), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    data = out.getvalue()
    pages = ogg_pages(data)
    first_audio = next(i for i, page in enumerate(pages) if page[3] > 0)
    header_end = pages[first_audio][0]
    joins = [offset - header_end for offset, _, kind, _ in pages[first_audio:] if not kind & 1]
    return data[:header_end], data[header_end:], joins


def decode(source, fmt: str, limit: Optional[int] = None) -> np.ndarray:
    """Every sample PyAV decodes from ``source`` (a file object or bytes), frames x channels,
    float32; stops after ``limit`` samples when given."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    blocks = []
    total = 0
    with av.open(source, format=fmt) as container:
        for frame in container.decode(audio=0):
            block = frame.to_ndarray()
            if frame.format.is_planar:
                block = block.T
            else:
                block = block.reshape(-1, len(frame.layout.channels))
            blocks.append(block.astype(np.float32))
            total += len(block)
            if limit is not None and total >= limit:
                break
    return np.concatenate(blocks) if blocks else np.zeros((0, 2), np.float32)


def find_join(live: np.ndarray, reference: np.ndarray, skip: int, window: int = 2048) -> int:
    """The index in ``reference`` of ``live[skip]``, found by an exact match of ``window``
    samples; ValueError if there is none. The first ``skip`` samples after a join are not
    used: a decoder needs a frame or two to resync (bit reservoir, overlap)."""
    probe = live[skip : skip + window]
    if len(probe) < window:
        raise ValueError("live decode too short to match")
    candidates = np.flatnonzero((reference[:, 0] == probe[0, 0]) & (reference[:, 1] == probe[0, 1]))
    for start in candidates:
        if np.array_equal(reference[start : start + window], probe):
            return int(start)
    raise ValueError("the live samples match nowhere in the reference")
