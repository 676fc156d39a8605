"""Fetching and parsing a playlist, with retries: the first one, and media playlists when a
variant is chosen or a live playlist is reloaded."""

from __future__ import annotations

import threading
from typing import Optional, Tuple, Union

from ...errors import InvalidResponseError
from ...retry import Retry
from .playlist import MediaPlaylist, looks_like_playlist, parse_playlist
from .transport import Transport, with_retries

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
