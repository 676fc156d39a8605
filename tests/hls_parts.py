"""Decoding an HLS stream part by part, as the documented PyAV pattern does: one demuxer per
window between restart offsets (``stream.hls.restarts``: discontinuities, init segments)."""

from __future__ import annotations

import io
from typing import Any, List, Tuple

import av
import numpy as np

from kithara_io.playback.windows import RestartWindow

Decoded = Tuple[str, int, np.ndarray]  # codec name, rate, samples (channels x frames)


def decode(data: Any, fmt: str) -> Decoded:
    """Bytes or a file object, demuxed as ``fmt``, every audio frame decoded."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(source, format=fmt) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
        return stream.codec_context.name, stream.rate, samples


def decode_parts(stream: Any, fmt: str, most: int) -> List[Decoded]:
    """Each part of ``stream`` decoded by a demuxer of its own (at most ``most`` parts)."""
    stream.hls.enable_restarts()
    got, start = [], 0
    for _ in range(most):
        window = RestartWindow(stream, start, lambda: stream.hls.restarts)
        got.append(decode(window, fmt))
        if window.end is None:
            break
        start = window.end
    return got
