"""Streaming sample-rate conversion with soxr, on the decoder thread."""

from __future__ import annotations

import numpy as np
import soxr

QUALITY = "HQ"


class Resampler:
    """``in_rate`` -> ``out_rate`` for one track, block by block, with soxr's streaming
    resampler (high quality). Equal rates pass blocks through unchanged. Not thread-safe:
    the decoder thread owns it."""

    def __init__(self, in_rate: int, out_rate: int, channels: int) -> None:
        self.in_rate, self.out_rate, self.channels = int(in_rate), int(out_rate), int(channels)
        self._stream = None
        if self.active:
            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, self.channels, dtype="float32", quality=QUALITY
            )

    @property
    def active(self) -> bool:
        return self.in_rate != self.out_rate

    def max_output(self, frames: int) -> int:
        """An upper bound of the frames one ``process`` of ``frames`` input frames returns."""
        if not self.active:
            return frames
        return int(np.ceil(frames * self.out_rate / self.in_rate)) + 64

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next ``block``; with ``last`` also flush what the filter holds."""
        if self._stream is None:
            return block
        return self._stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)

    def reset(self) -> None:
        """Forget the history (after a seek)."""
        if self._stream is not None:
            self._stream.clear()
