"""Building an HlsReader from the first playlist (fetched and parsed by :mod:`.load`)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Tuple

from ...disk import DiskCache
from ...engine.downloader import Downloader
from ...errors import InvalidResponseError
from ...events import Event
from ...options import StreamOptions
from ...reading.planning import Priority
from .abr import initial_variant
from .load import First, VariantChoice, load, load_media, stream_transport
from .playlist import MasterPlaylist, Rendition, Variant, looks_like_playlist, parse_playlist
from .reader import HlsReader
from .renditions import audio_variants


def open_hls(
    url: str,
    *,
    variant: VariantChoice = "auto",
    headers: Optional[Mapping[str, str]] = None,
    priority: Priority = Priority.HIGH,
    downloader: Downloader,
    on_event: Optional[Callable[[Event], None]] = None,
    options: StreamOptions,
    first: Optional[First] = None,
    cache: Optional[DiskCache] = None,
    audio: Optional[str] = None,
) -> HlsReader:
    """An opened HlsReader for the playlist at ``url`` (``first``: its text, already fetched;
    ``cache``: keep playlists and segments on disk; ``audio``: the language or name of the
    audio rendition to read, see :mod:`.renditions`).
    Raises a StreamError if it is not an HLS playlist or cannot be read."""
    transport, deadline = stream_transport(url, headers, options, cache)  # Timeout.open: retries stop at deadline
    try:
        text, content_type, final = first if first is not None else load(transport, url, options.retry, deadline)
        if not looks_like_playlist(content_type, text[:4096].encode()):
            raise InvalidResponseError("not an HLS playlist", url=url)
        parsed = parse_playlist(text, final)
        renditions: Tuple[Rendition, ...] = ()
        reading: Tuple[Optional[Rendition], ...] = ()
        if isinstance(parsed, MasterPlaylist):
            renditions = parsed.renditions
            variants, reading = audio_variants(parsed.variants, renditions, audio)
            index = initial_variant([v.bandwidth for v in variants], variant)
            auto = variant == "auto"
            wanted = range(len(variants)) if auto else [index]
            media = {i: load_media(transport, variants[i].uri, options.retry, deadline) for i in wanted}
            if parsed.start is not None:  # EXT-X-START of the master: for media playlists without their own
                media = {
                    i: m if m.start is not None else dataclasses.replace(m, start=parsed.start)
                    for i, m in media.items()
                }
        else:
            if audio is not None:
                raise ValueError(f"audio={audio!r}: a media playlist has no audio renditions to choose from")
            variants = (Variant(0, None, final),)
            index = initial_variant([0], variant)
            media, auto = {0: parsed}, False
        reader = HlsReader(url, variants, media, index, auto, transport, downloader, options, priority)
        reader.renditions, reader.reading = renditions, reading
    except BaseException:
        transport.close()
        raise
    if on_event is not None:
        reader.events.subscribe(on_event)
    reader.open()
    return reader
