"""How ``kithara_io.open`` finds HLS: by the URL, or by the first bytes of a small resource."""

from __future__ import annotations

import urllib.parse
from typing import Optional

from ..extras import require

__all__ = ["is_playlist_url", "open_hls", "sniff", "sniff_file"]

_SNIFF_LIMIT = 1 << 20  # playlists are small: a larger resource is not sniffed


def open_hls(*args, **kwargs):
    """:func:`.hls.loading.open_hls`, imported on first use: m3u8 and cryptography cost
    ~14 MB of resident memory and their import time in every process that never opens HLS."""
    require("hls", "HLS streams", "m3u8", "cryptography")
    from .hls.loading import open_hls as open_playlist

    return open_playlist(*args, **kwargs)


def is_playlist_url(url: str) -> bool:
    """An http(s) URL whose path ends in ``.m3u8`` (its answer is still checked)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and parts.path.lower().endswith(".m3u8")


def sniff(reader) -> Optional[str]:
    """The playlist text if an opened resource of another name is an HLS playlist
    (``#EXTM3U`` with ``#EXT-X-`` tags), else None. Costs one read of its first bytes."""
    size = reader.size
    if size is None or not 7 <= size <= _SNIFF_LIMIT:
        return None
    if not reader.read_bytes(0, 7) == b"#EXTM3U":
        return None
    from .hls.playlist import looks_like_playlist

    data = reader.read_bytes(0, size)
    if not looks_like_playlist(None, data[:4096]):
        return None
    return data.decode("utf-8-sig", errors="replace")


def sniff_file(stream) -> Optional[str]:
    """The same for a file whose length is not known yet (a chunked answer): its first
    bytes are read (at most the sniff limit, and only past ``#EXTM3U``), then the stream is
    put back at 0 when it is not a playlist."""
    head = stream.read(7)
    if head == b"#EXTM3U":
        data = head + stream.read(_SNIFF_LIMIT)
        from .hls.playlist import looks_like_playlist

        if len(data) <= _SNIFF_LIMIT and looks_like_playlist(None, data[:4096]):
            return data.decode("utf-8-sig", errors="replace")
    stream.seek(0)
    return None
