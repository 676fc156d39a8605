"""Decoders: one small interface, a libsndfile implementation and (in :mod:`.pyav`) an
FFmpeg one; :func:`open_decoder` picks by probing.

A decoder reads from a :class:`SafeReader` over the stream and hands out float32 frames
(``frames x channels``) at the file's own rate and channel count. It is used by one thread
at a time (the Player's decoder thread, or the opener).
"""

from __future__ import annotations

import io
import os
from typing import Any, Optional, Protocol

import numpy as np
import soundfile as sf

from ..errors import StreamError
from .errors import UnsupportedFormatError
from .sniff import SNIFF_BYTES, container_format

DECODERS = ("soundfile", "pyav")


class Decoder(Protocol):
    """What the player needs from a decoder."""

    samplerate: int
    channels: int
    frames: Optional[int]  # None when unknown (a live stream)
    format: str  # container, e.g. "WAV", "FLAC", "mp4", "webm"
    codec: str  # e.g. "PCM_16", "VORBIS", "aac", "opus"
    format_info: str  # longer descriptions, for ``info``
    codec_info: str

    @property
    def duration(self) -> Optional[float]: ...

    def read(self, frames: int) -> np.ndarray:
        """Up to ``frames`` float32 frames; fewer only at the end (or when the reader failed)."""

    def seek(self, frame: int) -> None:
        """Continue from exactly ``frame`` (counted from the first frame of the file)."""

    def close(self) -> None: ...


class SafeReader(io.RawIOBase):
    """The file a decoder reads. libsndfile calls it through cffi, which prints and swallows
    exceptions (FFmpeg maps them to an I/O error): so a failure is stored in ``error`` and
    reads return 0 (end of data); the Player reports ``error`` afterwards. ``cancelled``
    makes every read return 0 at once (closing). A read the stream interrupted
    (``Stream.interrupt``, after a seek) returns 0 and sets ``interrupted``: the decoder's
    state is then unknown, and its owner reopens it. ``waiting`` is True during a read."""

    def __init__(self, file: Any) -> None:
        super().__init__()
        self._file = file
        self.error: Optional[BaseException] = None
        self.cancelled = False
        self.interrupted = False
        self.waiting = False
        self._ahead = b""  # read by peek(), handed out first

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        try:
            if not self._file.seekable():
                return False
            # An HLS EVENT playlist before its ENDLIST is seekable but has no end yet, and both
            # decoders ask a seekable file for its end at open: it plays as a live stream.
            return getattr(self._file, "hls", None) is None or self._file.size is not None
        except (AttributeError, ValueError, OSError):
            return False

    def readinto(self, buffer: Any) -> int:
        if self.cancelled or self.error is not None or self.interrupted:
            return 0
        if self._ahead:
            n = min(len(buffer), len(self._ahead))
            buffer[:n] = self._ahead[:n]
            self._ahead = self._ahead[n:]
            return n
        self.waiting = True
        try:
            return self._file.readinto(buffer) or 0
        except InterruptedError:
            self.interrupted = True
            return 0
        except BaseException as exc:  # noqa: BLE001 - re-raised by the Player
            self.error = exc
            return 0
        finally:
            self.waiting = False

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end), handed out again by the next reads:
        a look at the head of a stream that cannot seek back. Bounded: each pass reads."""
        while len(self._ahead) < size:
            buffer = bytearray(size - len(self._ahead))
            saved, self._ahead = self._ahead, b""
            n = self.readinto(buffer)
            self._ahead = saved + bytes(buffer[:n])
            if n == 0:
                break
        return self._ahead[:size]

    @property
    def content_type(self) -> Optional[str]:
        """The stream's Content-Type (a live stream's), if it tells one."""
        try:
            return getattr(self._file, "content_type", None)
        except (ValueError, OSError):  # closed
            return None

    def interrupt(self) -> None:
        """Interrupt the read waiting on the network now (from another thread), if any."""
        interrupt = getattr(self._file, "interrupt", None)
        if self.waiting and interrupt is not None:
            try:
                interrupt()
            except ValueError:  # closed meanwhile
                pass

    @property
    def hls(self) -> Any:
        """The stream's ``hls`` (None when it is not an HLS stream)."""
        try:
            return getattr(self._file, "hls", None)
        except (ValueError, OSError):  # closed
            return None

    def rewind(self) -> None:
        """Back to the first byte (after a probe); raises what the file raises."""
        self._file.seek(0)
        self._ahead = b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            if self._ahead and (whence, offset) in ((os.SEEK_CUR, 0), (os.SEEK_SET, self.tell())):
                return self.tell()  # where it is: the bytes read ahead stay
            result = self._file.seek(offset, whence)
            self._ahead = b""
            return result
        except BaseException as exc:  # noqa: BLE001
            if self.error is None and not self.cancelled:
                self.error = exc
            return 0

    def tell(self) -> int:
        try:
            return self._file.tell() - len(self._ahead)
        except BaseException as exc:  # noqa: BLE001
            if self.error is None and not self.cancelled:
                self.error = exc
            return 0

    def close(self) -> None:  # the stream is closed by its owner, not by a decoder
        pass


