"""A fixed-capacity FIFO of float32 frames for the audio callback."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """A fixed-capacity FIFO of float32 frames (``frames x channels``); no allocation after
    construction. Not thread-safe by itself: the Player's lock guards it."""

    def __init__(self, capacity: int, channels: int) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError("capacity and channels must be >= 1")
        self._buf = np.zeros((capacity, channels), dtype=np.float32)
        self._read = 0
        self._count = 0

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def count(self) -> int:
        """Frames stored."""
        return self._count

    @property
    def free(self) -> int:
        return len(self._buf) - self._count

    def write(self, frames: np.ndarray) -> int:
        """Append as many of ``frames`` as fit; returns how many."""
        n = min(len(frames), self.free)
        start = (self._read + self._count) % len(self._buf)
        first = min(n, len(self._buf) - start)
        self._buf[start : start + first] = frames[:first]
        self._buf[: n - first] = frames[first:n]
        self._count += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Move up to ``len(out)`` frames into ``out``; returns how many."""
        n = min(len(out), self._count)
        first = min(n, len(self._buf) - self._read)
        out[:first] = self._buf[self._read : self._read + first]
        out[first:n] = self._buf[: n - first]
        self._read = (self._read + n) % len(self._buf)
        self._count -= n
        return n

    def clear(self) -> None:
        self._read = 0
        self._count = 0
