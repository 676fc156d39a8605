"""Live streams: radio stations, responses without a length, pipes.

A :class:`LiveReader` reads one :class:`~kithara_io.sources.live.connection.LiveBody` on its own thread
(a station plays for hours: it must not hold one of the Downloader's fetch slots) into a
bounded :class:`~kithara_io.sources.live.buffer.LiveBuffer`, strips ICY metadata when the answer has
``icy-metaint``, and reconnects with the retry policy when a live connection drops
(``StreamGap``). :class:`LiveStream` is the file the caller gets: a station or a pipe is not
seekable; an HTTP body without a length that is not a station is a file whose length comes
at its end (``LiveFileReader`` in :mod:`kithara_io.sources.live.file`).

Threads and locks: the live thread (``kithara-live-N``) owns the current body and is the
buffer's only writer; ``close()`` breaks the body, wakes the buffer and joins the thread.
``_lock`` guards the metadata, the pending changes, the current body and the counters; the
buffer has its own condition; the two are never held together. Events are published with
no lock held.
"""

from __future__ import annotations

import io
import itertools
import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Mapping, Optional, Tuple, Union

from ...errors import ConnectionFailedError, InvalidResponseError, StreamError
from ...events import EventBus, MetadataChanged, ReaderResumed, ReaderWaiting, RequestRetrying, StreamGap
from ...options import StreamOptions
from ...reading.planning import Priority
from ...retry import Pace, Timeout
from ...stats import StreamStats
from ...stream import Stream
from .buffer import LiveBuffer
from .connection import AbortSlot, LiveBody
from .icy import IcyDemuxer, Metadata, is_station, metaint, station_metadata

log = logging.getLogger(__name__)

#: Bytes kept behind the reader of a station (nothing can seek there).
STATION_WINDOW = 64 * 1024
#: A connection that delivered this much counts as progress: the retry count starts over.
PROGRESS = 16 * 1024
READ_SIZE = 64 * 1024
#: Title changes kept for positions the reader has not reached: the server decides how many
#: come (a 4 KiB block after every audio byte), the reader how fast they are passed.
MAX_PENDING = 64

_ids = itertools.count(1)
Reconnect = Callable[[AbortSlot], LiveBody]


