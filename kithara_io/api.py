"""``kithara_io.open``: the front door."""

from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Union

from .downloader import Downloader, default_downloader
from .events import Event
from .options import StreamOptions
from .planning import Priority
from .remote import RemoteReader
from .sources.file import LocalFileReader, path_from_source
from .sources.http import HttpSource
from .stream import Stream


def open(  # noqa: A001 - mirrors builtins.open on purpose
    source: Union[str, os.PathLike],
    *,
    headers: Optional[Mapping[str, str]] = None,
    priority: Union[str, Priority] = "high",
    downloader: Optional[Downloader] = None,
    on_event: Optional[Callable[[Event], None]] = None,
    **options,
) -> Stream:
    """Open an http(s) URL, a ``file://`` URL or a local path as a seekable binary file.

    Blocks until the total length is known (the first response); raises a
    :class:`~kithara_io.StreamError` naming the URL and the cause if the resource cannot be
    read. ``options`` are the fields of :class:`~kithara_io.options.StreamOptions`.
    """
    name = os.fspath(source)
    try:
        opts = StreamOptions(**options)
    except TypeError:
        unknown = sorted(set(options) - set(StreamOptions.names()))
        raise TypeError(f"unknown option(s) {unknown}; valid: {StreamOptions.names()}") from None
    stream_priority = Priority.parse(priority)
    path = path_from_source(name)
    if path is not None:
        local = LocalFileReader(path)
        local.set_priority(stream_priority)
        if on_event is not None:
            local.events.subscribe(on_event)
        return Stream(local, name)
    http = HttpSource(
        name, headers=headers, timeout=opts.timeout, verify=opts.verify, max_redirects=opts.max_redirects
    )
    reader = RemoteReader(http, downloader or default_downloader(), opts, stream_priority)
    if on_event is not None:  # before open(): the first fetch's events are seen too
        reader.events.subscribe(on_event)
    reader.open()
    return Stream(reader, name)
