"""URL pieces every module of the network layer needs: origins, userinfo, request targets."""

from __future__ import annotations

import functools
import urllib.parse
from typing import Tuple

import urllib3

Origin = Tuple[str, str, int]


@functools.lru_cache(maxsize=512)  # a stream asks the same few URLs over and over
def origin(url: str) -> Origin:
    """``(scheme, host, port)`` of ``url``, the port made explicit: what credentials are
    given for (never sent to another origin)."""
    parsed = urllib3.util.parse_url(url)
    scheme = (parsed.scheme or "http").lower()
    return (
        scheme,
        (parsed.host or "").lower(),
        parsed.port or (443 if scheme == "https" else 80),
    )


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (what goes on the wire and into a cookie jar)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@functools.lru_cache(maxsize=512)
def request_target(url: str) -> str:
    """The path and query of ``url`` (``/`` if none), as a request line carries it."""
    return urllib3.util.parse_url(url).request_uri


__all__ = ["Origin", "origin", "request_target", "without_userinfo"]
