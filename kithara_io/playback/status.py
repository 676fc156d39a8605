"""What the player reports: its state and a status snapshot."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class State(str, enum.Enum):
    IDLE = "idle"  # not started
    BUFFERING = "buffering"  # filling the ring before (re)starting output
    PLAYING = "playing"
    PAUSED = "paused"
    FINISHED = "finished"  # played to the end
    STOPPED = "stopped"  # closed before the end
    FAILED = "failed"  # the stream or the device failed


@dataclass(frozen=True)
class PlaybackStatus:
    """A snapshot of the player. ``position``/``duration`` are of the current track;
    ``duration`` is None for a live stream."""

    state: State
    track: int
    position: float
    duration: Optional[float]
    buffered: float  # seconds of decoded audio waiting in the ring buffer
    underruns: int  # times the ring ran dry while playing (each played silence)
    silence: float  # seconds of silence those underruns inserted (until rebuffered)
    device_underflows: int  # underflows the audio device itself reported
    error: Optional[BaseException]
    samplerate: int = 0  # of the current track
    output_samplerate: int = 0  # of the device (differs when resampling)
    codec: str = ""
    title: Optional[str] = None  # a live stream's current title, or the file's "Artist - Title"
    audio: str = ""  # the format in user words: "MP3 192 kbit/s", "FLAC 24-bit 96 kHz"
