"""Playback: a decoder thread fills a bounded ring buffer that an audio callback drains.

    from kithara_io.playback import Player
    with Player("https://example.org/song.flac") as player:
        player.play()
        player.wait()

Threads and ownership: ``Player._cond`` guards every field the decoder thread and the audio
callback share (ring buffer, counters, state). The decoder holds it only to copy one decoded
block in; the callback only to copy one device block out, so neither waits long for the other.
The decoder decodes with the lock released and blocks, on ``_cond``, while the ring is full.
The callback never blocks on the network and never allocates beyond numpy views: when the
ring is short it plays silence and counts an underrun, then rebuffers.

A seek flushes the ring and bumps a generation number under the lock; a block the decoder
decoded from the old position is dropped when it comes back with an old generation, so the
first frame played after a seek is exactly the target frame.
"""

from __future__ import annotations

import enum
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import soundfile as sf

from .api import open as open_stream
from .errors import StreamError

Source = Union[str, "os.PathLike[str]", Any]  # a URL, a path, or an open binary file


class PlaybackError(Exception):
    """Playback could not start or continue (device, decoder)."""


class NoOutputDeviceError(PlaybackError):
    """No audio output device is available (or the named one does not exist)."""


class UnsupportedFormatError(PlaybackError):
    """The decoder (libsndfile) does not recognise the data."""


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


