"""How ``kithara_io.open`` finds MPEG-DASH: by the URL (``.mpd``), or by the first bytes of a
small resource (an XML document whose root is ``MPD``, or the ``application/dash+xml``
content type). Light on purpose: the dash package (defusedxml, isodate) is imported only
to open an MPD (``api._open_dash``), and it imports this module, never the reverse."""

from __future__ import annotations

import re
import urllib.parse
from typing import Optional

__all__ = ["is_mpd_url", "looks_like_mpd", "sniff", "sniff_file"]

_SNIFF_LIMIT = 1 << 20  # MPDs are small: a larger resource is not sniffed
_HEAD = 4096
_SPACE = b"\xef\xbb\xbf \t\r\n"  # a UTF-8 BOM and white space before the root
_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?MPD[\s>/]")
#: Content types that name an MPD (kept here: the dash package is imported on first use).
MPD_TYPES = frozenset({"application/dash+xml"})


def is_mpd_url(url: str) -> bool:
    """An http(s) URL whose path ends in ``.mpd`` (its answer is still checked)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and parts.path.lower().endswith(".mpd")


def is_mpd_type(content_type: Optional[str]) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in MPD_TYPES


def looks_like_mpd(content_type: Optional[str], head: bytes) -> bool:
    """Is this an MPD? A body whose root element is ``MPD`` (after an XML declaration and
    comments), whatever the content type; or the DASH content type with an XML body."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"<") and (_ROOT.search(text[:_HEAD]) is not None or is_mpd_type(content_type))


def sniff(reader, content_type: Optional[str] = None) -> Optional[str]:
    """The MPD text if an opened resource of another name is one, else None."""
    size = reader.size
    if size is None or not 5 <= size <= _SNIFF_LIMIT:
        return None
    # Most resources are told apart by their first 8 bytes, which the open's first request
    # brought (fsspec's probe asks for 16): a request of its own only for what may be XML.
    first = reader.read_bytes(0, 8).lstrip(_SPACE)
    if first and not first.startswith(b"<"):
        return None
    if not reader.read_bytes(0, 64).lstrip(_SPACE).startswith(b"<"):
        return None
    if not looks_like_mpd(content_type, reader.read_bytes(0, min(size, _HEAD))):
        return None
    return reader.read_bytes(0, size).decode("utf-8-sig", errors="replace")


def sniff_file(stream, content_type: Optional[str] = None) -> Optional[str]:
    """The same for a file whose length is not known yet; the stream is put back at 0 when
    it is not an MPD."""
    head = stream.read(64)
    if head and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):  # else not XML: one small read
        head += stream.read(_HEAD - len(head))
    if head and looks_like_mpd(content_type, head):
        data = head + stream.read(_SNIFF_LIMIT)
        if len(data) <= _SNIFF_LIMIT:
            return data.decode("utf-8-sig", errors="replace")
    stream.seek(0)
    return None
