"""The container of a live stream, told before FFmpeg probes it.

FFmpeg guesses a format by reading up to 5 MB and analysing seconds of it: on a station that
sends in real time that is seconds of silence (measured: 6 s for a 160 kbit/s MP3 station).
Told the demuxer (``format=``) and a small probe it opens on the first frames. The format
comes from the Content-Type, else from the first bytes: a magic number (``OggS``, ``fLaC``,
``RIFF``; an ``ID3`` tag skipped) or, for a station joined mid-frame, two MPEG audio or ADTS frame headers
in a row. Pure code.
"""

from __future__ import annotations

from typing import Optional

#: Bytes read ahead to sniff a stream without a usable Content-Type.
SNIFF_BYTES = 8192

#: FFmpeg demuxer names by Content-Type (parameters and case ignored).
CONTENT_TYPES = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mpeg3": "mp3",
    "audio/x-mpeg": "mp3",
    "audio/aac": "aac",  # FFmpeg's ADTS demuxer is called "aac"
    "audio/aacp": "aac",
    "audio/x-aac": "aac",
    "audio/ogg": "ogg",
    "application/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/vorbis": "ogg",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/webm": "matroska",
    "audio/x-matroska": "matroska",
}

_MAGIC = ((b"OggS", "ogg"), (b"fLaC", "flac"), (b"RIFF", "wav"), (b"\x1a\x45\xdf\xa3", "matroska"))
_MPEG1_L3 = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
_MPEG2_L3 = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def container_format(content_type: Optional[str], head: bytes = b"") -> Optional[str]:
    """The FFmpeg demuxer for a stream with this Content-Type and these first bytes; None
    when neither tells (FFmpeg then probes)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in CONTENT_TYPES:
        return CONTENT_TYPES[ctype]
    return sniff(head)


def sniff(head: bytes) -> Optional[str]:
    """The container the bytes ``head`` start (or, for frame streams, continue) with. An ID3
    tag is skipped: MP3 and ADTS streams both may start with one."""
    if head.startswith(b"ID3") and len(head) >= 10:
        size = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        return sniff(head[size + (10 if head[5] & 0x10 else 0) :])
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    for pos in range(max(0, len(head) - 4)):
        if head[pos] != 0xFF or head[pos + 1] & 0xE0 != 0xE0:
            continue
        for kind, length_of in (("aac", _adts_length), ("mp3", _mp3_length)):
            length = length_of(head, pos)
            if length and _frame_start(head, pos + length, length_of):
                return kind
    return None


def _frame_start(head: bytes, pos: int, length_of) -> bool:
    """Another frame header of the same kind at ``pos`` (or ``head`` ends before it)."""
    if pos + 4 > len(head):
        return False
    return head[pos] == 0xFF and length_of(head, pos) > 0


def _adts_length(head: bytes, pos: int) -> int:
    """The length of the ADTS frame whose header is at ``pos``; 0 if it is not one."""
    if pos + 7 > len(head) or head[pos + 1] & 0xF6 != 0xF0 or (head[pos + 2] >> 2) & 0xF > 12:
        return 0
    length = ((head[pos + 3] & 0x3) << 11) | (head[pos + 4] << 3) | (head[pos + 5] >> 5)
    return length if length >= 7 else 0


def _mp3_length(head: bytes, pos: int) -> int:
    """The length of the MPEG audio Layer III frame whose header is at ``pos``; 0 if not one."""
    version, layer = (head[pos + 1] >> 3) & 3, (head[pos + 1] >> 1) & 3
    index, rate_index = head[pos + 2] >> 4, (head[pos + 2] >> 2) & 3
    if version == 1 or layer != 1 or index in (0, 15) or rate_index == 3:
        return 0
    rate = _MPEG_RATES[version][rate_index]
    padding = (head[pos + 2] >> 1) & 1
    if version == 3:
        return 144 * _MPEG1_L3[index] * 1000 // rate + padding
    return 72 * _MPEG2_L3[index] * 1000 // rate + padding
