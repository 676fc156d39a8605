"""``kithara_io.open``: the front door."""

from __future__ import annotations

import logging
import os
from typing import Callable, List, Mapping, Optional, Union

import urllib3

from .disk import DiskCache, default_disk_cache
from .engine.default import default_downloader
from .engine.downloader import Downloader
from .errors import InvalidResponseError, StreamError
from .events import Event
from .options import StreamOptions
from .reading.planning import Priority
from .reading.remote import RemoteReader
from .sources import dash_entry as _dash_entry
from .sources import hls_entry as hls
from .sources import stores
from .sources.base import Source
from .sources.cached import DiskCachedSource
from .sources.file import LocalFileReader, path_from_source
from .sources.http import HttpSource
from .sources.live.opening import HandedBody, local_stream_fd, open_pipe, open_url
from .sources.live.stations import kind_by_name, read_playlist, resolve
from .stream import Stream

log = logging.getLogger(__name__)

MAX_PLAYLIST_DEPTH = 2  # a playlist may name a playlist, once


def open(  # noqa: A001 - mirrors builtins.open on purpose
    source: Union[str, os.PathLike],
    *,
    headers: Optional[Mapping[str, str]] = None,
    priority: Union[str, Priority] = "high",
    downloader: Optional[Downloader] = None,
    on_event: Optional[Callable[[Event], None]] = None,
    cache: Union[None, str, DiskCache] = None,
    variant: Union[str, int] = "auto",
    audio: Optional[str] = None,
    storage_options: Optional[Mapping[str, object]] = None,
    **options,
) -> Stream:
    """Open an http(s) URL, a ``file://`` URL, a local path or an object of an object store
    (``s3://``, ``gs://``, ``az://``, ``abfs://``) as a seekable binary file.

    A source without a known length gives a :class:`~kithara_io.sources.live.stream.LiveStream`; ``open``
    returns once its first bytes are in. A radio station (``icy-*`` headers), a FIFO or ``-``
    (stdin) is not seekable and ``size`` is None; any other HTTP response without a length
    is a file whose length comes at its end: seekable, ``size`` None until then.

    Blocks until the total length is known (the first response); raises a
    :class:`~kithara_io.StreamError` naming the URL and the cause if the resource cannot be
    read. ``options`` are the fields of :class:`~kithara_io.options.StreamOptions`.

    ``cache="disk"`` (the user cache directory) or a :class:`~kithara_io.disk.DiskCache`
    keeps the fetched bytes on disk: a later open serves them without the network after one
    revalidation request, and offline when the server cannot be reached.

    An HLS playlist (master or media) opens as the byte stream of its media: ``variant``
    is ``"auto"`` (adaptive), ``"lowest"``, ``"highest"`` or the index of a variant in the
    master playlist; ``audio`` the language or name of the audio rendition to read where
    the audio is apart from the video (``#EXT-X-MEDIA``); ``stream.hls`` tells the variants,
    renditions and segments (see the HLS guide); the option ``live_start`` (``"edge"``,
    ``"start"``, ``"playlist"`` or seconds) where it starts in its media playlist.

    An object store's credentials and endpoint come from where its users keep them (the
    AWS variables and files, ``GOOGLE_APPLICATION_CREDENTIALS``, the Azure connection
    string...) or from ``storage_options`` with fsspec's names (``key``, ``secret``,
    ``endpoint_url``, ``anon``...: see :mod:`kithara_io.sources.stores`).
    """
    name = os.fspath(source)
    try:
        opts = StreamOptions(**options)
    except TypeError:
        unknown = sorted(set(options) - set(StreamOptions.names()))
        raise TypeError(f"unknown option(s) {unknown}; valid: {StreamOptions.names()}") from None
    stream_priority = Priority.parse(priority)
    disk = _disk_cache(cache)
    if stores.is_store_url(name):
        return _open_store(name, headers, opts, stream_priority, downloader, on_event, disk, storage_options)
    if storage_options:
        raise TypeError(f"storage_options are for object store URLs (s3://, gs://, az://), not {name!r}")
    # Radio servers send titles in the stream only when asked; other servers ignore it.
    headers = {"Icy-MetaData": "1", **dict(headers or {})}
    path = path_from_source(name)
    if path is not None:
        fd = local_stream_fd(path)
        if fd is not None:  # a FIFO, stdin ("-") or a device: read like a live stream
            return open_pipe(name, fd, options=opts, priority=stream_priority, on_event=on_event)
        local = LocalFileReader(path)
        local.set_priority(stream_priority)
        if on_event is not None:
            local.events.subscribe(on_event)
        return Stream(local, name)
    return _open_remote(name, headers, opts, stream_priority, downloader, on_event, disk, (variant, audio), depth=0)


