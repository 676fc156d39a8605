"""A file's tags and stream facts, read with mutagen from the open stream (any decoder).

ID3 (MP3, AIFF, WAV), Vorbis comments (FLAC, Ogg Vorbis/Opus), MP4 atoms and APEv2 are
brought to one form: lower-case keys (``title``, ``artist``, ``album``,
``replaygain_track_gain``...) to lists of strings. mutagen also tells what the decoders do
not say alike: the bitrate and the bit depth. A stream that cannot seek (a station) is not
read: its titles come from ICY metadata.

mutagen is told the kind of file from its first bytes (not its generic probe, whose APEv2
check reads the end of every file), and reads through :class:`_Bounded`, which answers a
read at the end at once (a stream still downloading would wait for bytes that cannot come).
What it reads beyond the head is what the decoders read too (an MP3's ID3v1 at the end, an
Ogg file's last page, an MP4's atoms) or a WAV/AIFF chunk after the audio.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .loudness import ReplayGain, parse_gain, parse_peak, parse_r128

log = logging.getLogger(__name__)

#: ID3 frames and MP4 atoms with the names Vorbis comments use.
_ID3 = {"TIT2": "title", "TPE1": "artist", "TALB": "album", "TPE2": "albumartist"}
_MP4 = {"\xa9nam": "title", "\xa9ART": "artist", "\xa9alb": "album", "aART": "albumartist"}
_FREEFORM = "----:com.apple.itunes:"


@dataclass(frozen=True)
class FileTags:
    """What the tags say; every field None when the file has none (or could not be read)."""

    title: Optional[str] = None
    artist: Optional[str] = None
    album: Optional[str] = None
    bitrate: Optional[int] = None  # bit/s, as the file's headers tell (an average for VBR)
    bits: Optional[int] = None  # bits per sample of a lossless file
    replaygain: ReplayGain = field(default_factory=ReplayGain)

    @property
    def display_title(self) -> Optional[str]:
        """``Artist - Title``, or the one of them there is."""
        parts = [p for p in (self.artist, self.title) if p]
        return " - ".join(parts) or None


def read_tags(stream: Any) -> FileTags:
    """The tags of the seekable ``stream``, read from its current position's file and left
    at that position. A file mutagen does not know, or damaged tags: empty tags (logged).
    A failure of the stream itself (``OSError``, ``StreamError``) is raised."""
    import mutagen

    start = stream.tell()
    try:
        view = _Bounded(stream)
        kinds = _kinds(view.read(16))
        view.seek(0)
        found = mutagen.File(view, options=kinds) if kinds else None
    except mutagen.MutagenError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError):
            raise cause from None  # the download failed, not the tags
        log.debug("no tags read from %s: %s", getattr(stream, "name", "the stream"), exc)
        found = None
    except (ValueError, IndexError, KeyError, EOFError, UnicodeError) as exc:  # damaged data
        log.debug("no tags read from %s: %s", getattr(stream, "name", "the stream"), exc)
        found = None
    finally:
        stream.seek(start, os.SEEK_SET)
    if found is None:
        return FileTags()
    values = _normalise(found.tags)
    info = found.info
    return FileTags(
        title=_first(values, "title"),
        artist=_first(values, "artist"),
        album=_first(values, "album"),
        bitrate=int(getattr(info, "bitrate", 0) or 0) or None,
        bits=int(getattr(info, "bits_per_sample", 0) or 0) or None,
        replaygain=_replaygain(values),
    )


def _kinds(head: bytes) -> list:
    """The mutagen classes for a file starting with ``head``; [] for one without tags here."""
    from mutagen.aac import AAC
    from mutagen.aiff import AIFF
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    if head.startswith(b"ID3"):
        return [MP3]
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF0 == 0xF0:
        return [AAC] if head[1] & 0x06 == 0 else [MP3]  # layer 0: ADTS AAC
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return [MP3]  # MPEG 2.5
    if head.startswith(b"fLaC"):
        return [FLAC]
    if head.startswith(b"OggS"):
        return [OggVorbis, OggOpus, OggFLAC]
    if head.startswith((b"RIFF", b"RF64")) and head[8:12] == b"WAVE":
        return [WAVE]
    if head.startswith(b"FORM"):
        return [AIFF]
    if head[4:8] == b"ftyp":
        return [MP4]
    return []


class _Bounded(io.RawIOBase):
    """The stream for mutagen: a read at or past the end returns nothing at once."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self.name = str(getattr(stream, "name", "") or "")
        size = getattr(stream, "size", None)
        if not isinstance(size, int):
            size = stream.seek(0, os.SEEK_END)
        self._size = size
        stream.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._size - self._stream.tell()
        if left <= 0:
            return 0
        return self._stream.readinto(memoryview(buffer)[:left]) or 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _normalise(tags: Any) -> Dict[str, List[str]]:
    """Tags of any kind as lower-case names to lists of strings."""
    out: Dict[str, List[str]] = {}
    if tags is None:
        return out
    from mutagen.id3 import ID3

    if isinstance(tags, ID3):
        for frame in tags.values():
            if frame.FrameID == "TXXX":
                out.setdefault(frame.desc.lower(), []).extend(str(t) for t in frame.text)
            elif frame.FrameID in _ID3:
                out.setdefault(_ID3[frame.FrameID], []).extend(str(t) for t in frame.text)
        return out
    for key, value in tags.items():
        name = str(key)
        if name in _MP4:
            name = _MP4[name]
        elif name.lower().startswith(_FREEFORM):
            name = name[len(_FREEFORM) :]
        items = value if isinstance(value, list) else [value]
        out.setdefault(name.lower(), []).extend(_text(item) for item in items)
    return out


def _text(item: Any) -> str:
    if isinstance(item, bytes):  # MP4 freeform atoms hold bytes
        return item.decode("utf-8", "replace")
    return str(item)


def _first(values: Dict[str, List[str]], key: str) -> Optional[str]:
    for value in values.get(key, []):
        if value.strip():
            return value.strip()
    return None


def _replaygain(values: Dict[str, List[str]]) -> ReplayGain:
    def number(key: str, parse) -> Optional[float]:
        text = _first(values, key)
        return None if text is None else parse(text)

    track = number("replaygain_track_gain", parse_gain)
    album = number("replaygain_album_gain", parse_gain)
    if track is None and album is None:  # Opus: R128 gains, no peaks
        return ReplayGain(
            track_gain=number("r128_track_gain", parse_r128), album_gain=number("r128_album_gain", parse_r128)
        )
    return ReplayGain(
        track_gain=track,
        track_peak=number("replaygain_track_peak", parse_peak),
        album_gain=album,
        album_peak=number("replaygain_album_peak", parse_peak),
    )
