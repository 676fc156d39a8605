"""Station playlists: the ``.pls`` and ``.m3u`` files radio directories hand out.

Such a playlist is a short text list of stream URLs (mirrors of one station), not an HLS
playlist: a text with ``#EXT-X-`` tags is left alone (None). :func:`resolve` tries the
entries in order and returns the first stream that answers. Pure code apart from the
``open_entry`` callable it is given.

The same files list tracks too: ``kithara-io play list.m3u`` plays every entry in turn
(:func:`kind_by_name` tells a playlist by its name, ``.m3u``, ``.m3u8`` or ``.pls``); a
playlist known by its Content-Type only is a station's, opened at its first working entry.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Callable, List, Optional, TypeVar

import urllib3

from ...errors import InvalidResponseError, StreamError
from ...headers import decimal

T = TypeVar("T")

#: Largest playlist read: a station list is a few hundred bytes.
MAX_PLAYLIST_BYTES = 64 * 1024

_PLS_TYPES = {"audio/x-scpls", "application/pls+xml", "audio/scpls"}
_M3U_TYPES = {"audio/x-mpegurl", "audio/mpegurl"}
_PLS_FILE = re.compile(r"^\s*file([0-9]+)\s*=\s*(.+?)\s*$", re.I)


PLAYLIST_SUFFIXES = {".pls": "pls", ".m3u": "m3u", ".m3u8": "m3u"}


def kind_by_name(name: str) -> Optional[str]:
    """``"pls"``/``"m3u"`` when a path or URL's path ends like a playlist (an ``.m3u8`` may
    still be HLS: :func:`parse_playlist` tells), else None."""
    path = urllib.parse.urlsplit(name).path if "://" in name else name
    for suffix, kind in PLAYLIST_SUFFIXES.items():
        if path.lower().endswith(suffix):
            return kind
    return None


def playlist_kind(url: str, content_type: Optional[str]) -> Optional[str]:
    """``"pls"`` or ``"m3u"`` when a response is (probably) a station playlist, by its
    Content-Type or, for the generic types servers use, the extension of its URL path."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _PLS_TYPES:
        return "pls"
    if ctype in _M3U_TYPES:
        return "m3u"
    path = urllib.parse.urlsplit(url).path.lower()
    if ctype in ("", "text/plain", "application/octet-stream", "audio/x-mpegurl"):
        if path.endswith(".pls"):
            return "pls"
        if path.endswith(".m3u"):
            return "m3u"
    return None


def parse_playlist(text: str, base_url: str, kind: Optional[str] = None) -> Optional[List[str]]:
    """The stream URLs of a station playlist, in order, relative ones resolved against
    ``base_url``; None when ``text`` is an HLS playlist (``#EXT-X-`` tags) or lists nothing.
    ``kind`` (``"pls"``/``"m3u"``) is a hint; the text itself decides. Entries that are not
    http(s) URLs with a host (``rtsp:``, malformed; local files in a remote playlist) are
    left out; if that leaves
    none of several, InvalidResponseError (the playlist names no stream this library reads)."""
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    if any(line.lstrip().upper().startswith("#EXT-X-") for line in lines):
        return None
    is_pls = kind == "pls" or any(line.strip().lower() == "[playlist]" for line in lines)
    entries = _pls_entries(lines) if is_pls else _m3u_entries(lines)
    urls = [url for url in (_absolute(base_url, entry) for entry in entries) if url is not None]
    if entries and not urls:
        raise InvalidResponseError(
            f"station playlist names no http(s) stream (first entry {entries[0][:100]!r})", url=base_url
        )
    return urls or None


def _absolute(base_url: str, entry: str) -> Optional[str]:
    """``entry`` resolved against ``base_url`` if that gives an http(s) URL with a host
    and a valid port (what ``open`` accepts) other than the playlist's own, else None. A
    local playlist (a path or ``file:`` URL) may also name local files; a remote one never
    does (a web page must not make us read this machine's files)."""
    try:
        url = urllib.parse.urljoin(base_url, entry)
        parsed = urllib3.util.parse_url(url)
        port = parsed.port
    except (ValueError, urllib3.exceptions.LocationParseError):
        return None
    local = (urllib.parse.urlsplit(base_url).scheme or "file").lower() == "file"
    if local and (parsed.scheme or "file").lower() == "file" and url != base_url:
        return url
    if (parsed.scheme or "").lower() not in ("http", "https") or not parsed.host or url == base_url:
        return None  # url == base_url: an entry of control characters only, urljoin's ""
    return url if port is None or 0 < port < 65536 else None


def _pls_entries(lines: List[str]) -> List[str]:
    numbered = []
    for line in lines:
        match = _PLS_FILE.match(line)
        if match:
            numbered.append((decimal(match.group(1)) or 0, match.group(2)))  # digits: never None
    return [url for _, url in sorted(numbered, key=lambda item: item[0])]


def _m3u_entries(lines: List[str]) -> List[str]:
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def read_playlist(stream, url: str, content_type: Optional[str], kind: Optional[str] = None) -> Optional[List[str]]:
    """The entries of ``stream`` when it is a station playlist (by Content-Type or URL, or
    ``kind`` when the caller knows), else None with ``stream`` rewound when it can be
    (nothing read when it is not one)."""
    kind = kind or playlist_kind(url, content_type)
    if kind is None:
        return None
    data = bytearray()
    while len(data) <= MAX_PLAYLIST_BYTES:
        chunk = stream.read(MAX_PLAYLIST_BYTES + 1 - len(data))
        if not chunk:
            break
        data += chunk
    urls = None
    if len(data) <= MAX_PLAYLIST_BYTES:
        try:
            urls = parse_playlist(bytes(data).decode("utf-8"), url, kind)
        except UnicodeDecodeError:
            urls = None  # not text: a stream served under a playlist's name
    if urls is None and stream.seekable():
        stream.seek(0)
    return urls


def resolve(playlist_url: str, urls: List[str], open_entry: Callable[[str], T]) -> T:
    """``open_entry(url)`` for each entry in turn; the first that returns wins. If every
    entry fails, a StreamError naming the playlist, with the last entry's failure as cause."""
    last: Optional[BaseException] = None
    for url in urls:
        try:
            return open_entry(url)
        except StreamError as exc:
            last = exc
    raise StreamError(
        f"none of the {len(urls)} stream(s) of the station playlist answered", url=playlist_url, cause=last
    )


__all__ = ["MAX_PLAYLIST_BYTES", "kind_by_name", "parse_playlist", "playlist_kind", "read_playlist", "resolve"]