class SoundfileDecoder:
    """What libsndfile reads: WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF..."""

    def __init__(self, reader: SafeReader) -> None:
        self.sound = sf.SoundFile(reader)
        self.samplerate: int = self.sound.samplerate
        self.channels: int = self.sound.channels
        self.frames: Optional[int] = self.sound.frames
        self.format: str = self.sound.format
        self.codec: str = self.sound.subtype
        self.format_info: str = self.sound.format_info
        self.codec_info: str = self.sound.subtype_info

    @property
    def duration(self) -> Optional[float]:
        return None if self.frames is None else self.frames / self.samplerate

    def read(self, frames: int) -> np.ndarray:
        return self.sound.read(frames, dtype="float32", always_2d=True)

    def seek(self, frame: int) -> None:
        self.sound.seek(frame)

    def close(self) -> None:
        self.sound.close()


def open_decoder(reader: SafeReader, name: str, decoder: Optional[str] = None) -> Decoder:
    """A decoder for the data ``reader`` reads: ``decoder`` "soundfile" or "pyav", or None
    to probe (libsndfile first, FFmpeg when libsndfile does not recognise the data).
    Raises the reader's stored stream failure, or UnsupportedFormatError."""
    if decoder is not None and decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {decoder!r}")
    reason = ""
    # libsndfile needs to seek (it asks the length first): a stream that cannot goes to FFmpeg.
    if decoder == "soundfile" or (decoder is None and reader.seekable()):
        try:
            return SoundfileDecoder(reader)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            if isinstance(reader.error, StreamError) or not isinstance(reader.error, (Exception, type(None))):
                _raise_stream_error(reader)  # the download failed (or a Ctrl-C landed): that is the cause
            reader.error = None  # a refused seek of the probe (a live stream): not a failure
            reason = _describe(exc)
            if decoder == "soundfile":
                raise UnsupportedFormatError(f"{name}: cannot decode: {reason}") from None
        reader.rewind()
    from .pyav import PyAVDecoder, PyAVOpenError

    # A stream that cannot seek back (a station): the format told, FFmpeg opens at once.
    # Not HLS: its segments' container is FFmpeg's to find (packed audio starts with ID3).
    hint = None
    if not reader.seekable() and reader.hls is None:
        hint = container_format(reader.content_type) or container_format(None, reader.peek(SNIFF_BYTES))
    try:
        return PyAVDecoder(reader, hint)
    except PyAVOpenError as exc:
        _raise_stream_error(reader)
        text = f"{reason} (libsndfile); {exc} (FFmpeg)" if reason else str(exc)
        raise UnsupportedFormatError(f"{name}: cannot decode: {text}") from None


def _raise_stream_error(reader: SafeReader) -> None:
    if reader.error is not None:
        raise reader.error.with_traceback(None)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
