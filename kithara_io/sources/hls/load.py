"""Fetching and parsing a playlist, with retries: the first one, and media playlists when a
variant is chosen or a live playlist is reloaded."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Mapping, Optional, Tuple, Union

from ...errors import InvalidResponseError
from ...retry import Retry
from .disk import DiskTransport
from .playlist import MediaPlaylist, looks_like_playlist, parse_playlist
from .transport import Transport, with_retries

if TYPE_CHECKING:
    from ...disk import DiskCache
    from ...options import StreamOptions

First = Tuple[str, Optional[str], str]  # (text, content type, final URL)
VariantChoice = Union[str, int]


def load(transport: Transport, url: str, retry: Retry, deadline: Optional[float] = None) -> First:
    return with_retries(lambda: transport.text(url), retry, threading.Event(), deadline)


def load_media(transport: Transport, url: str, retry: Retry, deadline: Optional[float] = None) -> MediaPlaylist:
    text, content_type, final = load(transport, url, retry, deadline)
    if not looks_like_playlist(content_type, text[:4096].encode()):
        raise InvalidResponseError("variant URI does not answer with an HLS playlist", url=url)
    playlist = parse_playlist(text, final)
    if not isinstance(playlist, MediaPlaylist):
        raise InvalidResponseError("a variant of the master playlist is itself a master playlist", url=url)
    return playlist


def stream_transport(
    url: str, headers: Optional[Mapping[str, str]], options: "StreamOptions", cache: "Optional[DiskCache]"
) -> Tuple[Transport, Optional[float]]:
    """The transport of one stream opened at ``url`` (through the disk cache when given), and
    the deadline ``Timeout.open`` sets for the requests of the open (None: no bound)."""
    transport: Transport
    if cache is not None:
        transport = DiskTransport(
            cache, headers, options.timeout, options.verify, options.max_redirects, options.cert, url
        )
    else:
        transport = Transport(headers, options.timeout, options.verify, options.max_redirects, options.cert, url)
    limit = options.timeout.open
    return transport, None if limit is None else time.monotonic() + limit
