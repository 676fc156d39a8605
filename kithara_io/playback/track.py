"""Track: one source opened for playback (its stream, the reader the decoder sees, the decoder)."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from ..api import open as open_stream
from ..errors import StreamError
from .decoders import Decoder, SafeReader, open_decoder

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
        if hasattr(source, "read"):
            self.stream, self.owned = source, close_stream
        else:
            self.stream, self.owned = open_stream(source, **options), True
        self.reader = SafeReader(self.stream)
        try:
            self.decoder: Decoder = open_decoder(self.reader, self.name, decoder)
        except BaseException:
            self.close_stream()
            raise
        self.samplerate: int = self.decoder.samplerate
        self.channels: int = self.decoder.channels
        self.frames: Optional[int] = self.decoder.frames
        self.format: str = self.decoder.format
        self.codec: str = self.decoder.codec
        self.subtype: str = self.decoder.codec  # the soundfile name of the codec
        self.decoder_name = "soundfile" if hasattr(self.decoder, "sound") else "pyav"

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
        return getattr(self.decoder, "sound")

    @property
    def duration(self) -> Optional[float]:
        """Seconds; None when unknown (a live stream)."""
        return None if self.frames is None else self.frames / self.samplerate

    @property
    def title(self) -> Optional[str]:
        """The stream's current title (live radio metadata), else the file's title tag."""
        metadata = getattr(self.stream, "metadata", None)
        if hasattr(metadata, "get") and metadata.get("title"):
            return str(metadata.get("title"))
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
