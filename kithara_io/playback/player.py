"""Player: a decoder thread fills a bounded ring buffer that an audio callback drains.

Threads and ownership: ``Player._cond`` guards every field the decoder thread and the audio
callback share (ring buffer, counters, marks, state). The decoder holds it only to copy one
converted block in; the callback only to copy one device block out, so neither waits long for
the other. The decoder decodes, resamples and maps channels with the lock released, and blocks
on ``_cond`` while the ring is full. The callback never blocks on the network and never
allocates beyond numpy views: when the ring is short it plays silence and counts an underrun,
then rebuffers. The decoder thread alone owns the track feeds (resamplers) and the held-back
crossfade tail; its methods live in :mod:`.decoding`. The play order (:class:`.queue.PlayOrder`:
shuffle, repeat, ``more_coming``) is guarded by ``_cond`` too: the decoder asks it which track
follows, the caller's thread changes it.

A seek flushes the ring and bumps a generation number under the lock; a block the decoder
decoded from the old position is dropped when it comes back with an old generation, so the
first frame played after a seek is exactly the target frame. ``next()``/``previous()`` are
seeks to frame 0 of another track.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .decoding import CHUNK, Decoding
from .errors import PlaybackError
from .feed import HeldTail, TrackFeed
from .loudness import check_mode
from .output import OutputFactory, close_output, open_output
from .queue import PlayOrder
from .queue_control import QueueControl
from .ringbuffer import RingBuffer
from .speed import SpeedControl
from .status import PlaybackStatus, State
from .tempo import check_speed
from .track import Source, Track


class Player(Decoding, SpeedControl, QueueControl):
    """Plays a URL, path or open binary file through a ``sounddevice.OutputStream``.

    ``buffer_seconds`` bounds the ring buffer; output (re)starts once ``prebuffer_seconds``
    are decoded (at the start, after a seek, after an underrun). ``open_options`` go to
    :func:`kithara_io.open`. A stream passed in is closed by :meth:`close` unless
    ``close_stream=False`` (then a read blocked on the network delays ``close``).

    ``samplerate``: None opens the device at the file's rate when it takes it, else at its
    default rate; an int forces the output rate. Tracks at another rate are resampled (soxr,
    high quality) on the decoder thread. ``channels``: the output channels (None: the file's,
    at least two on a stereo device). ``decoder``: "soundfile", "pyav" or None (probe).
    ``crossfade``: seconds of equal-power crossfade between enqueued tracks (0: gapless).
    ``speed``: the tempo, 0.5-3.0 with the pitch kept (FFmpeg's ``atempo``; see :mod:`.speed`).

    A queue: :meth:`enqueue` appends tracks, :meth:`next`/:meth:`previous` jump, ``shuffle``
    reorders what is still to play, ``repeat`` is ``"off"``, ``"track"`` or ``"playlist"``
    (see :mod:`.queue`); ``rng`` is the shuffle's random source.

    ``replaygain``: ``"off"`` (default, as mpv), ``"track"`` or ``"album"``: each track's
    ReplayGain (or Opus R128) tags applied before crossfading, limited by the peak tag (no
    clipping; see :mod:`.loudness`); ``volume`` multiplies on top, in the audio callback.

    ``output`` replaces the audio device: ``output(samplerate=, channels=, blocksize=,
    callback=, finished_callback=)`` returns an object with ``start()``, ``close()`` and a
    ``CallbackStop`` exception class, driving ``callback`` like sounddevice does.
    """

    def __init__(
        self,
        source: Source,
        *,
        device: Union[int, str, None] = None,
        start: float = 0.0,
        volume: float = 1.0,
        buffer_seconds: float = 2.0,
        prebuffer_seconds: float = 0.5,
        blocksize: int = 1024,
        latency: Union[float, str, None] = None,
        close_stream: bool = True,
        output: Optional[OutputFactory] = None,
        samplerate: Optional[int] = None,
        channels: Optional[int] = None,
        decoder: Optional[str] = None,
        crossfade: float = 0.0,
        speed: float = 1.0,
        repeat: str = "off",
        shuffle: bool = False,
        rng: Optional[random.Random] = None,
        replaygain: str = "off",
        **open_options: Any,
    ) -> None:
        for name, value in (("volume", volume), ("start", start), ("crossfade", crossfade)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        self._replaygain = check_mode(replaygain)
        self._device = device
        self._volume = float(volume)
        self._speed = check_speed(speed)
        self._muted = False
        self._waiting_more = False  # the decoder waits for a track to be enqueued
        self._order = PlayOrder(rng)
        self._order.repeat = repeat
        self._order.shuffle = shuffle
        self._blocksize = blocksize
        self._latency = latency
        self._output_factory = output
        self._open_options = open_options
        self._decoder_choice = decoder
        self._requested_rate = samplerate
        self._requested_channels = channels
        self._crossfade = float(crossfade)
        self._buffer_seconds = buffer_seconds
        self._prebuffer_seconds = prebuffer_seconds
        first = Track(source, open_options, close_stream, decoder)
        self.samplerate = first.samplerate  # the output rate once play() opened the device
        self.channels = first.channels  # the output channels, likewise
        self._prebuffer = 1

        self._cond = threading.Condition()
        self._tracks: List[Track] = [first]
        self._ring: Optional[RingBuffer] = None  # sized for the device at play()
        self._state = State.IDLE
        self._paused = False
        self._generation = 0
        self._seek_request: Optional[Tuple[int, int]] = None  # (track, frame at its rate)
        self._decode_track = 0
        self._decoder_eof = False
        self._written = 0  # output frames written into the ring since the last flush
        self._consumed = 0  # output frames played from it since the last flush
        self._marks: List[Tuple[int, int, float]] = []  # (written at, track, seconds into it)
        self._underruns = 0
        self._silence_frames = 0
        self._device_underflows = 0
        self._error: Optional[BaseException] = None
        self._stopping = False
        self._closed = False
        self._done = threading.Event()
        self._decoder: Optional[threading.Thread] = None
        self._output: Any = None
        self._callback_stop: type = Exception
        # Decoder thread only:
        self._feeds: Dict[int, TrackFeed] = {}
        self._tail = HeldTail(0)  # the current track's last frames, for the crossfade
        frame = self._clamp(first, start)
        self._flush_locked(0, frame)
        self._seek_request = (0, frame) if frame else None

    # -- information ---------------------------------------------------------------------
    @property
    def stream(self) -> Any:
        """The binary stream of the track now playing (``buffered()``/``stats()`` for display)."""
        with self._cond:
            return self._tracks[self._position_locked()[0]].stream

    @property
    def track(self) -> Track:
        """The track now playing."""
        with self._cond:
            return self._tracks[self._position_locked()[0]]

    @property
    def tracks(self) -> List[Track]:
        """The tracks, first to last (read their ``name``, ``format``, ``duration``...)."""
        with self._cond:
            return list(self._tracks)

    @property
    def duration(self) -> Optional[float]:
        """Seconds of the track now playing (None for a live stream)."""
        return self.track.duration

    @property
    def position(self) -> float:
        """Seconds into the track now playing (what the callback has handed to the device)."""
        return self.status().position

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    def status(self) -> PlaybackStatus:
        with self._cond:
            index, position = self._position_locked()
            track, state, rate = self._tracks[index], self._state, self.samplerate
            if self._paused and state in (State.PLAYING, State.BUFFERING):
                state = State.PAUSED
            buffered = (self._ring.count if self._ring else 0) / rate
            underruns, silence = self._underruns, self._silence_frames / rate
            device_underflows, error = self._device_underflows, self._error
        return PlaybackStatus(
            state=state,
            track=index,
            position=position,
            duration=track.duration,
            samplerate=track.samplerate,
            output_samplerate=rate,
            codec=track.codec,
            title=track.title,
            audio=track.audio,
            buffered=buffered,
            underruns=underruns,
            silence=silence,
            device_underflows=device_underflows,
            error=error,
        )  # fmt: skip; the title outside the lock: it asks the stream (radio metadata)

    # -- control -------------------------------------------------------------------------
    def enqueue(self, source: Source, *, close_stream: bool = True, **open_options: Any) -> None:
        """Append a track to play right after the previous one, without a gap (or with the
        crossfade); any rate or channel count. Opening it (reading its header) happens here,
        at Low stream priority unless ``priority`` is given, so it preloads while the
        current track plays; its priority is raised to High when it starts."""
        decoder = open_options.pop("decoder", self._decoder_choice)
        options = {**self._open_options, "priority": "low", **open_options}
        track = Track(source, options, close_stream, decoder)
        with self._cond:
            if self._closed or self._state in (State.FINISHED, State.STOPPED):
                track.close()
                raise PlaybackError("the player has already stopped")
            self._tracks.append(track)
            self._order.append(self._position_locked()[0])
            self._decoder_eof = False
            self._cond.notify_all()

    def play(self) -> None:
        """Start decoding and open the output device. Raises NoOutputDeviceError or
        PlaybackError if the device cannot be opened."""
        with self._cond:
            if self._closed:
                raise PlaybackError("the player is closed")
            if self._state is not State.IDLE:
                return
            self._state = State.BUFFERING
            first = self._tracks[0]
        try:
            opened = open_output(
                factory=self._output_factory, device=self._device, samplerate=self._requested_rate,
                channels=self._requested_channels, file_rate=first.samplerate,
                file_channels=first.channels, blocksize=self._blocksize, latency=self._latency,
                callback=self._callback, finished_callback=self._finished,
            )  # fmt: skip
        except BaseException:
            with self._cond:
                self._state = State.IDLE
            raise
        rate = opened.samplerate
        capacity = max(4 * CHUNK * max(1, -(-rate // first.samplerate)), int(self._buffer_seconds * rate))
        with self._cond:
            self.samplerate, self.channels = rate, opened.channels
            self._ring = RingBuffer(capacity, opened.channels)
            self._prebuffer = max(1, min(int(self._prebuffer_seconds * rate), capacity - 2 * CHUNK))
            self._tail = HeldTail(int(self._crossfade * rate), opened.channels)
            self._output, self._callback_stop = opened.stream, opened.callback_stop
        self._decoder = threading.Thread(target=self._decode_loop, name="kithara-decoder", daemon=True)
        self._decoder.start()
        try:
            opened.stream.start()
        except Exception as exc:
            self.close()
            raise PlaybackError(f"cannot start the audio output: {exc}") from exc

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False

    def toggle_pause(self) -> bool:
        """Pause or resume; returns True when now paused."""
        with self._cond:
            self._paused = not self._paused
            return self._paused

    @property
    def paused(self) -> bool:
        return self._paused

    def seek(self, seconds: float) -> bool:
        """Jump to ``seconds`` in the current track (clamped). The ring buffer is flushed and
        playback resumes at that frame once rebuffered. False if playback is over, or the
        track is a live stream (no duration: nothing to seek in)."""
        with self._cond:
            if self._closed or self._error is not None or self._state in (State.FINISHED, State.STOPPED, State.FAILED):
                return False
            index = self._position_locked()[0]
            if self._tracks[index].duration is None:
                return False
            decoding = self._jump_locked(index, self._clamp(self._tracks[index], seconds))
        # A decoder blocked on bytes that are not downloaded (a stalled server) gives up that
        # read, so that a seek into audio already downloaded plays at once.
        decoding.reader.interrupt()
        return True

    def seek_relative(self, delta: float) -> bool:
        """Seek by ``delta`` seconds from the current position."""
        return self.seek(max(0.0, self.position + delta))

    @property
    def volume(self) -> float:
        """The gain (1.0: unchanged); setting it takes effect at the next device block."""
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"volume must be a number >= 0, not {value!r}")
        with self._cond:
            self._volume = float(value)

    @property
    def replaygain(self) -> str:
        """``"off"``, ``"track"`` or ``"album"`` (see the class)."""
        return self._replaygain

    @property
    def muted(self) -> bool:
        return self._muted

    @muted.setter
    def muted(self, on: bool) -> None:
        with self._cond:
            self._muted = bool(on)

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Block until the ring holds ``prebuffer_seconds`` of audio, or decoding is over
        (end, failure, close) or waits for a track to be enqueued (``more_coming``); False on
        timeout. Only meaningful after :meth:`play`."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    self._stopping
                    or self._decoder_eof
                    or self._waiting_more
                    or (self._ring is not None and self._ring.count >= self._prebuffer)
                ),
                timeout,
            )

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until playback ends (finished, failed or closed); False on timeout."""
        return self._done.wait(timeout)

    def close(self) -> None:
        """Stop: close the device, stop and join the decoder, close the tracks. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            if self._state not in (State.FINISHED, State.FAILED):
                self._state = State.STOPPED
            tracks = list(self._tracks)
            output, self._output = self._output, None
            self._cond.notify_all()
        try:
            if output is not None:
                close_output(output)
        finally:
            for track in tracks:
                track.reader.cancelled = True
            decoder = self._decoder
            if decoder is not None:
                decoder.join(0.5)
                if decoder.is_alive():  # blocked on the network: closing the streams wakes it
                    for track in tracks:
                        track.close_stream()
                decoder.join()
            for track in tracks:
                track.close()
            self._done.set()

    def __enter__(self) -> "Player":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (self._cond held where the name says so) -------------------------------
    def _jump_locked(self, index: int, frame: int) -> Track:
        """Flush and have the decoder continue at ``frame`` of track ``index``; returns the
        track being decoded until then (to interrupt its read)."""
        self._flush_locked(index, frame)
        self._seek_request = (index, frame)
        if self._state is State.PLAYING:
            self._state = State.BUFFERING
        self._cond.notify_all()
        return self._tracks[self._decode_track]

    def _clamp(self, track: Track, seconds: float) -> int:
        seconds = max(0.0, seconds)
        if track.duration is not None:
            seconds = min(seconds, track.duration)
        return int(seconds * track.samplerate)

    def _flush_locked(self, track: int, frame: int) -> None:
        if self._ring is not None:
            self._ring.clear()
        self._generation += 1
        self._written = self._consumed = 0
        self._marks = [(0, track, frame / self._tracks[track].samplerate)]
        self._decoder_eof = False
        self._starving = False  # refilling after a seek is not an underrun

    def _position_locked(self) -> Tuple[int, float]:
        """(track, seconds into it) of the next frame the device gets."""
        for written_at, track, first in reversed(self._marks):
            if written_at <= self._consumed:
                return track, first + (self._consumed - written_at) * self._speed / self.samplerate
        raise AssertionError("no mark at 0")

    # -- the audio callback (a PortAudio thread) -----------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        finished = False
        with self._cond:
            if status and getattr(status, "output_underflow", False):
                self._device_underflows += 1
            ring = self._ring
            assert ring is not None  # sized by play() before the output starts
            if self._state is State.BUFFERING and (
                ring.count >= self._prebuffer or self._decoder_eof or (self._waiting_more and ring.count)
            ):
                self._state = State.PLAYING
                self._starving = False
            if self._paused or self._state is not State.PLAYING:
                outdata.fill(0)
                if self._starving and not self._paused:
                    self._silence_frames += frames
                return
            n = ring.read_into(outdata)
            self._consumed += n
            if n < frames:
                outdata[n:].fill(0)
                if self._decoder_eof:
                    finished = True
                    self._state = State.FAILED if self._error is not None else State.FINISHED
                else:
                    self._underruns += 1
                    self._silence_frames += frames - n
                    self._state = State.BUFFERING
                    self._starving = True
            self._cond.notify_all()
            gain = 0.0 if self._muted else self._volume
        if gain != 1.0:
            np.multiply(outdata, gain, out=outdata)
        if finished:
            raise self._callback_stop()

    def _finished(self) -> None:
        """The device played everything (or was closed)."""
        with self._cond:
            if self._state in (State.PLAYING, State.BUFFERING):  # stopped by the device
                self._state = State.FAILED if self._error is not None else State.STOPPED
        self._done.set()
