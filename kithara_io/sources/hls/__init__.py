"""HLS (RFC 8216): a master or media playlist read as one continuous byte stream.

``kithara_io.open(url)`` hands HLS playlists here (see :mod:`.loading`); ``stream.hls`` is an
:class:`HlsInfo`. Modules: ``playlist`` (m3u8 -> data), ``layout`` (segment offsets),
``keys`` (AES-128), ``abr`` (throughput and variant choice), ``transport`` (over kithara_io.net),
``fetch`` (one part's bytes), ``store`` (a part's bytes), ``reader`` (the HlsReader),
``live`` (playlist reloads).
"""

from __future__ import annotations

from .info import HlsInfo, SegmentInfo
from .playlist import Variant, looks_like_playlist

__all__ = ["HlsInfo", "SegmentInfo", "Variant", "looks_like_playlist"]
