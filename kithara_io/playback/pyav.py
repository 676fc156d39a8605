"""The FFmpeg decoder (PyAV): AAC/M4A (moov at the start or the end), ALAC, Opus and Vorbis
in WebM/MKV/Ogg, MP3 (ID3v2 tags), MPEG-TS and ADTS, live streams without a duration.

Seeking is sample-exact: FFmpeg seeks to the key point at or before a little before the
target (the pre-roll lets MDCT codecs and Opus settle), the decoder decodes from there and
the samples before the target are dropped, each frame placed by its timestamp.

HLS: the decoder tells the stream it re-opens its demuxer at restart offsets
(``stream.hls.enable_restarts``), so ``variant="auto"`` may switch fMP4 variants. Each demuxer
reads one :class:`~.windows.RestartWindow` (an init segment and its fragments); at a window's
end the next one is opened and decoding continues; a part at another rate than the first
(a discontinuity: 44.1 -> 48 kHz) is resampled to the track's rate. The fragments carry the stream's time
(``tfdt``), so the frames of the new demuxer follow the old ones sample for sample (measured:
no frame missing or doubled). What is lost: the new AAC decoder starts from silence, so the
first frame after a switch (1024 samples, 23 ms at 44.1 kHz) is decoded without its
predecessor's overlap and differs from a continuous decode (it fades in).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple

import av
import numpy as np

from .channels import channel_matrix, map_channels
from .resample import Resampler
from .windows import RestartWindow

if TYPE_CHECKING:
    from av.container import InputContainer

    from ..sources.hls.info import HlsInfo

PREROLL = 0.2  # seconds decoded before a seek target and dropped
SEEK_RETRIES = 4  # earlier seeks tried when FFmpeg lands after the target
FAST_PROBE = {"probesize": "8192", "analyzeduration": "0"}  # with a known format (see .sniff)


class PyAVOpenError(Exception):
    """FFmpeg cannot open the data as audio."""


_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def frame_to_float32(frame: "av.AudioFrame") -> np.ndarray:
    """A decoded frame as ``samples x channels`` float32 (any FFmpeg sample format)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.T
    else:
        data = data.reshape(-1, channels)
    name = frame.format.name.rstrip("p")
    if name in _SCALE:
        if name == "u8":
            return ((data.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
        return (data / _SCALE[name]).astype(np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


class PyAVDecoder:
    """Decodes the first audio stream of what FFmpeg recognises in the file."""

    def __init__(self, reader, container_format: Optional[str] = None) -> None:
        self._reader = reader
        self._format_hint = container_format
        self._container: Optional[InputContainer] = None
        self._hls: Optional[HlsInfo] = getattr(reader, "hls", None)
        self._window: Optional[RestartWindow] = None
        self._origin = 0  # frames before the current window whose timestamps start again (_window_origin)
        self._limit: Optional[int] = None
        if self._hls is not None:
            self._hls.enable_restarts()  # this decoder re-opens its demuxer at init segments
        self._open()
        context = self._stream.codec_context
        self.samplerate: int = int(context.sample_rate)
        self.channels: int = len(context.layout.channels) or 1
        found = self._demuxer.format
        names = found.name.split(",")  # "mov,mp4,m4a,3gp,3g2,mj2": say mp4
        self.format: str = "mp4" if "mp4" in names else names[0]
        self.format_info: str = found.long_name
        self.codec: str = context.codec.name
        self.codec_info: str = context.codec.long_name
        self._time_base = self._stream.time_base
        self._start = self._stream.start_time or 0
        self.frames: Optional[int] = self._length()
        # MP4 knows its exact length (the edit list); the last AAC packet decodes padding past it.
        # An HLS window's demuxer knows where its window ends (the fragments carry the stream's
        # time): the limit moves on at each restart, and the last window's is the stream's end.
        self._limit = self._container_length() if self.format == "mp4" else None
        self._position = 0  # file frame of the next frame read() returns
        self._target: Optional[int] = None  # after a seek: drop frames before it
        self._offset = 0  # frames counted from the start minus frames placed by timestamp
        self._calibrate()

    def _open(self) -> None:
        """Open the container (again) from the first byte; the decoder is at frame 0."""
        self._open_container(0)
        self._pending: List[np.ndarray] = []
        self._frames: Optional[Iterator[Tuple[Optional[int], np.ndarray]]] = None
        # Container tags (title, artist...), copied: other threads read them, not the container.
        self.metadata = {**dict(self._demuxer.metadata), **dict(self._stream.metadata)}

    def _open_container(self, start: int) -> None:
        """A fresh demuxer at byte ``start`` (0, or an HLS restart offset)."""
        if self._container is not None:
            self._container.close()
            self._reader.seek(0)
        source = self._reader
        if self._hls is not None:
            hls = self._hls
            source = self._window = RestartWindow(self._reader, start, lambda: hls.restarts)
        # Told the format, a small probe: the stream's first frames (not seconds of them).
        options = FAST_PROBE if self._format_hint else None
        try:
            self._container = container = av.open(
                source, mode="r", format=self._format_hint, options=options, metadata_errors="ignore"
            )
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise PyAVOpenError(_message(exc)) from None
        try:
            audio = container.streams.audio
            if not audio:
                raise PyAVOpenError("no audio stream")
            self._stream = audio[0]
            context = self._stream.codec_context
            if not context.sample_rate or not context.codec:
                raise PyAVOpenError("no decodable audio stream")
        except BaseException:
            container.close()
            raise
        # A later HLS part at another rate (a discontinuity, a new init segment) is resampled
        # to the track's rate here: the player set the track up at the first part's.
        self._origin = self._window_origin()
        rate = getattr(self, "samplerate", None)
        self._convert = None
        if rate is not None and context.sample_rate != rate:
            self._convert = Resampler(context.sample_rate, rate, self.channels)

    @property
    def _demuxer(self) -> InputContainer:
        """The container open now (there is one from ``__init__`` on)."""
        if self._container is None:
            raise ValueError("the PyAV decoder has no container open")
        return self._container

    @property
    def duration(self) -> Optional[float]:
        return None if self.frames is None else self.frames / self.samplerate

    def _length(self) -> Optional[int]:
        frames = self._container_length()
        if frames is not None and self._hls is not None and self.format == "mp4":
            # The first demuxer sees its window only: the playlist tells the whole duration.
            frames = int(round(sum(s.duration for s in self._hls.segments) * self.samplerate))
        return frames

    def _container_length(self) -> Optional[int]:
        """Frames from the start to the end of what this container holds."""
        if self._stream.duration is not None and self._stream.time_base is not None:
            return int(round(self._stream.duration * self._stream.time_base * self.samplerate))
        if self._demuxer.duration is not None:  # microseconds (av.time_base)
            return int(round(self._demuxer.duration * self.samplerate / av.time_base))
        return None

    def read(self, frames: int) -> np.ndarray:
        have = sum(len(p) for p in self._pending)
        while self._usable(have) < frames and (
            self._limit is None or self._position + have < self._limit or self._window_ends()
        ):
            block = self._next_block()
            if block is None:
                break
            self._pending.append(block)
            have = sum(len(p) for p in self._pending)  # a new window may have dropped some (_window_limit)
        if self._limit is not None:  # after decoding: a restart may have moved the limit on
            frames = max(0, min(frames, self._limit - self._position))
        if not self._pending:
            return np.zeros((0, self.channels), dtype=np.float32)
        joined = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        out, rest = joined[:frames], joined[frames:]
        self._pending = [rest] if len(rest) else []
        self._position += len(out)
        return out

    def _usable(self, have: int) -> int:
        """Of ``have`` frames decoded ahead, those before the end known now: a window's
        padding past its end does not fill a read while a window follows it."""
        return have if self._limit is None else min(have, max(0, self._limit - self._position))

    def seek(self, frame: int) -> None:
        frame = max(0, int(frame))
        self._pending = []
        self._position = frame
        self._target = frame
        if frame < PREROLL * self.samplerate:
            # Near the start, decode from the first packet as a fresh open does: codec delay
            # and priming are trimmed only there (FFmpeg skips them on the first packet).
            self._open()
            self._frames = self._decode(counted=True)
        else:
            self._seek_before(frame / self.samplerate - PREROLL)

    def close(self) -> None:
        self._frames = None
        self._demuxer.close()

    # -- internals -----------------------------------------------------------------------
    def _calibrate(self) -> None:
        """Decode the first two frames (kept for read()) and compare the second one's
        timestamp with its place counted from the start: containers with coarse timestamps
        (WebM: milliseconds) round the codec delay, and seeks must land where a decode from
        the start would be."""
        kept: List[np.ndarray] = []
        self._frames = self._decode()
        for first, data in itertools.islice(self._frames, 2):
            if len(kept) == 1 and first is not None:
                self._offset = len(kept[0]) - first
            kept.append(data)
        self._pending = kept

    def _seek_before(self, seconds: float) -> None:
        # May be before the first timestamp (priming packets have negative ones): backward
        # seeking then lands on the first packet.
        if self._hls is not None:
            self._enter_window(self._hls, seconds)
        base = self._stream.time_base  # a later HLS window's stream may count in another unit
        start = self._start if base == self._time_base else int(self._start * self._time_base / base)
        offset = start + int((seconds - self._origin / self.samplerate) / base)
        try:
            self._demuxer.seek(offset, stream=self._stream, backward=True)
        except av.FFmpegError:  # some demuxers refuse a point before the first timestamp
            self._demuxer.seek(max(offset, start), stream=self._stream, backward=True)
        self._stream.codec_context.flush_buffers()
        self._frames = self._decode()

    def _enter_window(self, hls: HlsInfo, seconds: float) -> None:
        """Open the window holding ``seconds`` if it is not the current one (HLS)."""
        if self._window is not None and self._window.start == 0 and not hls.restarts:
            return  # one window (MPEG-TS, or no switch yet): no need to wait for offsets
        offset = hls.offset_of(max(0.0, seconds))
        start = max([0] + [r for r in hls.restarts if r <= offset])
        if self._window is None or start != self._window.start:
            self._open_container(start)
            if self._limit is not None:  # where this window ends, counted from the stream's start
                self._limit = self._origin + (self._container_length() or 0)

    def _window_origin(self) -> int:
        """Track frames before the current window when its timestamps start again (after a
        discontinuity: a DASH Period, an HLS ``EXT-X-MAP`` that changes): the start of its
        first segment. 0 when they carry the stream's time (a variant switch), and for the
        first window."""
        window = self._window
        if window is None or window.start == 0 or self._hls is None:
            return 0
        seconds = next((s.start for s in self._hls.segments if s.offset is not None and s.offset >= window.start), None)
        if seconds is None:
            return 0
        own = float((self._stream.start_time or 0) * self._stream.time_base)
        return 0 if own >= seconds / 2 else int(round(seconds * self.samplerate))

    def _window_ends(self) -> bool:
        """Does the current HLS window end at a restart offset (more follows it)?"""
        return self._window is not None and self._window.end is not None

    def _next_window(self) -> bool:
        """At the end of a window that ended at a restart offset: open the next one."""
        window, reader = self._window, self._reader
        if window is None or window.end is None:
            return False
        if (
            getattr(reader, "error", None) is not None
            or getattr(reader, "interrupted", False)
            or getattr(reader, "cancelled", False)
        ):
            return False  # not the window's end: the owner handles it
        self._open_container(window.end)
        self._frames = self._decode()
        if self._limit is not None:
            self._limit = self._window_limit(self._limit)
        return True

    def _window_limit(self, limit: int) -> int:
        """Where the stream ends now that a new mp4 window is open (``limit``: where the last
        one ended). Its fragments carry the stream's time after a variant switch: its
        length counts from the stream's start. After a discontinuity (an HLS ``EXT-X-MAP``
        that changes, a DASH Period) its time starts again near 0: its length adds to where
        the last window ended, and what the last one decoded past its end (the AAC
        padding after its edit list) is dropped."""
        length = self._container_length() or 0
        start = float((self._stream.start_time or 0) * self._stream.time_base) * self.samplerate
        have = sum(len(p) for p in self._pending)
        if start >= (self._position + have) / 2:  # continues where the last window's frames ended
            return max(limit, length)
        keep = max(0, limit - self._position)
        if have > keep:  # past the last window's end
            joined = np.concatenate(self._pending) if self._pending else np.zeros((0, self.channels), np.float32)
            self._pending = [joined[:keep]] if keep else []
        return limit + length

    def _decode(self, counted: bool = False) -> Iterator[Tuple[Optional[int], np.ndarray]]:
        """(first frame, samples) of each decoded frame: placed by its timestamp, or
        ``counted`` from 0 (decoding from the first packet)."""
        count, convert = 0, self._convert
        placed: Optional[int] = None  # where the resampled frames of this pass start (track frames)
        if convert is not None:
            convert.reset()  # a pass starts at the container's start or after a seek
        for packet in self._demuxer.demux(self._stream):
            try:
                decoded = packet.decode()
            except av.InvalidDataError:
                continue  # a damaged packet (a live stream joined mid-frame): skip it
            for frame in decoded:
                first, data = self._placed(frame)
                if convert is not None:  # resampled: placed by the pass's first timestamp, then counted
                    if placed is None and first is not None:
                        placed = first - count
                    first, data = (None if placed is None else placed + count), convert.process(data)
                yield (count if counted else first), data
                count += len(data)
        if convert is not None:
            yield None, convert.process(np.zeros((0, self.channels), np.float32), last=True)

    def _placed(self, frame: "av.AudioFrame"):
        data = frame_to_float32(frame)
        if data.shape[1] != self.channels:  # the layout changed mid-stream (a live stream)
            data = map_channels(data, channel_matrix(data.shape[1], self.channels))
        if frame.pts is None or frame.time_base is None:
            return None, data
        first = (
            int(round((frame.pts * frame.time_base - self._start * self._time_base) * self.samplerate))
            + self._offset
            + self._origin
        )
        return first, data

    def _next_block(self) -> Optional[np.ndarray]:
        """The next decoded samples from ``_position`` on; None at the end. Bounded: each
        pass consumes a decoded frame, and at most SEEK_RETRIES passes seek back."""
        if self._frames is None:
            self._frames = self._decode()
        retries = 0
        while True:
            item = next(self._frames, None)
            if item is None:
                if self._next_window():
                    continue
                return None
            first, data = item
            target = self._target
            if target is None:
                return data
            if first is None:  # no timestamp: trust FFmpeg's landing
                self._target = None
                return data
            if first > target and target > 0 and retries < SEEK_RETRIES:
                retries += 1  # landed after the target: seek further back
                self._seek_before(target / self.samplerate - PREROLL * 4**retries)
                continue
            if first + len(data) <= target:
                continue
            self._target = None
            return data[max(0, target - first) :]


def _message(exc: BaseException) -> str:
    text = str(exc)
    # "[Errno 1094995529] Invalid data found when processing input: '<none>'" -> the cause
    if "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(": '", 1)[0]
