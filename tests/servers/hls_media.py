"""HLS test media written by FFmpeg's own HLS muxer (through PyAV), not by our idea of HLS.

``make_hls_media(directory)`` writes, for a 30 s stereo 44.1 kHz signal encoded as AAC:

- ``ts/v0|v1|v2/index.m3u8`` + ``seg000.ts``...: MPEG-TS segments at 64/160/300 kbit/s,
  ``ts/master.m3u8`` listing them (in ``MASTER_ORDER``);
- ``fmp4/v0|v1|v2/index.m3u8`` + ``init.mp4`` + ``seg000.m4s``...: the same as fMP4, and a master;
- ``single_ts/index.m3u8`` + ``media.ts``, ``single_fmp4/index.m3u8`` + ``media.mp4``:
  ``hls_flags=single_file`` (one file, ``#EXT-X-BYTERANGE``), 160 kbit/s;
- ``aes/index.m3u8`` + ``seg000.ts``... + ``key.bin``: AES-128 (``hls_key_info_file``), 160 kbit/s;
- ``live/source.m3u8`` + ``seg000.ts``...: 1 s segments that ``HlsServer`` publishes as a live
  sliding window (``live/live.m3u8``);
  (FFmpeg's muxer encrypts MPEG-TS segments only: "not yet implemented" for fMP4).

``HlsMedia.local_bytes(playlist)`` is what a client must deliver for a media playlist: the
init segment (if any) followed by every segment, decrypted, read from the local files.
"""

from __future__ import annotations

import dataclasses
import io
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import m3u8
import numpy as np
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .media import signal

SECONDS = 30
SAMPLE_RATE = 44100
HLS_TIME = 4
BITRATES = (64_000, 160_000, 300_000)  # v0, v1, v2
KEY = bytes(range(16))
KEY_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


@dataclasses.dataclass(frozen=True)
class HlsMedia:
    root: Path

    def path(self, rel: str) -> Path:
        return self.root / rel

    def local_bytes(self, rel_playlist: str) -> bytes:
        """The init segment and all segments of a local media playlist, decrypted, joined."""
        playlist = m3u8.load(str(self.root / rel_playlist))
        base = (self.root / rel_playlist).parent
        out = bytearray()
        if playlist.segment_map:
            out += _read_part(base / playlist.segment_map[0].uri, playlist.segment_map[0].byterange)
        previous_end: dict[str, int] = {}
        for index, seg in enumerate(playlist.segments):
            spec = seg.byterange
            if spec and "@" not in spec:  # continues after the previous sub-range
                spec = f"{spec}@{previous_end.get(seg.uri, 0)}"
            data = _read_part(base / seg.uri, spec)
            if spec:
                length, _, offset = spec.partition("@")
                previous_end[seg.uri] = int(offset) + int(length)
            key = seg.key
            if key is not None and key.method == "AES-128":
                iv = bytes.fromhex(key.iv[2:]) if key.iv else (playlist.media_sequence + index).to_bytes(16, "big")
                data = _decrypt((base / key.uri).read_bytes(), iv, data)
            out += data
        return bytes(out)


def _read_part(path: Path, byterange: Optional[str]) -> bytes:
    data = path.read_bytes()
    if not byterange:
        return data
    length, _, offset = byterange.partition("@")
    start = int(offset or 0)
    return data[start : start + int(length)]


def _decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def encode(
    pcm: np.ndarray, rate: int, codec: str = "aac", container: str = "mp4", bitrate: Optional[int] = None,
    frame_size: Optional[int] = None,
) -> bytes:
    """``pcm`` (frames x 2, float32) encoded by FFmpeg with ``codec`` into an in-memory
    ``container`` in frames of ``frame_size`` (the codec's: MP3 1152, AAC 1024, AC-3 1536);
    HLS outputs remux it (``mux_hls``)."""
    buf = io.BytesIO()
    frame_size = frame_size or (1152 if codec == "mp3" else 1024)
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        if bitrate is not None:
            stream.bit_rate = bitrate
        for start in range(0, len(pcm), frame_size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[start : start + frame_size].T), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def mux_hls(encoded: bytes, container: str, playlist: Path, options: dict) -> None:
    """FFmpeg's HLS muxer writes ``playlist`` and its segments from ``encoded`` (the packets
    of its ``container``, remuxed as they are)."""
    with av.open(io.BytesIO(encoded), format=container) as source:
        audio = source.streams.audio[0]
        with av.open(str(playlist), "w", format="hls", options=options) as out:
            stream = out.add_stream_from_template(audio)
            for packet in source.demux(audio):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = stream
                out.mux(packet)