class _SafeReader:
    """The file soundfile reads. libsndfile calls it through cffi, which prints and swallows
    exceptions; so a failure is stored in ``error`` and reads return 0 (end of data)."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.error: Optional[BaseException] = None
        self.cancelled = False

    def readinto(self, buffer: Any) -> int:
        if self.cancelled or self.error is not None:
            return 0
        try:
            return self._file.readinto(buffer) or 0
        except BaseException as exc:  # noqa: BLE001 - re-raised by the Player
            self.error = exc
            return 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._file.seek(offset, whence)
        except BaseException as exc:  # noqa: BLE001
            if self.error is None:
                self.error = exc
            return 0

    def tell(self) -> int:
        try:
            return self._file.tell()
        except BaseException as exc:  # noqa: BLE001
            if self.error is None:
                self.error = exc
            return 0


class Track:
    """One decodable source: its stream, the reader soundfile sees, the ``SoundFile``.

    Raises what ``kithara_io.open`` raises, or UnsupportedFormatError."""

    def __init__(self, source: Source, options: Optional[dict] = None, close_stream: bool = True) -> None:
        options = options or {}
        self.name = str(getattr(source, "name", source))
        if hasattr(source, "read"):
            self.stream, self.owned = source, close_stream
        else:
            self.stream, self.owned = open_stream(source, **options), True
        self.reader = _SafeReader(self.stream)
        try:
            self.sound = sf.SoundFile(self.reader)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            error = self.reader.error
            self.close_stream()
            if error is not None:
                raise error from None
            raise UnsupportedFormatError(f"{self.name}: cannot decode: {_describe(exc)}") from None
        except BaseException:
            self.close_stream()
            raise
        self.samplerate: int = self.sound.samplerate
        self.channels: int = self.sound.channels
        self.frames: int = self.sound.frames
        self.format: str = self.sound.format
        self.subtype: str = self.sound.subtype

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate

    def close_stream(self) -> None:
        if self.owned:
            try:
                self.stream.close()
            except (StreamError, OSError, ValueError):
                pass  # already reported through the reader, or the caller's business

    def close(self) -> None:
        try:
            if getattr(self, "sound", None) is not None:
                self.sound.close()
        finally:
            self.close_stream()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


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
    """A snapshot of the player. ``position``/``duration`` are of the current track."""

    state: State
    track: int
    position: float
    duration: float
    buffered: float  # seconds of decoded audio waiting in the ring buffer
    underruns: int  # times the ring ran dry while playing (each played silence)
    silence: float  # seconds of silence those underruns inserted (until rebuffered)
    device_underflows: int  # underflows the audio device itself reported
    error: Optional[BaseException]


OutputFactory = Callable[..., Any]


class Player:
    """Plays a URL, path or open binary file through a ``sounddevice.OutputStream``.

    ``buffer_seconds`` bounds the ring buffer; output (re)starts once ``prebuffer_seconds``
    are decoded (at the start, after a seek, after an underrun). ``open_options`` go to
    :func:`kithara_io.open`. A stream passed in is closed by :meth:`close` unless
    ``close_stream=False`` (then a read blocked on the network delays ``close``).

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
        **open_options: Any,
    ) -> None:
        if volume < 0:
            raise ValueError("volume must be >= 0")
        self._device = device
        self._volume = float(volume)
        self._blocksize = blocksize
        self._latency = latency
        self._output_factory = output
        self._open_options = open_options
        first = Track(source, open_options, close_stream)
        self.samplerate = first.samplerate
        self.channels = first.channels
        self._chunk = 2048
        self._capacity = max(4 * self._chunk, int(buffer_seconds * self.samplerate))
        self._prebuffer = max(1, min(int(prebuffer_seconds * self.samplerate), self._capacity - self._chunk))
        self._scratch = np.zeros((self._chunk, self.channels), dtype=np.float32)

        self._cond = threading.Condition()
        self._tracks: List[Track] = [first]
        self._ring: Optional[RingBuffer] = None  # sized for the device at play()
        self._out_channels = self.channels
        self._state = State.IDLE
        self._paused = False
        self._generation = 0
        self._seek_request: Optional[Tuple[int, int]] = None  # (track, frame)
        self._decode_track = 0
        self._decoder_eof = False
        self._written = 0  # frames written into the ring since the last flush
        self._consumed = 0  # frames played from it since the last flush
        self._marks: List[Tuple[int, int, int]] = []  # (written at, track, first frame)
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
        self._flush_locked(0, self._clamp(first, start))
        self._seek_request = (0, self._marks[0][2]) if start else None

    # -- information ---------------------------------------------------------------------
    @property
    def stream(self) -> Any:
        """The binary stream of the track now playing (``buffered()``/``stats()`` for display)."""
        with self._cond:
            return self._tracks[self._position_locked()[0]].stream

    @property
    def tracks(self) -> List[Track]:
        """The tracks, first to last (read their ``name``, ``format``, ``duration``...)."""
        with self._cond:
            return list(self._tracks)

    @property
    def duration(self) -> float:
        """Seconds of the track now playing."""
        with self._cond:
            return self._tracks[self._position_locked()[0]].duration

    @property
    def position(self) -> float:
        """Seconds into the track now playing (what the callback has handed to the device)."""
        return self.status().position

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    def status(self) -> PlaybackStatus:
        with self._cond:
            track, frame = self._position_locked()
            state = self._state
            if self._paused and state in (State.PLAYING, State.BUFFERING):
                state = State.PAUSED
            return PlaybackStatus(
                state=state,
                track=track,
                position=frame / self.samplerate,
                duration=self._tracks[track].duration,
                buffered=(self._ring.count if self._ring else 0) / self.samplerate,
                underruns=self._underruns,
                silence=self._silence_frames / self.samplerate,
                device_underflows=self._device_underflows,
                error=self._error,
            )

    # -- control -------------------------------------------------------------------------
    def enqueue(self, source: Source, *, close_stream: bool = True, **open_options: Any) -> None:
        """Append a track to play right after the previous one, without a gap. It must have
        the same sample rate and channel count. Opening it (reading its header) happens
        here, so a stream opened with ``priority="low"`` is preloaded while the current
        track plays."""
        track = Track(source, {**self._open_options, **open_options}, close_stream)
        if (track.samplerate, track.channels) != (self.samplerate, self.channels):
            track.close()
            raise PlaybackError(
                f"{track.name}: {track.samplerate} Hz/{track.channels} ch cannot follow "
                f"{self.samplerate} Hz/{self.channels} ch gaplessly"
            )
        with self._cond:
            if self._closed or self._state in (State.FINISHED, State.STOPPED):
                track.close()
                raise PlaybackError("the player has already stopped")
            self._tracks.append(track)
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
        try:
            output, channels = self._open_output()
        except BaseException:
            with self._cond:
                self._state = State.IDLE
            raise
        with self._cond:
            self._out_channels = channels
            self._ring = RingBuffer(self._capacity, channels)
            self._output = output
        self._decoder = threading.Thread(target=self._decode_loop, name="kithara-decoder", daemon=True)
        self._decoder.start()
        try:
            output.start()
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
        playback resumes at that frame once rebuffered. False if playback is over."""
        with self._cond:
            if self._closed or self._error is not None or self._state in (
                State.FINISHED, State.STOPPED, State.FAILED
            ):
                return False
            track = self._position_locked()[0]
            frame = self._clamp(self._tracks[track], seconds)
            self._flush_locked(track, frame)
            self._seek_request = (track, frame)
            if self._state is State.PLAYING:
                self._state = State.BUFFERING
            self._cond.notify_all()
            return True

    def seek_relative(self, delta: float) -> bool:
        """Seek by ``delta`` seconds from the current position."""
        return self.seek(max(0.0, self.position + delta))

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Block until the ring holds ``prebuffer_seconds`` of audio, or decoding is over
        (end, failure, close); False on timeout. Only meaningful after :meth:`play`."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stopping
                or self._decoder_eof
                or (self._ring is not None and self._ring.count >= self._prebuffer),
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
                _close_output(output)
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
    def _clamp(self, track: Track, seconds: float) -> int:
        return int(min(max(0.0, seconds), track.duration) * track.samplerate)

    def _flush_locked(self, track: int, frame: int) -> None:
        if self._ring is not None:
            self._ring.clear()
        self._generation += 1
        self._written = self._consumed = 0
        self._marks = [(0, track, frame)]
        self._decoder_eof = False
        self._starving = False  # refilling after a seek is not an underrun

    def _position_locked(self) -> Tuple[int, int]:
        """(track, frame) of the next frame the device gets."""
        for written_at, track, first in reversed(self._marks):
            if written_at <= self._consumed:
                return track, first + self._consumed - written_at
        raise AssertionError("no mark at 0")

    def _open_output(self) -> Tuple[Any, int]:
        if self._output_factory is not None:
            output = self._output_factory(
                samplerate=self.samplerate,
                channels=self.channels,
                blocksize=self._blocksize,
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._callback_stop = output.CallbackStop
            return output, self.channels
        sd = import_sounddevice()
        try:
            info = sd.query_devices(self._device, "output")
        except (ValueError, sd.PortAudioError) as exc:
            if self._device is None:
                raise NoOutputDeviceError("no audio output device found") from None
            raise NoOutputDeviceError(f"no output device {self._device!r}: {exc}") from None
        channels = min(self.channels, int(info["max_output_channels"]))
        if channels < 1:
            raise NoOutputDeviceError(f"device {info['name']!r} has no output channels")
        try:
            stream = sd.OutputStream(
                device=info["index"],
                samplerate=self.samplerate,
                channels=channels,
                dtype="float32",
                blocksize=self._blocksize,
                latency=self._latency,
                callback=self._callback,
                finished_callback=self._finished,
            )
        except sd.PortAudioError as exc:
            raise PlaybackError(
                f"cannot open output device {info['name']!r} at {self.samplerate} Hz, "
                f"{channels} channel(s): {exc}"
            ) from None
        self._callback_stop = sd.CallbackStop
        return stream, channels

    # -- the decoder thread --------------------------------------------------------------
    def _decode_loop(self) -> None:
        try:
            while self._decode_step():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported through status()/error
            with self._cond:
                self._fail_locked(exc)

    def _decode_step(self) -> bool:
        """Decode and store one block; False when the thread must end."""
        with self._cond:
            ring = self._ring
            assert ring is not None
            while not self._stopping and (
                ring.free < self._chunk or (self._decoder_eof and self._seek_request is None)
            ):
                self._cond.wait()
            if self._stopping:
                return False
            seek, self._seek_request = self._seek_request, None
            if seek is not None:
                self._decode_track = seek[0]
            generation = self._generation
            index = self._decode_track
            track = self._tracks[index]
        if seek is not None:
            track.sound.seek(seek[1])
        block = track.sound.read(self._chunk, dtype="float32", always_2d=True, out=self._scratch)
        block = self._fit_channels(block)
        with self._cond:
            if self._generation != generation or self._stopping:
                return not self._stopping  # decoded for a position a seek abandoned
            ring.write(block)
            self._written += len(block)
            if len(block) < self._chunk:  # end of this track, or a failure
                error = track.reader.error
                if error is not None and not track.reader.cancelled:
                    self._fail_locked(error)
                elif index + 1 < len(self._tracks):
                    self._decode_track = index + 1
                    self._marks.append((self._written, index + 1, 0))
                    self._seek_request = (index + 1, 0)
                else:
                    self._decoder_eof = True
            self._cond.notify_all()
        return True

    def _fit_channels(self, block: np.ndarray) -> np.ndarray:
        if self._out_channels == block.shape[1]:
            return block
        if self._out_channels == 1:
            return block.mean(axis=1, keepdims=True, dtype=np.float32)
        return block[:, : self._out_channels]

    def _fail_locked(self, error: BaseException) -> None:
        """Decoding cannot go on: what is buffered still plays, then playback ends FAILED."""
        if self._error is None:
            self._error = error
        self._decoder_eof = True
        self._seek_request = None
        self._cond.notify_all()

    # -- the audio callback (a PortAudio thread) -----------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        finished = False
        with self._cond:
            if status and getattr(status, "output_underflow", False):
                self._device_underflows += 1
            ring = self._ring
            if self._state is State.BUFFERING and (ring.count >= self._prebuffer or self._decoder_eof):
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
        if self._volume != 1.0:
            np.multiply(outdata, self._volume, out=outdata)
        if finished:
            raise self._callback_stop()

    def _finished(self) -> None:
        """The device played everything (or was closed)."""
        with self._cond:
            if self._state in (State.PLAYING, State.BUFFERING):  # stopped by the device
                self._state = State.FAILED if self._error is not None else State.STOPPED
        self._done.set()


def import_sounddevice() -> Any:
    """``import sounddevice``, with a clear error when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as exc:
        raise NoOutputDeviceError(
            f"PortAudio is not available ({exc}); install it, e.g. apt-get install libportaudio2"
        ) from None
    return sounddevice


def _close_output(output: Any) -> None:
    abort = getattr(output, "abort", None)
    try:
        if abort is not None:
            abort()
    finally:
        output.close()