class LiveReader:
    """The reader protocol of :class:`~kithara_io.stream.Stream` over a live body."""

    def __init__(
        self,
        url: str,
        first: LiveBody,
        reconnect: Optional[Reconnect],
        options: StreamOptions,
        *,
        slot: Optional[AbortSlot] = None,
        priority: Priority = Priority.HIGH,
        events: Optional[EventBus] = None,
        station: Optional[bool] = None,
    ) -> None:
        self.url = url
        self.events = events or EventBus(url)
        self._priority = priority
        self._opts = options
        self._reconnect = reconnect
        self._slot = slot or AbortSlot()
        self.station = is_station(first.headers) if station is None else station
        self._buffer = self._new_buffer(options.cache_budget or (64 << 20))
        self._lock = threading.Lock()
        self._body: Optional[LiveBody] = first
        self.content_type: Optional[str] = first.headers.get("Content-Type")
        self._station_fields = station_metadata(first.headers)
        self._metadata: Metadata = dict(self._station_fields)
        self._pending: Deque[Tuple[int, Metadata]] = deque()
        self._requests = 1
        self._retries = 0
        self._fetched = 0
        self._closing = threading.Event()  # also what backoff waits on
        self._thread = threading.Thread(target=self._run, name=f"kithara-live-{next(_ids)}", daemon=True)

    def _new_buffer(self, budget: int) -> LiveBuffer:
        return LiveBuffer(budget, STATION_WINDOW if self.station else budget, self.url)

    def open(self) -> None:
        """Start reading; returns once the first bytes (or the end, or a failure) are in."""
        self._thread.start()
        try:
            self._buffer.wait_started()
        except BaseException:  # Ctrl-C while waiting: leave nothing running
            self.close()
            raise
        error = self._buffer.error
        if error is not None and not self._buffer.end:
            self.close()
            raise error.with_traceback(None)

    # -- the reader protocol ---------------------------------------------------------------
    @property
    def size(self) -> Optional[int]:
        return self._buffer.end if self._buffer.complete() else None

    def seekable(self) -> bool:
        return self._buffer.complete()

    def wait_size(self) -> Optional[int]:
        return self.size  # known only once complete: nothing to wait for

    @property
    def error(self) -> Optional[BaseException]:
        return self._buffer.error

    @property
    def priority(self) -> Priority:
        return self._priority

    def set_priority(self, priority: Union[Priority, str]) -> None:
        self._priority = Priority.parse(priority)  # no queued fetches to move

    def metadata_at(self, pos: int) -> Metadata:
        """The metadata as at read position ``pos``: changes up to there applied."""
        with self._lock:
            while self._pending and self._pending[0][0] <= pos:
                self._metadata = self._pending.popleft()[1]
            return dict(self._metadata)

    def read_at(self, pos: int, out: memoryview) -> int:
        if not len(out):
            return 0
        if not self._buffer.has_data(pos):
            self.events.publish(ReaderWaiting(pos))
            began = time.monotonic()
            n = self._buffer.read_into(pos, out)
            self.events.publish(ReaderResumed(pos, time.monotonic() - began))
        else:
            n = self._buffer.read_into(pos, out)
        return n

    def read_bytes(self, pos: int, n: int) -> bytes:
        data = bytearray(n)
        got = self.read_at(pos, memoryview(data))
        del data[got:]
        return bytes(data)

    def buffered(self) -> List[Tuple[int, int]]:
        start, end = self._buffer.held()
        return [(start, end)] if end > start else []

    def stats(self) -> StreamStats:
        served, waits, waited, held = self._buffer.counters()
        with self._lock:
            requests, retries, fetched = self._requests, self._retries, self._fetched
        return StreamStats(
            requests=requests,
            bytes_fetched=fetched,
            bytes_served=served,
            waits=waits,
            time_waited=waited,
            retries=retries,
            bytes_cached=held,
        )

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        return False, None, None  # no ranges, no validators

    def interrupt(self) -> None:
        """A read waiting for bytes raises ``InterruptedError`` (see ``LiveBuffer.interrupt``)."""
        self._buffer.interrupt()

    def close(self) -> None:
        """Break the connection, wake every wait, join the live thread. Idempotent."""
        self._closing.set()
        self._buffer.close()
        self._slot.abort()
        with self._lock:  # (held: the live thread closes a body under it, never mid-abort)
            if self._body is not None:
                self._body.abort()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            body, self._body = self._body, None
        if body is not None:  # the thread never started
            body.close()

    # -- metadata --------------------------------------------------------------------------
    def _changed(self, position: int, fields: Dict[str, str]) -> None:
        with self._lock:
            metadata: Metadata = dict(self._station_fields)
            metadata.update({k: v for k, v in fields.items() if k in ("title", "url")})
            if len(self._pending) < MAX_PENDING:
                self._pending.append((position, metadata))
            else:  # memory bounded: the newest change replaces the last one waiting
                self._pending[-1] = (self._pending[-1][0], metadata)
        self.events.publish(MetadataChanged(dict(metadata), position))

    # -- the live thread -------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._closing.is_set():
            with self._lock:
                body = self._body
            assert body is not None
            start = self._buffer.end
            try:
                cause = self._pump(body, start)
            except BaseException as exc:  # never let the thread die silently
                log.exception("live stream %s: reader thread failed", self.url)
                self._buffer.fail(StreamError("live stream failed", url=self.url, cause=exc))
                cause = None
            finally:
                self._drop_body()
            if self._closing.is_set() or self._buffer.error is not None:
                return
            if cause is None and not self.station:
                self._buffer.finish()  # a clean end of a finite body
                return
            if self._reconnect is None:
                self._buffer.fail(cause or ConnectionFailedError("stream ended", url=self.url))
                return
            failures = 0 if self._buffer.end - start >= PROGRESS else failures
            failures = self._connect_again(failures, cause)
            if failures < 0:
                return
            self.events.publish(StreamGap(self._buffer.end))

    def _pump(self, body: LiveBody, start: int) -> Optional[StreamError]:
        """Read ``body`` into the buffer until it ends (None) or breaks (the error)."""
        headers = body.headers
        interval = metaint(headers)
        demuxer = IcyDemuxer(interval) if interval else None
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        pace = BodyPace(self._opts.timeout, self._buffer, self.url)
        while not self._closing.is_set():
            try:
                n = body.readinto(view)
            except StreamError as exc:
                return exc
            if n == 0:
                return None
            with self._lock:
                self._fetched += n
            if demuxer is None:
                data = bytes(view[:n])
            else:
                data, changes = demuxer.feed(view[:n])
                for position, fields in changes:
                    self._changed(start + position, fields)
            if not self._buffer.put(data):
                return None  # closed
            slow = pace.slow(n)
            if slow is not None:
                return slow
        return None

    def _connect_again(self, failures: int, cause: Optional[BaseException]) -> int:
        """Reconnect with the retry policy: the new failure count, or -1 when giving up
        (the failure is stored) or closing."""
        body, failures = self._new_body(failures, cause, "live stream dropped and {} reconnection attempts failed")
        if body is None:
            return -1
        refused = not_the_stream(body.headers, self.content_type) if self.station else None
        if refused is not None:  # its bytes are no audio of this station: never mixed in
            body.close()
            self._buffer.fail(InvalidResponseError(f"reconnected, but {refused}", url=self.url))
            return -1
        with self._lock:
            self._body = body
            self._station_fields = station_metadata(body.headers) or self._station_fields
        return -1 if self._closing.is_set() else failures

    def _new_body(
        self, failures: int, cause: Optional[BaseException], gave_up: str, at_once: bool = False
    ) -> Tuple[Optional[LiveBody], int]:
        """Ask for the body again with the retry policy, each try after a failure counted and
        waited for (``at_once``: the first try is not): the new body and the failure count,
        or ``(None, -1)`` when giving up (the failure, ``gave_up`` with the attempts, is
        stored) or closing."""
        retry = self._opts.retry
        counted = not at_once
        while True:
            if counted:
                failures += 1
                if failures > retry.attempts:
                    self._buffer.fail(ConnectionFailedError(gave_up.format(retry.attempts), url=self.url, cause=cause))
                    return None, -1
                delay = retry.delay(failures, getattr(cause, "retry_after", None))
                with self._lock:
                    self._retries += 1
                self.events.publish(RequestRetrying(0, failures, delay, str(cause or "connection closed"), self.url))
                if self._closing.wait(delay):
                    return None, -1
            counted = True
            try:
                body = self._reconnect(self._slot)  # type: ignore[misc]
            except StreamError as exc:
                if not retry.is_transient(exc):
                    self._buffer.fail(exc)
                    return None, -1
                cause = exc
                continue
            with self._lock:
                self._requests += 1
            return body, failures

    def _drop_body(self) -> None:
        with self._lock:
            body, self._body = self._body, None
            if body is not None:
                body.close()


