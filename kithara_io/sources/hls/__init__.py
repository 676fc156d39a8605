"""HLS (RFC 8216): a master or media playlist read as one continuous byte stream.

``kithara_io.open(url)`` hands HLS playlists here (see :mod:`.loading`); ``stream.hls`` is an
:class:`HlsInfo`. Modules: ``playlist`` (m3u8 -> data), ``layout`` (segment offsets),
``keys`` (AES-128), ``abr`` (throughput and variant choice), ``transport`` (over kithara_io.net),
``fetch`` (one part's bytes), ``store`` (a part's bytes), ``reader`` (the HlsReader),
``live`` (playlist reloads).

Importing this package imports none of them: ``kithara_io.HlsKeys`` (``keyhook``) is there
without the ``hls`` extra (m3u8, cryptography), which opening an HLS stream needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HlsInfo", "SegmentInfo", "Variant", "looks_like_playlist"]


def __getattr__(name: str) -> Any:  # PEP 562: the public names, imported on first use
    if name in ("HlsInfo", "SegmentInfo"):
        from . import info

        return getattr(info, name)
    if name in ("Variant", "looks_like_playlist"):
        from . import playlist

        return getattr(playlist, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
