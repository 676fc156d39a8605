"""What an HTTP answer may be trusted for, decided from its status line and headers (pure).

``HttpSource`` checks every answer with these before a byte is stored: the encodings (only
the stored bytes), a ``Content-Range`` that contradicts itself, a ``200`` to a range request
that may hold only the range, and the file name a ``Content-Disposition`` suggests.
"""

from __future__ import annotations

import email.message
from typing import Mapping, Optional, Tuple

import urllib3

from ..errors import InvalidResponseError
from ..headers import content_coding, content_length
from .live.icy import is_station
from .transport import Answer


def disposition_filename(header: Optional[str]) -> Optional[str]:
    """The ``filename`` (or RFC 6266 ``filename*``) of a Content-Disposition header, as sent:
    it may hold a path or ``..``; whoever writes a file under it must check it."""
    if not header:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = header
    try:
        name = message.get_filename()
    except (ValueError, LookupError):  # a malformed RFC 2231 value or unknown charset
        return None
    return name or None


def check_encodings(answer: Answer, span: tuple) -> None:
    """Only the stored bytes are kept: identity content, or an encoding the file itself has
    (a ``.gz`` that werkzeug, Flask or twisted label ``Content-Encoding: gzip``); compression
    applied on the fly is refused. Only plain chunked framing is read."""
    url = answer.url
    encoding = content_coding(answer.headers.get("Content-Encoding"))
    if encoding != "identity" and not path_ends(url, STORED_SUFFIXES.get(encoding, ())):
        raise InvalidResponseError(
            f"server sent Content-Encoding {encoding!r} although identity was asked", url=url, byte_range=span
        )
    if "icy-metaint" in answer.headers and (answer.status == 206 or answer_length(answer) is not None):
        # Metadata interleaved every N bytes of a file with a length: its offsets would not
        # be the file's. Only a live answer (no length) is demuxed, by the live reader.
        raise InvalidResponseError(
            "server interleaves ICY metadata in a file of known length", url=url, byte_range=span
        )
    transfer = answer.headers.get("Transfer-Encoding")
    if transfer is not None and transfer.strip().lower() not in ("", "chunked"):
        raise InvalidResponseError(
            f"server sent an unsupported Transfer-Encoding {transfer!r}", url=url, byte_range=span
        )


STORED_SUFFIXES = {
    "gzip": (".gz", ".tgz"),
    "x-gzip": (".gz", ".tgz"),
    "bzip2": (".bz2",),
    "x-bzip2": (".bz2",),
    "xz": (".xz",),
    "br": (".br",),
    "zstd": (".zst",),
    "compress": (".z",),
}


def is_html_page(headers: Mapping[str, str], url: str) -> bool:
    """An HTML page answering for a URL that does not name one: an error page or a captive
    portal's sign-in page, never the media asked for."""
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type == "text/html" and not path_ends(url, (".html", ".htm", ".xhtml"))


def path_ends(url: str, suffixes: Tuple[str, ...]) -> bool:
    path = (urllib3.util.parse_url(url).path or "").lower()
    return bool(suffixes) and path.endswith(suffixes)


def check_content_range(
    header: str, first: int, last: int, total: Optional[int], url: str, span: Optional[tuple]
) -> None:
    """A Content-Range that contradicts itself is refused with what is wrong in it."""
    if last < first:
        raise InvalidResponseError(
            f"Content-Range {header!r}: last byte {last} is before the first {first}", url=url, byte_range=span
        )
    if total is not None and last >= total:
        raise InvalidResponseError(
            f"Content-Range {header!r}: last byte {last} is past the total length {total}", url=url, byte_range=span
        )


def may_be_a_slice(answer: Answer, start: int, end: Optional[int]) -> bool:
    """Whether a 200 to ``Range: bytes=start-(end-1)`` may hold only the bytes asked rather
    than the whole resource from byte 0 (it does if its length is at most the range's, or
    unknown). A station's answer is a live stream, never a slice."""
    length = answer_length(answer)
    if start == 0:
        return end is not None and (length is None or length == end) and not is_station(answer.headers)
    return (length is None or end is None or length <= end - start) and not is_station(answer.headers)


def answer_length(answer: Answer) -> Optional[int]:
    return content_length(answer.headers.get("Content-Length"))


__all__ = [
    "answer_length",
    "check_content_range",
    "check_encodings",
    "disposition_filename",
    "is_html_page",
    "may_be_a_slice",
    "path_ends",
]
