"""TrackFeed: one track's decoded frames converted for the output (rate, channels), on the
decoder thread. Owned by that thread; nothing here is shared."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .channels import channel_matrix, map_channels
from .resample import Resampler
from .track import Track


class TrackFeed:
    """Reads ``chunk`` frames at a time from a track's decoder and returns them at
    ``out_rate`` on ``out_channels``."""

    def __init__(self, track: Track, out_rate: int, out_channels: int, chunk: int) -> None:
        self.track = track
        self.chunk = chunk
        self.resampler = Resampler(track.samplerate, out_rate, track.channels)
        self.matrix = channel_matrix(track.channels, out_channels)
        self.out_channels = out_channels
        self.started = False  # the decoder was read from (a fresh one starts at frame 0)

    @property
    def max_output(self) -> int:
        """At most this many frames come out of one :meth:`read`."""
        return self.resampler.max_output(self.chunk)

    def seek(self, frame: int) -> None:
        self.track.decoder.seek(frame)
        self.resampler.reset()
        self.started = True

    def read(self) -> Tuple[np.ndarray, bool]:
        """(frames for the output, whether this was the end of the track)."""
        self.started = True
        block = self.track.decoder.read(self.chunk)
        ended = len(block) < self.chunk
        out = self.resampler.process(block, last=ended)
        return map_channels(out, self.matrix), ended

    def read_at_least(self, frames: int) -> Tuple[np.ndarray, bool]:
        """At least ``frames`` output frames unless the track ends first (for a crossfade)."""
        pieces, have, ended = [], 0, False
        for _ in range(frames // max(1, self.chunk) * 4 + 8):  # bounded; resampling can lag a chunk
            out, ended = self.read()
            pieces.append(out)
            have += len(out)
            if ended or have >= frames:
                break
        empty = np.zeros((0, self.out_channels), dtype=np.float32)
        return (np.concatenate(pieces) if pieces else empty), ended