def _encode_aac(bitrate: int, pcm: np.ndarray) -> bytes:
    """The signal as AAC in an in-memory MP4, once per bitrate; the HLS outputs remux it."""
    return encode(pcm, SAMPLE_RATE, bitrate=bitrate)


def _write_hls(directory: Path, aac: bytes, options: dict, ext: str) -> None:
    """FFmpeg's HLS muxer writes ``directory/index.m3u8`` and its segments from ``aac``."""
    directory.mkdir(parents=True, exist_ok=True)
    opts = {"hls_time": str(HLS_TIME), "hls_playlist_type": "vod", "hls_list_size": "0", **options}
    if "single_file" not in opts.get("hls_flags", ""):
        opts.setdefault("hls_segment_filename", str(directory / f"seg%03d.{ext}"))
    mux_hls(aac, "mp4", directory / "index.m3u8", opts)


def _master(path: Path, order: tuple, codecs: str) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for index in order:
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={BITRATES[index] + 8000},CODECS="{codecs}"')
        lines.append(f"v{index}/index.m3u8")
    path.write_text("\n".join(lines) + "\n")


#: The master lists the middle variant first: RFC 8216 makes the first the client's start.
MASTER_ORDER = (1, 0, 2)


def make_hls_media(directory: Path) -> HlsMedia:
    pcm = signal(SECONDS, SAMPLE_RATE).astype(np.float32)
    encoded = [_encode_aac(bitrate, pcm) for bitrate in BITRATES]
    fmp4 = {"hls_segment_type": "fmp4", "hls_fmp4_init_filename": "init.mp4"}
    for index, aac in enumerate(encoded):
        _write_hls(directory / "ts" / f"v{index}", aac, {"hls_segment_type": "mpegts"}, "ts")
        _write_hls(directory / "fmp4" / f"v{index}", aac, fmp4, "m4s")
        # Half-second segments: 4-19 KB each, mostly below one throughput sample.
        _write_hls(directory / "short" / f"v{index}", aac, {"hls_segment_type": "mpegts", "hls_time": "0.5"}, "ts")
    _master(directory / "ts" / "master.m3u8", MASTER_ORDER, "mp4a.40.2")
    _master(directory / "fmp4" / "master.m3u8", MASTER_ORDER, "mp4a.40.2")
    _master(directory / "short" / "master.m3u8", MASTER_ORDER, "mp4a.40.2")
    single = {"hls_flags": "single_file"}
    _write_hls(directory / "single_ts", encoded[1], {**single, "hls_segment_type": "mpegts"}, "ts")
    _write_hls(directory / "single_fmp4", encoded[1], {**single, **fmp4}, "m4s")
    target = directory / "aes"
    target.mkdir(parents=True, exist_ok=True)
    (target / "key.bin").write_bytes(KEY)
    info = target / "key.info"  # URI written into the playlist, local key path, IV
    info.write_text(f"key.bin\n{target / 'key.bin'}\n{KEY_IV.hex()}\n")
    _write_hls(target, encoded[1], {"hls_segment_type": "mpegts", "hls_key_info_file": str(info)}, "ts")
    live = directory / "live"  # 1 s segments; the live server serves a moving window of them
    _write_hls(live, encoded[1], {"hls_segment_type": "mpegts", "hls_time": "1"}, "ts")
    (live / "index.m3u8").rename(live / "source.m3u8")
    return HlsMedia(directory)
