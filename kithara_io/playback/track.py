"""Track: one source opened for playback (its stream, the reader the decoder sees, the decoder)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

from ..api import open as open_stream
from ..errors import StreamError
from .decoders import Decoder, SafeReader, SoundfileDecoder, open_decoder
from .naming import audio_words, codec_of, container_name, layout_name
from .tags import FileTags, read_tags

Source = Union[str, "os.PathLike[str]", Any]  # a URL, a path, or an open binary file


class Track:
    """One decodable source. Opening reads the header; raises what ``kithara_io.open``
    raises, or UnsupportedFormatError. ``decoder``: "soundfile", "pyav" or None (probe)."""

    def __init__(
        self,
        source: Source,
        options: Optional[dict] = None,
        close_stream: bool = True,
        decoder: Optional[str] = None,
    ) -> None:
        options = options or {}
        self.name = str(getattr(source, "name", source))
        self.stream: Any  # a kithara_io Stream, or the caller's binary file (duck-typed)
        if hasattr(source, "read"):
            self.stream, self.owned = source, close_stream
        else:
            self.stream, self.owned = open_stream(source, **options), True
        self.reader = SafeReader(self.stream)
        try:
            self.tags = self._read_tags()
            self.decoder: Decoder = open_decoder(self.reader, self.name, decoder)
            _raise_interrupt(self.reader)
        except BaseException:
            self.close_stream()
            _raise_interrupt(self.reader)  # the Ctrl-C, not the failure it caused
            raise
        self.samplerate: int = self.decoder.samplerate
        self.channels: int = self.decoder.channels
        self.frames: Optional[int] = self.decoder.frames
        self.format: str = self.decoder.format
        self.codec: str = self.decoder.codec
        self.subtype: str = self.decoder.codec  # the soundfile name of the codec
        self.decoder_name = "soundfile" if hasattr(self.decoder, "sound") else "pyav"
        self.codec_words = codec_of(self.format, self.codec)  # the same whichever decoder
        # Both at open: status() must not ask a stream that may be closed by then.
        self.bitrate: Optional[int] = self._bitrate()
        # "MP3 192 kbit/s", "FLAC 24-bit 96 kHz", "AAC 256 kbit/s 5.1": whichever decoder.
        self.audio: str = audio_words(
            self.codec_words, self.format, self.samplerate, self.channels, self.bits, self.bitrate
        )

    def _bitrate(self) -> Optional[int]:
        """Bits per second: what the file's headers tell, else a station's ``icy-br``, else
        the average over the file (size and duration, when both are known)."""
        if self.tags.bitrate:
            return self.tags.bitrate
        metadata = getattr(self.stream, "metadata", None)
        station = metadata.get("bitrate") if isinstance(metadata, Mapping) else None
        if isinstance(station, int) and station > 0:
            return station * 1000  # kbit/s
        try:
            size = getattr(self.stream, "size", None)
        except (OSError, ValueError):
            size = None
        if isinstance(size, int) and size > 0 and self.duration:
            return int(size * 8 / self.duration)
        return None

    def _read_tags(self) -> FileTags:
        """The file's tags (mutagen), read before the decoder opens; none for a stream that
        cannot seek (a station: ICY titles) or an HLS stream."""
        if not self.reader.seekable() or self.reader.hls is not None:
            return FileTags()
        return read_tags(self.stream)

    @property
    def bits(self) -> Optional[int]:
        """Bits per sample of lossless audio (None for lossy codecs, or not told)."""
        if not self.codec_words.lossless:
            return None
        return self.tags.bits or self.codec_words.bits

    @property
    def container(self) -> str:
        """The container in user words (``MP4``, ``Ogg``, ``WAV``)."""
        return container_name(self.format)

    @property
    def layout(self) -> str:
        """``mono``, ``stereo``, ``5.1``, ``7.1`` or ``N ch``."""
        return layout_name(self.channels)

    def reopen_decoder(self) -> None:
        """A fresh decoder at frame 0 (after an interrupted read left the old one in an
        unknown state); the header is read again, from the stream's cache."""
        self.decoder.close()
        self.reader.interrupted = False
        self.reader.rewind()
        self.decoder = open_decoder(self.reader, self.name, self.decoder_name)

    @property
    def sound(self) -> Any:
        """The ``soundfile.SoundFile`` (soundfile decoder only)."""
        if not isinstance(self.decoder, SoundfileDecoder):
            raise AttributeError("only the soundfile decoder has a soundfile.SoundFile")
        return self.decoder.sound

    @property
    def duration(self) -> Optional[float]:
        """Seconds; None when unknown (a live stream)."""
        return None if self.frames is None else self.frames / self.samplerate

    @property
    def title(self) -> Optional[str]:
        """The stream's current title (live radio metadata), else ``Artist - Title`` from the
        file's tags, else the title FFmpeg found (a live stream's container)."""
        metadata = getattr(self.stream, "metadata", None)
        if isinstance(metadata, Mapping) and metadata.get("title"):
            return str(metadata.get("title"))
        if self.tags.display_title:
            return self.tags.display_title
        tags = getattr(self.decoder, "metadata", None)
        if isinstance(tags, dict):
            for key in ("title", "TITLE", "StreamTitle"):
                if tags.get(key):
                    return str(tags[key])
        return None

    def raise_priority(self) -> None:
        """The track starts playing: its stream's fetches go first (a no-op for files)."""
        try:
            self.stream.priority = "high"
        except (AttributeError, ValueError, TypeError, StreamError):
            pass  # not a kithara_io stream, or closed

    def close_stream(self) -> None:
        if self.owned:
            try:
                self.stream.close()
            except (StreamError, OSError, ValueError):
                pass  # already reported through the reader, or the caller's business

    def close(self) -> None:
        try:
            decoder = getattr(self, "decoder", None)
            if decoder is not None:
                decoder.close()
        finally:
            self.close_stream()


def _raise_interrupt(reader: SafeReader) -> None:
    """A Ctrl-C (or SystemExit) that landed in a read the decoder made is the caller's:
    the decoder's callback would have swallowed it (SafeReader keeps it), so it is raised
    here. Without this a Ctrl-C while the next track opens was lost: the queue went on."""
    error = reader.error
    if error is not None and not isinstance(error, Exception):
        reader.error = None
        raise error