def _open_remote(name, headers, opts, priority, downloader, on_event, disk, choice, depth: int) -> Stream:
    """An http(s) stream; a station playlist (.pls/.m3u) opens its first entry that answers."""
    stream = _open_http(name, headers, opts, priority, downloader, on_event, disk, choice)
    if depth >= MAX_PLAYLIST_DEPTH or stream.hls is not None:
        return stream
    try:
        urls = read_playlist(stream, name, getattr(stream, "content_type", None))
    except BaseException:
        stream.close()
        raise
    if urls is None:
        return stream
    stream.close()
    log.info("station playlist %s: %d entries", name, len(urls))
    return resolve(
        name,
        urls,
        lambda url: _open_remote(url, headers, opts, priority, downloader, on_event, disk, choice, depth + 1),
    )


def playlist_entries(source: Union[str, os.PathLike], **options) -> Optional[List[str]]:
    """The entries of a playlist of tracks (``.m3u``, ``.m3u8`` without HLS tags, ``.pls``;
    a path or an http(s) URL) in order, relative ones resolved against it; None when
    ``source`` is not named like one or is HLS. ``options``: those of :func:`open`. Raises a
    StreamError when it cannot be read."""
    name = os.fspath(source)
    kind = kind_by_name(name)
    if kind is None:
        return None
    path = path_from_source(name)
    if path is not None:
        with open(path) as stream:  # local: a Stream over the file, errors in the user's terms
            return read_playlist(stream, path, None, kind)
    headers = {"Icy-MetaData": "1", **dict(options.pop("headers", None) or {})}
    priority = Priority.parse(options.pop("priority", "high"))
    downloader = options.pop("downloader", None)
    options.pop("variant", None)
    options.pop("audio", None)
    disk = _disk_cache(options.pop("cache", None))
    options.pop("on_event", None)
    opts = StreamOptions(**options)
    with _open_http(name, headers, opts, priority, downloader, None, disk, ("auto", None), hls_by_name=False) as stream:
        if stream.hls is not None:
            return None
        return read_playlist(stream, name, getattr(stream, "content_type", None), kind)


def _open_http(name, headers, opts, priority, downloader, on_event, disk, choice, hls_by_name=True) -> Stream:
    """``choice``: the ``(variant, audio)`` of an HLS playlist."""
    _check_http_url(name)
    if hls_by_name and hls.is_playlist_url(name):
        return _open_hls(name, None, headers, priority, downloader, on_event, disk, choice, opts)
    if hls_by_name and _dash_entry.is_mpd_url(name):
        return _open_hls(name, None, headers, priority, downloader, on_event, disk, choice, opts, dash=True)
    http = HttpSource(
        name,
        headers=headers,
        timeout=opts.timeout,
        verify=opts.verify,
        cert=opts.cert,
        max_redirects=opts.max_redirects,
    )
    source: Source = http
    if disk is not None:
        try:
            source = DiskCachedSource(http, disk.open_entry(name))
        except OSError as exc:  # like a disk that fails later: no caching, but the stream works
            log.warning("disk cache: not caching %s: %s", name, exc)
        except BaseException:
            http.close()
            raise
    reader = RemoteReader(source, downloader or default_downloader(), opts, priority)
    if on_event is not None:  # before open(): the first fetch's events are seen too
        reader.events.subscribe(on_event)
    handed = reader.open()
    if handed is None:
        mpd = None
        try:
            playlist = hls.sniff(reader)
            mpd = _dash_entry.sniff(reader) if playlist is None else None
        except StreamError:  # stored by the reader: the caller's first read raises it, as without HLS
            playlist = None
        except BaseException:
            reader.close()
            raise
        if playlist is not None or mpd is not None:  # HLS or DASH behind a URL that does not say so
            reader.close()
            # Its URIs are relative to the URL that answered, after redirects (RFC 8216).
            fetched = (playlist or mpd, None, http.final_url)
            return _open_hls(
                name, fetched, headers, priority, downloader, on_event, disk, choice, opts, dash=mpd is not None
            )
        return Stream(reader, name)
    # No length: a radio station or a file without one. Read by a live reader of its own.
    body, abort = handed
    first = None
    if HandedBody.fits(body):
        first = HandedBody(body, abort)
    else:  # another source's body: ask again, as a listener
        body.close()
    final = first.url if first is not None else name
    stream = open_url(name, headers=headers, options=opts, priority=priority, on_event=on_event, first=first)
    if not stream.seekable():  # a station
        return stream
    mpd = None
    try:
        playlist = hls.sniff_file(stream)  # dynamic APIs serve playlists chunked
        if playlist is None:
            mpd = _dash_entry.sniff_file(stream, stream.content_type)
    except BaseException:
        stream.close()
        raise
    if playlist is None and mpd is None:
        return stream
    stream.close()
    return _open_hls(
        name,
        (playlist or mpd, None, final),
        headers,
        priority,
        downloader,
        on_event,
        disk,
        choice,
        opts,
        dash=mpd is not None,
    )


