"""Opening a live stream: the first answer (or a pipe) to the reader that fits it, a
station's :class:`~.stream.LiveReader` or a file's :class:`~.file.LiveFileReader`."""

from __future__ import annotations

import os
import stat
from typing import Optional

from ...errors import StreamError
from ...options import StreamOptions
from ...reading.planning import Priority
from .connection import AbortSlot, LiveBody, PipeBody, live_client, open_http
from .file import LiveFileReader
from .icy import is_station
from .stream import LiveReader, LiveStream


class HandedBody:
    """The first answer of an engine fetch, handed over unread because it has no length
    (see ``RemoteReader.open``): its Body and abort handle as a LiveBody."""

    def __init__(self, body, abort) -> None:
        self.url = body.url
        self.headers = body.headers
        self.icy = getattr(body, "icy", False)
        self._body = body
        self._abort = abort

    @staticmethod
    def fits(body) -> bool:
        """Whether ``body`` tells its headers and can return what has arrived."""
        return hasattr(body, "headers") and hasattr(body, "readinto1")

    def readinto(self, buf: memoryview) -> int:
        return self._body.readinto1(buf)  # what arrived: a slow station is not held back

    def abort(self) -> None:
        self._abort.abort()

    def close(self) -> None:
        self._body.close()


def open_url(
    url: str,
    *,
    headers=None,
    options: StreamOptions = StreamOptions(),
    priority: Priority = Priority.HIGH,
    on_event=None,
    first: Optional[LiveBody] = None,
    slot: Optional[AbortSlot] = None,
) -> LiveStream:
    """A live stream of ``url``; ``first`` is its first answer when a fetch already has it
    (ownership passes here), else it is requested now. Reconnections ask ``url`` again."""
    slot = slot or AbortSlot()
    opts = options
    # The first request's and every reconnect's: the same proxies, credentials and TLS.
    client = live_client(url, headers, opts.timeout, opts.verify, opts.max_redirects, opts.cert)

    def connect(slot: AbortSlot) -> LiveBody:
        return open_http(client, url, slot)

    def connect_icy(slot: AbortSlot) -> LiveBody:  # no HTTP attempt first: we know the server
        return open_http(client, url, slot, icy=True)

    body = first if first is not None else connect(slot)
    try:
        icy = getattr(body, "icy", False)
        if icy or is_station(body.headers):
            reader = LiveReader(
                url, body, connect_icy if icy else connect, opts, slot=slot, priority=priority, station=True
            )
        else:  # a file without a length
            reader = LiveFileReader(url, body, connect, opts, slot=slot, priority=priority)
    except BaseException:
        body.close()
        raise
    if on_event is not None:
        reader.events.subscribe(on_event)
    reader.open()
    return LiveStream(reader, url)


def local_stream_fd(path: str) -> Optional[int]:
    """An fd for ``path`` when it is a pipe or device rather than a regular file (``-`` is
    stdin, duplicated so that closing the stream leaves stdin open); None for a file.
    Opening a FIFO waits for its writer, as any reader of a FIFO does."""
    if path == "-":
        return os.dup(0)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # LocalFileReader reports it
    if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)):
        return None
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StreamError("cannot open", url=path, cause=exc) from exc


def open_pipe(
    name: str, fd: int, *, options: StreamOptions = StreamOptions(), priority: Priority = Priority.HIGH, on_event=None
) -> LiveStream:
    """A live stream of a local FIFO, stdin or character device; takes ownership of ``fd``."""
    reader = LiveReader(name, PipeBody(name, fd), None, options, priority=priority, station=False)
    if on_event is not None:
        reader.events.subscribe(on_event)
    reader.open()
    return LiveStream(reader, name)


__all__ = ["HandedBody", "local_stream_fd", "open_pipe", "open_url"]
