"""Packed audio HLS (RFC 8216 3.4): segments of raw MP3 / ADTS AAC / AC-3 frames, each led
by an ID3 tag, as Apple's spec and real packagers write them; and FFmpeg's own.

``make_packed_media(directory)`` writes, from one PyAV encode per codec:

- ``packed/<codec>/index.m3u8`` + ``seg000.<ext>``...: 2 s segments of whole frames, each
  led by an ID3v2.4 tag with the PRIV frame ``com.apple.streaming.transportStreamTimestamp``
  (the 33-bit 90 kHz time of the segment's first sample, big-endian in eight octets), as
  RFC 8216 3.4 and Apple's HLS spec ask; codecs ``mp3``, ``aac`` (ADTS), ``ac3``;
- ``packed/mp3_byterange/index.m3u8`` + ``all.mp3``: the same MP3 segments in one file,
  listed with ``#EXT-X-BYTERANGE`` (each range led by its tag);
- ``packed/mp3_dynamic/index.m3u8`` + ``seg000``...: the MP3 segments at URIs without an
  extension (dynamic APIs);
- ``packed/mp3_aes/index.m3u8``: the MP3 segments encrypted with AES-128 (``key.bin``, the IV
  from the media sequence number), as Apple's packager does for packed audio;
- ``packed/ffmpeg_mp3|ffmpeg_aac/index.m3u8``: FFmpeg's segment muxer
  (``segment_format`` mp3 / adts, ``segment_list_type`` m3u8): its mp3 and adts muxers write
  an ID3v2.4 tag (a TSSE frame, no timestamp) at the start of every segment file.

``CASES`` maps each playlist to the format PyAV reads it with. ``strip_id3`` removes the
leading ID3v2 tags of one segment's bytes (written here from the ID3v2.4 spec, apart from the
library's own code): the stream a client must deliver is the segments' bytes without them.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import av
import m3u8
import numpy as np
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .hls_media import encode
from .media import signal

SECONDS = 9
RATE = 44100
SEGMENT = 2.0
TIMESTAMP_OWNER = b"com.apple.streaming.transportStreamTimestamp"
_CODECS: Dict[str, Tuple[str, str, int]] = {"mp3": ("mp3", "mp3", 1152), "aac": ("aac", "adts", 1024), "ac3": ("ac3", "ac3", 1536)}
CASES: Dict[str, str] = {
    "packed/mp3/index.m3u8": "mp3",
    "packed/aac/index.m3u8": "aac",
    "packed/ac3/index.m3u8": "ac3",
    "packed/mp3_byterange/index.m3u8": "mp3",
    "packed/mp3_dynamic/index.m3u8": "mp3",
    "packed/mp3_aes/index.m3u8": "mp3",
    "packed/ffmpeg_mp3/index.m3u8": "mp3",
    "packed/ffmpeg_aac/index.m3u8": "aac",
}


def _syncsafe(n: int) -> bytes:
    return bytes(((n >> shift) & 0x7F) for shift in (21, 14, 7, 0))


def timestamp_tag(pts_90k: int) -> bytes:
    """An ID3v2.4 tag holding one PRIV frame: the transport stream timestamp of RFC 8216 3.4."""
    payload = TIMESTAMP_OWNER + b"\x00" + struct.pack(">Q", pts_90k & ((1 << 33) - 1))
    frame = b"PRIV" + _syncsafe(len(payload)) + b"\x00\x00" + payload
    return b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame


def strip_id3(data: bytes) -> bytes:
    """``data`` without the ID3v2 tags at its start (10-byte header, syncsafe size, footer flag)."""
    while len(data) >= 10 and data[:3] == b"ID3":
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        data = data[10 + size + (10 if data[5] & 0x10 else 0) :]
    return data


KEY = bytes(range(16, 32))


def _aes(data: bytes, sequence: int, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(KEY), modes.CBC(sequence.to_bytes(16, "big")))
    if decrypt:
        work = cipher.decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(work.update(data) + work.finalize()) + unpadder.finalize()
    padder = padding.PKCS7(128).padder()
    work = cipher.encryptor()
    return work.update(padder.update(data) + padder.finalize()) + work.finalize()


def segment_bytes(root: Path, playlist: str) -> List[bytes]:
    """The bytes of each segment of a local media playlist (its sub-range for BYTERANGE),
    decrypted where it is encrypted."""
    parsed = m3u8.load(str(root / playlist))
    base = (root / playlist).parent
    out = []
    for index, seg in enumerate(parsed.segments):
        data = (base / seg.uri).read_bytes()
        if seg.byterange:
            length, _, offset = seg.byterange.partition("@")
            data = data[int(offset) : int(offset) + int(length)]
        if seg.key is not None and seg.key.method == "AES-128":
            data = _aes(data, parsed.media_sequence + index, decrypt=True)
        out.append(data)
    return out


def _encode(codec: str, container: str, frame_size: int) -> bytes:
    return encode(signal(SECONDS, RATE).astype(np.float32), RATE, codec, container, frame_size=frame_size)


def _frames(data: bytes, container: str) -> List[Tuple[float, bytes]]:
    """``(start in seconds, bytes)`` of each frame of an elementary stream, as FFmpeg demuxes it."""
    with av.open(io.BytesIO(data), format=container) as source:
        audio = source.streams.audio[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in source.demux(audio) if p.size]


def _write_playlist(folder: Path, entries: List[Tuple[float, str, Optional[str]]], key: Optional[str] = None) -> None:
    """A VOD playlist of ``(duration, uri, byterange or None)`` entries (``key``: an EXT-X-KEY line)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:4", "#EXT-X-TARGETDURATION:3", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-MEDIA-SEQUENCE:0"]
    lines += [key] if key else []
    for duration, uri, byterange in entries:
        lines += [f"#EXTINF:{duration:.6f},"] + ([f"#EXT-X-BYTERANGE:{byterange}"] if byterange else []) + [uri]
    lines.append("#EXT-X-ENDLIST")
    (folder / "index.m3u8").write_text("\n".join(lines) + "\n")