class BodyPace:
    """``Timeout.speed_limit`` over ``speed_time`` on the reads of one live body (a trickle
    never trips the per-read timeout), except across the writer's waits for room in
    ``buffer`` (backpressure: the body was not being read)."""

    def __init__(self, timeout: Timeout, buffer: LiveBuffer, url: str) -> None:
        self._pace = Pace(timeout, time.monotonic()) if timeout.speed_limit > 0 else None
        self._buffer = buffer
        self._pauses = buffer.pauses
        self._url = url

    def slow(self, n: int) -> Optional[ConnectionFailedError]:
        """``n`` more bytes came: the cut, if the span that ended was under the limit."""
        pace = self._pace
        if pace is None:
            return None
        now = time.monotonic()
        if self._buffer.pauses != self._pauses:  # (only the writer, this thread, changes it)
            self._pauses = self._buffer.pauses
            pace.restart(now)
        if pace.slow(n, now):
            return ConnectionFailedError(f"live connection too slow: {pace.describe()}", url=self._url)
        return None


def not_the_stream(headers: Mapping[str, str], first_type: Optional[str]) -> Optional[str]:
    """Why a station's reconnection answer is not its stream, if it shows: a body with a
    length (a file: an "offline" notice, a jingle), or text (an error page) when the first
    answer (its ``first_type``) was not text."""
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    if headers.get("Content-Length") is not None and not chunked:
        return f"the answer is a file of {headers['Content-Length'].strip()[:20]} bytes, not the stream"
    media = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media.startswith("text/") and not (first_type or "").strip().lower().startswith("text/"):
        return f"the answer is {media[:40]}, not the stream"
    return None


