"""The redirect loop of every request: each ``Location`` resolved against the URL that
answered it (RFC 9110; a playlist's segment URIs then resolve against the final URL), at most
``max_redirects`` hops, only to http(s). The headers of each hop are the policy's for that
hop's URL, so credentials never follow a redirect to another origin; cookies a hop sets are
sent on the next."""

from __future__ import annotations

import urllib.parse
from typing import Callable, List

import urllib3

from ..errors import InvalidResponseError
from .response import Response

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class TooManyRedirectsError(InvalidResponseError):
    """More redirects than ``max_redirects`` (with 0: any redirect)."""


_DRAIN = 64 * 1024  # a redirect's body is read up to this to keep the connection, else dropped


def resolve(answered: str, location: str) -> str:
    """``location`` against the URL that answered; InvalidResponseError if it is not an
    http(s) URL that can be fetched."""
    try:
        target = urllib.parse.urljoin(answered, location.strip())
        parsed = urllib3.util.parse_url(target)
        port = parsed.port
    except (ValueError, urllib3.exceptions.LocationParseError) as exc:
        raise InvalidResponseError("redirected to a URL that cannot be fetched", url=answered, cause=exc) from None
    if (
        (parsed.scheme or "").lower() not in ("http", "https")
        or not parsed.host
        or (port is not None and not 0 < port < 65536)
    ):
        raise InvalidResponseError(f"redirected to a URL that cannot be fetched: {target}", url=answered)
    return target


def follow(send: Callable[[str], Response], url: str, max_redirects: int, *, keep: bool = True) -> Response:
    """``send(url)`` and then each redirect's target, until an answer that is no redirect.
    ``keep`` False: a redirect's connection is closed, never given back to the pool (an abort
    handle that saw it must not reach it once another request uses it)."""
    history: List[str] = []
    for _ in range(max_redirects + 1):
        response = send(url)
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or not location:
            response.history = history
            return response
        try:
            target = resolve(response.url, location)
        finally:
            _discard(response, keep)
        history.append(url)
        url = target
    raise TooManyRedirectsError(
        f"too many redirects (more than {max_redirects})",
        url=history[0] if history else url,
    )


def _discard(response: Response, keep: bool) -> None:
    """Finish with a redirect: keep its connection if its body is small, else drop it."""
    if not keep:
        response.close()
        return
    try:
        for _ in range(4):
            if not response.read1(_DRAIN):
                break
        response.release_conn()
    except (OSError, Exception):  # noqa: BLE001 - a broken redirect body only costs the connection
        response.close()


__all__ = ["REDIRECT_STATUSES", "follow", "resolve"]