def _open_store(name, headers, opts, priority, downloader, on_event, disk, storage_options) -> Stream:
    """An object of an object store: signed range requests to its endpoint, through the
    same engine (and disk cache, keyed by the endpoint URL less its query) as an http(s) URL."""
    store = stores.open_source(
        name, storage_options, headers=headers, timeout=opts.timeout, verify=opts.verify, cert=opts.cert
    )
    source: Source = store
    if disk is not None:
        try:
            source = DiskCachedSource(store, disk.open_entry(store.cache_key))
        except OSError as exc:
            log.warning("disk cache: not caching %s: %s", name, exc)
        except BaseException:
            store.close()
            raise
    reader = RemoteReader(source, downloader or default_downloader(), opts, priority)
    if on_event is not None:
        reader.events.subscribe(on_event)
    handed = reader.open()
    if handed is not None:  # a store always sends the length: something else answered
        handed[0].close()  # the reader closed itself and handed it over
        raise InvalidResponseError("the store answered without the object's length", url=name)
    return Stream(reader, name)


def _open_dash(*args, **kwargs):
    """:func:`.sources.dash.loading.open_dash`, imported on first use (defusedxml, isodate);
    a clear error when the ``dash`` extra is not installed."""
    try:
        from .sources.dash.loading import open_dash
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(f"reading MPEG-DASH needs the 'dash' extra: pip install 'kithara-io[dash]' ({exc})") from None
    return open_dash(*args, **kwargs)


def _open_hls(name, first, headers, priority, downloader, on_event, disk, choice, opts, dash: bool = False) -> Stream:
    """``first``: the playlist (or MPD, ``dash``) already fetched, as (text, content type,
    final URL), or None."""
    variant, audio = choice
    opener = _open_dash if dash else hls.open_hls
    reader = opener(
        name,
        variant=variant,
        audio=audio,
        headers=headers,
        priority=priority,
        downloader=downloader or default_downloader(),
        on_event=on_event,
        options=opts,
        first=first,
        cache=disk,
    )
    if dash:
        from .sources.dash.stream import DashStream  # see _open_dash

        return DashStream(reader, name)
    from .sources.hls.stream import HlsStream  # see hls_entry.open_hls

    return HlsStream(reader, name)


def _check_http_url(url: str) -> None:
    """A URL that can never be fetched is the caller's mistake, told at once (not retried
    as if the network had failed)."""
    try:
        parsed = urllib3.util.parse_url(url)
        port = parsed.port
    except (urllib3.exceptions.LocationParseError, ValueError) as exc:
        raise ValueError(f"malformed URL {url!r}: {exc}") from None
    if not parsed.host:
        raise ValueError(f"URL without a host: {url!r}")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"URL with port {port} out of range 1-65535: {url!r}")


def _disk_cache(cache: Union[None, str, DiskCache]) -> Optional[DiskCache]:
    if cache is None or isinstance(cache, DiskCache):
        return cache
    if cache == "disk":
        try:
            return default_disk_cache()
        except OSError as exc:
            log.warning("disk cache: cannot use the user cache directory: %s", exc)
            return None
    raise ValueError(f"cache must be None, 'disk' or a DiskCache, not {cache!r}")