class LiveStream(Stream):
    """A :class:`~kithara_io.stream.Stream` over a live source.

    A radio station (``icy-*`` headers), a FIFO or stdin reads like a pipe: ``size`` is None,
    ``seekable()`` is False, ``seek`` raises ``io.UnsupportedOperation`` except to the
    current position, ``tell()`` counts the bytes read, and a read returns as soon as some
    bytes are there (fewer than asked is not the end; ``b""`` is); a pipe's finite body
    becomes seekable once its end is proven with every byte still held.

    Any other HTTP body without a length is a file whose length becomes known at its end
    (:mod:`kithara_io.sources.live.file`): ``seekable()`` is True throughout, ``size`` is None until
    the end arrives, reads fill their buffer, ``seek(0, SEEK_END)`` waits for the end.
    ``metadata``: the station's fields and the title at the read position.
    """

    _reader: LiveReader

    def seekable(self) -> bool:
        self._check_closed()
        return self._reader.seekable()

    @property
    def size(self) -> Optional[int]:
        """None while the length is unknown (always, for a station)."""
        self._check_closed()
        return self._reader.size

    @property
    def metadata(self) -> Metadata:
        """``name``, ``genre``, ``description``, ``bitrate``, ``station_url`` (from the
        ``icy-*`` headers) and ``title``, ``url`` (from the stream) as at ``tell()``."""
        return self._reader.metadata_at(self._pos)  # also once closed: players ask from other threads

    def interrupt(self) -> None:
        """Make a read waiting for bytes in another thread raise ``InterruptedError`` now
        (or the next read that has to wait); the stream stays usable."""
        self._check_closed()
        self._reader.interrupt()

    @property
    def content_type(self) -> Optional[str]:
        """The first answer's Content-Type (``audio/mpeg``, ``audio/aac``, ``audio/ogg``...),
        which tells PyAV's ``format=``; None for a pipe."""
        return self._reader.content_type

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_closed()
        if self._reader.seekable():
            if whence == io.SEEK_END:  # a file without a length: wait for its end
                with self._lock:
                    self._check_failed()
                    size = self._reader.wait_size()
                    if size is None:  # a file's end proves its length: not reached here
                        raise io.UnsupportedOperation("seek from the end: the length is not known")
                    offset, whence = size + offset, io.SEEK_SET
            return super().seek(offset, whence)
        self._check_failed()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            raise io.UnsupportedOperation("seek from the end: a live stream has no known length")
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target != self._pos:
            raise io.UnsupportedOperation("seek: a live stream is not seekable (only to tell())")
        return target

    def readall(self) -> bytes:
        """Everything up to the end of the stream (which a station never reaches)."""
        self._check_closed()
        out = bytearray()
        while True:
            chunk = self.read(READ_SIZE)
            if not chunk:
                return bytes(out)
            out += chunk

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pos={self._pos} live"
        return f"<kithara_io.LiveStream {self.name!r} {state}>"


__all__ = ["LiveReader", "LiveStream", "is_station"]
