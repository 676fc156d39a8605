"""User words for an audio format: ``MP3 192 kbit/s``, ``FLAC 24-bit 96 kHz``, ``AAC 5.1``.

Pure functions of the names the decoders report (libsndfile's format/subtype, FFmpeg's
container/codec), so that a file reads the same whichever decoder opened it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

#: Codec names of both decoders -> the name users know.
_CODECS = {
    # libsndfile subtypes
    "MPEG_LAYER_III": "MP3", "MPEG_LAYER_II": "MP2", "MPEG_LAYER_I": "MP1", "VORBIS": "Vorbis",
    "OPUS": "Opus", "ULAW": "G.711 µ-law", "ALAW": "G.711 A-law", "IMA_ADPCM": "ADPCM",
    "MS_ADPCM": "ADPCM", "GSM610": "GSM", "G721_32": "G.721", "NMS_ADPCM_32": "ADPCM",
    # FFmpeg decoders
    "mp3": "MP3", "mp3float": "MP3", "mp2": "MP2", "mp2float": "MP2", "mp1": "MP1", "mp1float": "MP1",
    "aac": "AAC", "aac_fixed": "AAC", "aac_latm": "AAC", "libfdk_aac": "AAC", "flac": "FLAC",
    "alac": "ALAC", "opus": "Opus", "libopus": "Opus", "vorbis": "Vorbis", "libvorbis": "Vorbis",
    "ac3": "AC-3", "ac3_fixed": "AC-3", "eac3": "E-AC-3", "dca": "DTS", "truehd": "TrueHD",
    "wmav1": "WMA", "wmav2": "WMA", "wmapro": "WMA Pro", "wmalossless": "WMA Lossless",
    "wavpack": "WavPack", "ape": "Monkey's Audio", "tta": "TTA", "speex": "Speex",
    "pcm_mulaw": "G.711 µ-law", "pcm_alaw": "G.711 A-law",
}  # fmt: skip
LOSSLESS = {"FLAC", "ALAC", "PCM", "WMA Lossless", "WavPack", "Monkey's Audio", "TTA", "TrueHD"}

#: Container names of both decoders -> the name users know.
_CONTAINERS = {
    "wav": "WAV", "w64": "W64", "rf64": "RF64", "aiff": "AIFF", "aifc": "AIFF", "caf": "CAF",
    "flac": "FLAC", "ogg": "Ogg", "oga": "Ogg", "mp3": "MP3", "mpeg": "MP3", "mp4": "MP4",
    "matroska": "Matroska/WebM", "webm": "Matroska/WebM", "aac": "ADTS", "mpegts": "MPEG-TS",
    "au": "AU", "raw": "RAW", "wv": "WavPack", "ape": "Monkey's Audio", "asf": "ASF",
}  # fmt: skip

#: Channel counts with a layout name; others are "N ch".
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}

_PCM_SUBTYPE = re.compile(r"PCM_(S8|U8|16|24|32)$")
_PCM_CODEC = re.compile(r"pcm_([suf])(8|16|24|32|64)(le|be)?(planar)?$")
_ALAC_SUBTYPE = re.compile(r"ALAC_(16|20|24|32)$")


@dataclass(frozen=True)
class Codec:
    """A codec in user words: ``name`` ("MP3", "FLAC", "PCM"), ``bits`` per sample when the
    decoder's names tell it (PCM, libsndfile's FLAC), ``floating`` for float PCM."""

    name: str
    bits: Optional[int] = None
    floating: bool = False

    @property
    def lossless(self) -> bool:
        return self.name in LOSSLESS


def codec_of(container: str, codec: str) -> Codec:
    """The codec a decoder names: libsndfile's format and subtype ("FLAC", "PCM_24"), or
    FFmpeg's container and codec ("flac", "flac"; "wav", "pcm_s16le")."""
    pcm = _PCM_SUBTYPE.match(codec)
    alac = _ALAC_SUBTYPE.match(codec)
    bits: Optional[int] = None
    floating = False
    if pcm:
        bits = 8 if pcm.group(1) in ("S8", "U8") else int(pcm.group(1))
    elif codec in ("FLOAT", "DOUBLE"):
        bits, floating = (32 if codec == "FLOAT" else 64), True
    elif alac:
        return Codec("ALAC", int(alac.group(1)))
    else:
        match = _PCM_CODEC.match(codec)
        if match:
            bits, floating = int(match.group(2)), match.group(1) == "f"
    if bits is not None:  # PCM samples: in a FLAC file (libsndfile's subtypes), FLAC
        return Codec("FLAC" if container.upper() == "FLAC" else "PCM", bits, floating)
    return Codec(_CODECS.get(codec, codec.upper() or "?"))


def container_name(container: str) -> str:
    """``WAV``, ``Ogg``, ``MP4``, ``Matroska/WebM``... from either decoder's format name."""
    return _CONTAINERS.get(container.lower(), container)


def layout_name(channels: int) -> str:
    """``mono``, ``stereo``, ``5.1``, ``7.1``, else ``N ch``."""
    return LAYOUTS.get(channels, f"{channels} ch")


def format_khz(samplerate: int) -> str:
    """``44.1 kHz``, ``48 kHz``, ``22.05 kHz``."""
    return f"{samplerate / 1000:g} kHz"


def format_kbits(bitrate: Optional[float]) -> str:
    """``192 kbit/s`` (bits per second in, rounded to whole kbit/s); ``""`` when unknown."""
    return f"{round(bitrate / 1000)} kbit/s" if bitrate else ""


def audio_words(
    codec: Codec,
    container: str,
    samplerate: int,
    channels: int,
    bits: Optional[int] = None,
    bitrate: Optional[float] = None,
) -> str:
    """``MP3 192 kbit/s``, ``FLAC 24-bit 96 kHz``, ``WAV 16-bit 44.1 kHz``, ``AAC 256 kbit/s 5.1``.

    Lossless: the bit depth and the rate; lossy: the bitrate. PCM is named by its container
    (``WAV``, ``AIFF``). The layout is said unless stereo. ``bits`` (from the tags reader)
    wins over the codec's own; ``bitrate`` in bit/s."""
    name = codec.name
    if name == "PCM":
        name = container_name(container) if container else "PCM"
    parts = [name]
    if codec.lossless:
        depth = bits or codec.bits
        if depth:
            parts.append(f"{depth}-bit float" if codec.floating else f"{depth}-bit")
        parts.append(format_khz(samplerate))
    elif bitrate:
        parts.append(format_kbits(bitrate))
    if channels != 2:
        parts.append(layout_name(channels))
    return " ".join(parts)


def rate_change(words: str, samplerate: int, output_rate: Optional[int]) -> str:
    """``words`` with ``-> 48 kHz`` when the output runs at another rate than ``samplerate``
    (the source's rate said first when ``words`` does not say it)."""
    if not output_rate or not samplerate or output_rate == samplerate:
        return words
    source = format_khz(samplerate)
    if source in words:
        return f"{words} -> {format_khz(output_rate)}"
    return f"{words} {source} -> {format_khz(output_rate)}".strip()
