"""Playback speed with the pitch kept: FFmpeg's ``atempo`` filter through PyAV's filter graph
(WSOLA: overlapping windows of the input are placed at the new tempo where they match best).

The filter's output depends only on the samples pushed, not on how they are cut into blocks,
except for its last window: flushing at the end gives up to one window (about 1/24 s) that
varies with the block sizes (measured at 0.7x: the last 2,300 of 205,000 frames). Its length
is the input's over the speed within a window; the end is cut or padded to exactly that, so
that frames played count media time (the Player's position ends at the duration).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING, List, Optional

import numpy as np

if TYPE_CHECKING:
    import av.filter

MIN_SPEED, MAX_SPEED = 0.5, 3.0  # one atempo instance covers 0.5-100


def check_speed(value: float) -> float:
    """``value`` as a float, or ValueError when it is outside 0.5-3.0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not MIN_SPEED <= value <= MAX_SPEED:
        raise ValueError(f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}, not {value!r}")
    return float(value)


class Tempo:
    """Changes the tempo of ``frames x channels`` float32 blocks at ``rate``; 1.0 passes them
    through unchanged. Not thread-safe: the decoder thread owns it."""

    def __init__(self, rate: int, channels: int, speed: float = 1.0) -> None:
        self.rate, self.channels, self.speed = int(rate), int(channels), check_speed(speed)
        self._layout = f"{self.channels}c"  # FFmpeg's default layout for the count
        self._graph: Optional[av.filter.Graph] = None
        self.reset()

    @property
    def active(self) -> bool:
        return self.speed != 1.0

    def max_output(self, frames: int) -> int:
        """An upper bound of the frames one :meth:`process` of ``frames`` frames returns
        (the filter may hold back and then release one window, about 1/24 s)."""
        if not self.active:
            return frames
        return int(math.ceil(frames / self.speed)) + self.rate // 10

    def reset(self) -> None:
        """A fresh filter (after a seek): no history."""
        if not self.active:
            return
        import av.filter  # only when the speed is changed (PyAV loads FFmpeg)

        graph = av.filter.Graph()
        source = graph.add_abuffer(
            format="flt", sample_rate=self.rate, layout=self._layout, time_base=Fraction(1, self.rate)
        )
        tempo = graph.add("atempo", f"{self.speed}")
        sink = graph.add("abuffersink")
        source.link_to(tempo)
        tempo.link_to(sink)
        graph.configure()
        self._graph, self._source, self._sink = graph, source, sink
        self._pts = self._made = 0  # frames pushed in, frames handed out

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """The next ``block`` at the speed; with ``last`` also what the filter holds back."""
        if not self.active:
            return block
        import av

        if len(block):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(block, dtype=np.float32).reshape(1, -1), format="flt", layout=self._layout
            )
            frame.sample_rate, frame.pts, frame.time_base = self.rate, self._pts, Fraction(1, self.rate)
            self._pts += len(block)
            self._source.push(frame)
        if last:
            self._source.push(None)
        out = self._drain()
        if last:
            out = self._to_length(out)
            self.reset()  # a flushed filter takes no more input
        else:
            self._made += len(out)
        return out

    def _to_length(self, out: np.ndarray) -> np.ndarray:
        """The last output cut or padded (with silence) so that the whole comes to the input's
        length over the speed: the frames played then count media time exactly."""
        missing = int(round(self._pts / self.speed)) - self._made - len(out)
        if missing <= 0:
            return out[: max(0, len(out) + missing)]
        return np.concatenate([out, np.zeros((missing, self.channels), dtype=np.float32)])

    def _drain(self) -> np.ndarray:
        import av

        from .pyav import frame_to_float32

        pieces: List[np.ndarray] = []
        for _ in range(1_000_000):  # bounded: each pass takes one frame the filter made
            try:
                frame = self._sink.pull()
            except (BlockingIOError, av.error.EOFError):
                break
            if not isinstance(frame, av.AudioFrame):  # an audio graph makes audio frames
                raise TypeError(f"the tempo filter made a {type(frame).__name__}")
            pieces.append(frame_to_float32(frame))
        if not pieces:
            return np.zeros((0, self.channels), dtype=np.float32)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
