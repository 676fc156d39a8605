"""TrackFeed: one track's decoded frames converted for the output (rate, channels, speed),
on the decoder thread. Owned by that thread; nothing here is shared."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .channels import channel_matrix, map_channels
from .resample import Resampler
from .ringbuffer import RingBuffer
from .tempo import Tempo
from .track import Track


class TrackFeed:
    """Reads ``chunk`` frames at a time from a track's decoder and returns them at
    ``out_rate`` on ``out_channels``, at ``speed`` (the tempo changed, the pitch kept)."""

    def __init__(self, track: Track, out_rate: int, out_channels: int, chunk: int, speed: float = 1.0) -> None:
        self.track = track
        self.chunk = chunk
        self.resampler = Resampler(track.samplerate, out_rate, track.channels)
        self.matrix = channel_matrix(track.channels, out_channels)
        self.out_channels = out_channels
        self.tempo = Tempo(out_rate, out_channels, speed)
        self.started = False  # the decoder was read from (a fresh one starts at frame 0)
        self.position = 0  # the track frame the next read starts at

    @property
    def max_output(self) -> int:
        """At most this many frames come out of one :meth:`read`."""
        return self.tempo.max_output(self.resampler.max_output(self.chunk))

    def set_speed(self, speed: float) -> None:
        """Play on at ``speed``; a change starts the time-stretcher afresh (the player seeks
        when the speed changes)."""
        if speed != self.tempo.speed:
            self.tempo = Tempo(self.tempo.rate, self.out_channels, speed)

    def seek(self, frame: int, *, keep_filter: bool = False) -> None:
        """Continue at ``frame``; ``keep_filter`` keeps the resampler's history (the input
        continues where it stopped, as after :meth:`recover`)."""
        try:
            self.track.decoder.seek(frame)
        except Exception:
            if not self.interrupted:  # else: the next read reports it
                raise
        if not keep_filter:
            self.resampler.reset()
            self.tempo.reset()
        self.position = frame
        self.started = True

    @property
    def interrupted(self) -> bool:
        return self.track.reader.interrupted

    def recover(self, resume: bool) -> None:
        """After an interrupted read: reopen the decoder; with ``resume`` continue at the
        frame the interrupted read started at, seamlessly (the resampler keeps its history).
        Bounded: a reopen interrupted again is retried up to three times."""
        for _ in range(3):
            try:
                self.track.reopen_decoder()
                if resume:
                    self.seek(self.position, keep_filter=True)
            except Exception:
                if not self.interrupted:
                    raise
            if not self.interrupted:
                return
        raise InterruptedError(f"{self.track.name}: reads keep being interrupted")

    def read(self) -> Tuple[np.ndarray, bool]:
        """(frames for the output, whether this was the end of the track)."""
        self.started = True
        try:
            block = self.track.decoder.read(self.chunk)
        except Exception:
            if not self.interrupted:
                raise
        if self.interrupted:  # the samples of an interrupted read are not trusted
            return np.zeros((0, self.out_channels), dtype=np.float32), False
        self.position += len(block)
        ended = len(block) < self.chunk
        out = map_channels(self.resampler.process(block, last=ended), self.matrix)
        return self.tempo.process(out, last=ended), ended

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


class HeldTail:
    """The last ``frames`` output frames of the playing track, held back from the ring so
    that the next track can be crossfaded over them (decoder thread only). A FIFO of fixed
    size: each block costs copies of its own length, not of the held seconds."""

    def __init__(self, frames: int, channels: int = 1) -> None:
        self.frames = frames
        self._fifo = RingBuffer(max(1, frames), channels)

    def pass_on(self, out: np.ndarray) -> np.ndarray:
        """Hold the last ``frames`` of what was held plus ``out``; returns the rest (oldest
        first)."""
        if not self.frames:
            return out
        excess = self._fifo.count + len(out) - self.frames
        if excess <= 0:
            self._fifo.write(out)
            return out[:0]
        released = np.empty((excess, out.shape[1]), dtype=np.float32)
        n = self._fifo.read_into(released[: min(excess, self._fifo.count)])
        released[n:] = out[: excess - n]
        self._fifo.write(out[excess - n :])
        return released

    def take(self, out: np.ndarray) -> np.ndarray:
        """What was held followed by ``out``; holds nothing afterwards."""
        if not self._fifo.count:
            return out
        joined = np.empty((self._fifo.count + len(out), out.shape[1]), dtype=np.float32)
        n = self._fifo.read_into(joined)
        joined[n:] = out
        return joined

    def clear(self) -> None:
        self._fifo.clear()