def _packed_segments(codec: str) -> Tuple[str, List[Tuple[float, bytes]]]:
    """``(extension, [(duration, tagged segment bytes)])`` of 2 s segments of whole frames."""
    _, container, frame_size = _CODECS[codec]
    frames = _frames(_encode(*_CODECS[codec]), container)
    groups: List[List[Tuple[float, bytes]]] = [[]]
    for start, data in frames:
        if groups[-1] and start - groups[-1][0][0] >= SEGMENT - 1e-6:
            groups.append([])
        groups[-1].append((start, data))
    out = []
    for index, group in enumerate(groups):
        end = groups[index + 1][0][0] if index + 1 < len(groups) else group[-1][0] + frame_size / RATE
        body = b"".join(data for _, data in group)
        out.append((end - group[0][0], timestamp_tag(round(group[0][0] * 90000)) + body))
    return codec, out


def _ffmpeg_segments(folder: Path, codec: str) -> None:
    """FFmpeg's segment muxer writing packed audio and its own m3u8 list."""
    _, container, _ = _CODECS[codec]
    # mp3: no Xing frame per file (it would decode as audio mid-stream); adts: its ID3v2 tag.
    muxer_options = "write_xing=0" if codec == "mp3" else "write_id3v2=1"
    ext = "mp3" if codec == "mp3" else "aac"
    with av.open(io.BytesIO(_encode(*_CODECS[codec])), format=container) as source:
        audio = source.streams.audio[0]
        with av.open(
            str(folder / f"seg%03d.{ext}"),
            "w",
            format="segment",
            options={
                "segment_time": str(int(SEGMENT)),
                "segment_format": container,
                "segment_format_options": muxer_options,
                "segment_list": str(folder / "index.m3u8"),
                "segment_list_type": "m3u8",
            },
        ) as out:
            target = out.add_stream_from_template(audio)
            for packet in source.demux(audio):
                if packet.dts is None:
                    continue
                packet.stream = target
                out.mux(packet)


def make_packed_media(directory: Path) -> Path:
    root = directory / "packed"
    for codec in _CODECS:
        folder = root / codec
        folder.mkdir(parents=True, exist_ok=True)
        ext, segments = _packed_segments(codec)
        for index, (_, data) in enumerate(segments):
            (folder / f"seg{index:03d}.{ext}").write_bytes(data)
        _write_playlist(folder, [(duration, f"seg{index:03d}.{ext}", None) for index, (duration, _) in enumerate(segments)])
        if codec != "mp3":
            continue
        aes = root / "mp3_aes"
        aes.mkdir(exist_ok=True)
        (aes / "key.bin").write_bytes(KEY)
        for index, (_, data) in enumerate(segments):
            (aes / f"seg{index:03d}.mp3").write_bytes(_aes(data, index, decrypt=False))
        _write_playlist(aes, [(duration, f"seg{index:03d}.mp3", None) for index, (duration, _) in enumerate(segments)], '#EXT-X-KEY:METHOD=AES-128,URI="key.bin"')
        single, dynamic = root / "mp3_byterange", root / "mp3_dynamic"
        single.mkdir(exist_ok=True)
        dynamic.mkdir(exist_ok=True)
        (single / "all.mp3").write_bytes(b"".join(data for _, data in segments))
        entries, offset = [], 0
        for duration, data in segments:
            entries.append((duration, "all.mp3", f"{len(data)}@{offset}"))
            offset += len(data)
        _write_playlist(single, entries)
        for index, (_, data) in enumerate(segments):
            (dynamic / f"seg{index:03d}").write_bytes(data)
        _write_playlist(dynamic, [(duration, f"seg{index:03d}", None) for index, (duration, _) in enumerate(segments)])
    for codec in ("mp3", "aac"):
        folder = root / f"ffmpeg_{codec}"
        folder.mkdir(parents=True, exist_ok=True)
        _ffmpeg_segments(folder, codec)
    return directory
