"""Stream: a blocking, seekable, read-only binary file (``io.RawIOBase``).

Contract, as for a regular file opened ``"rb"``: ``readinto(b)`` fills ``b`` completely
unless the end of the resource is reached, and returns 0 at or after the end; ``seek`` and
``tell`` are O(1) and never touch the network; seeking past the end is allowed; a negative
position raises ``OSError(EINVAL)``; any operation on a closed stream raises ``ValueError``.

Threads: every call is atomic, as with ``io.FileIO``: ``_lock`` guards the cursor and is held
for the whole of a read or seek, so reads from several threads each get their own bytes and
every byte is read once. ``tell`` reads the cursor without it (the position after the last
completed call), and ``close`` never takes it, so it can wake a read blocked on the network.

A permanent download failure is stored: it is raised by the read that hits it and again by
the next ``read``/``seek``/``close`` call, so a decoder that swallows exceptions raised inside
its read callback (soundfile does) cannot make the failure disappear.
"""

from __future__ import annotations

import errno
import io
import operator
import os
import threading
import weakref
from typing import Callable, List, Optional, Protocol, Sequence, Tuple, Type, Union

from .events import Event, EventBus, Subscription
from .reading.planning import Priority
from .reading.range_reads import MAX_GAP
from .stats import StreamStats

_READALL_MIN = 1 << 20  # readall's first piece; each next one is as large as all before it
_READALL_MAX = 16 << 20  # well below the default cache budget, which holds a piece whole until read


class _Reader(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def events(self) -> EventBus: ...

    @property
    def priority(self) -> Priority: ...

    def set_priority(self, priority: Union[Priority, str]) -> None: ...

    @property
    def size(self) -> Optional[int]: ...

    @property
    def error(self) -> Optional[BaseException]: ...

    def read_at(self, pos: int, out: memoryview) -> int: ...

    def read_bytes(self, pos: int, n: int) -> bytes: ...

    def buffered(self) -> List[Tuple[int, int]]: ...

    def stats(self) -> StreamStats: ...

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]: ...

    def close(self) -> None: ...


class Stream(io.RawIOBase):
    """A remote (or local) resource as a seekable binary file. Create it with ``kithara_io.open``."""

    def __init__(self, reader: _Reader, name: str) -> None:
        super().__init__()
        self._reader = reader
        self._lock = threading.Lock()  # the cursor: held across each read and seek
        _live_streams.add(self)
        self._pos = 0
        self.name = name

    # -- the contract helpers, as in _pyio -----------------------------------------------
    def _check_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed stream")

    def _check_failed(self) -> None:
        error = self._reader.error
        if error is not None:
            # A fresh traceback each time: re-raising one object would append frames to it
            # on every call, and decoders retry reads many times.
            raise error.with_traceback(None)

    def readable(self) -> bool:
        self._check_closed()
        return True

    def seekable(self) -> bool:
        self._check_closed()
        return True

    def writable(self) -> bool:
        self._check_closed()
        return False

    def write(self, b) -> int:
        self._check_closed()
        raise io.UnsupportedOperation("write: stream is read-only")

    # -- data ----------------------------------------------------------------------------
    @property
    def size(self) -> Optional[int]:
        """Total length of the resource in bytes (None: not known, for the live and HLS
        streams that say so)."""
        self._check_closed()
        return self._reader.size

    @property
    def hls(self):
        """None; an HLS stream (:class:`~kithara_io.sources.hls.HlsStream`) tells its
        variants and segments here."""
        return None

    @property
    def dash(self):
        """None; an MPEG-DASH stream (:class:`~kithara_io.sources.dash.stream.DashStream`)
        tells its MPD, adaptation sets and representations here."""
        return None

    @property
    def error(self) -> Optional[BaseException]:
        """The permanent failure of this stream's download, if any."""
        return self._reader.error

    def buffered(self) -> List[Tuple[int, int]]:
        """The byte ranges ``[start, end)`` downloaded so far (the whole file when local)."""
        self._check_closed()
        return self._reader.buffered()

    def stats(self) -> StreamStats:
        """A snapshot of this stream's counters (requests, bytes, hits, waits, retries...)."""
        return self._reader.stats()

    @property
    def priority(self) -> Priority:
        """The stream priority (``Priority.HIGH``/``LOW``); settable at any time: queued
        fetches move to their new slots at once, running ones finish."""
        return self._reader.priority

    @priority.setter
    def priority(self, value: Union[Priority, str]) -> None:
        self._check_closed()
        self._reader.set_priority(value)

    @property
    def events(self) -> EventBus:
        """This stream's event bus (see :mod:`kithara_io.events`)."""
        return self._reader.events

    def subscribe(self, callback: Callable[[Event], None], *types: Type[Event]) -> Subscription:
        """Call ``callback(event)`` for this stream's events (only ``types`` when given);
        returns the handle that unsubscribes. Callbacks run on engine threads: keep them short."""
        return self._reader.events.subscribe(callback, *types)

    @property
    def supports_ranges(self) -> Optional[bool]:
        """Whether the server answers range requests (None for a local file: no server)."""
        return self._reader.resource()[0]

    @property
    def etag(self) -> Optional[str]:
        """The ETag pinned at open (None if the server sent none, or for a local file)."""
        return self._reader.resource()[1]

    @property
    def filename(self) -> Optional[str]:
        """The file name the server suggested (Content-Disposition ``filename`` or
        ``filename*``), exactly as sent: it may hold ``/`` or ``..``, so check it before
        writing a file under it. None when the server sent none (or for a local file)."""
        return getattr(self._reader, "filename", None)

    @property
    def last_modified(self) -> Optional[str]:
        """The Last-Modified pinned at open (None if the server sent none, or for a local file)."""
        return self._reader.resource()[2]

    def readinto(self, b) -> int:
        self._check_closed()
        with self._lock:
            self._check_failed()
            with memoryview(b) as view:
                if view.format == "B" and view.ndim == 1:  # bytearray, a decoder's buffer
                    n = self._reader.read_at(self._pos, view)
                else:
                    with view.cast("B") as out:
                        n = self._reader.read_at(self._pos, out)
            self._pos += n
        return n

    def read_ranges(self, ranges: Sequence[Tuple[Optional[int], Optional[int]]], max_gap: int = MAX_GAP) -> List[bytes]:
        """The bytes of each ``(start, end)`` pair, in the order given: each equal to
        ``file_bytes[start:end]`` (slice semantics: negative values count from the end, past
        the end is clipped, an empty range is ``b""``). Does not move the cursor.

        Remote files: ranges whose gap is at most ``max_gap`` bytes are fetched as one, all
        fetches at once (as fetches of this stream, at its priority), in batches that fill at
        most a quarter of ``cache_budget`` each (see :mod:`kithara_io.reading.range_reads`). Raises
        the stream's ``StreamError`` as a read does."""
        self._check_closed()
        self._check_failed()
        if not self.seekable():
            raise io.UnsupportedOperation("read_ranges: the stream is not seekable")
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, not {max_gap}")
        size = self.size
        if size is None:
            raise io.UnsupportedOperation("read_ranges: the length of the stream is not known yet")
        spans = []
        for pair in ranges:
            try:
                start, end = pair
                lo, hi, _ = slice(_offset(start), _offset(end)).indices(size)
            except (TypeError, ValueError):
                raise TypeError(
                    f"read_ranges: each range must be a (start, end) pair of integers, not {pair!r}"
                ) from None
            spans.append((lo, max(lo, hi)))
        read_ranges = getattr(self._reader, "read_ranges", None)
        if read_ranges is not None:
            return read_ranges(spans, max_gap)
        with self._lock:  # a local file, HLS: plain positional reads
            return [self._reader.read_bytes(lo, hi - lo) if hi > lo else b"" for lo, hi in spans]

    def interrupt(self) -> None:
        """Make a read blocked in another thread, waiting for bytes, raise ``InterruptedError``
        now (or, if none waits, the next read that has to wait); the stream stays usable and
        no fetch is cancelled. A player uses it to drop a read a seek made useless. Remote
        files, HLS and live streams; a no-op for a local file, whose reads never wait."""
        self._check_closed()
        interrupt = getattr(self._reader, "interrupt", None)
        if interrupt is not None:
            interrupt()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if negative); fewer only at the end.
        Copies once, straight out of the cache (``RawIOBase.read`` would copy twice)."""
        self._check_closed()
        if size is None or size < 0:
            return self.readall()
        with self._lock:
            self._check_failed()
            data = self._reader.read_bytes(self._pos, size)
            self._pos += len(data)
        return data

    def readall(self) -> bytes:
        """Everything from the cursor to the end. Read in growing pieces, so memory follows
        the bytes received, not the length the server claims."""
        self._check_closed()
        pieces: List[bytes] = []
        with self._lock:
            self._check_failed()
            start = self._pos
            while True:
                want = min(_READALL_MAX, max(_READALL_MIN, self._pos - start))
                piece = self._reader.read_bytes(self._pos, want)
                if not piece:
                    break
                pieces.append(piece)
                self._pos += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_closed()
        with self._lock:
            self._check_failed()
            pos = self._pos = seek_target(self._pos, offset, whence, self._reader.size)
        return pos

    def tell(self) -> int:
        self._check_closed()
        return self._pos

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Cancel this stream's fetches, join what it owns, release its connections.
        Idempotent. The first call raises the stored permanent failure, if any: decoders
        such as soundfile swallow exceptions raised inside their read callback, so this
        is where a failure they hid becomes visible."""
        self._close(raise_error=True)

    def _close(self, raise_error: bool, in_flight: Optional[BaseException] = None) -> None:
        if self.closed:
            return
        try:
            self._reader.close()
        finally:
            super().close()
        error = self._reader.error
        if raise_error and error is not None and error is not in_flight:
            raise error.with_traceback(None)

    def __exit__(self, exc_type, exc, tb) -> None:
        # The failure already propagating out of the with block is not raised twice.
        self._close(raise_error=True, in_flight=exc)

    def __del__(self) -> None:
        try:
            self._close(raise_error=False)
        except Exception:  # noqa: BLE001 - nothing may escape __del__ (it would be printed)
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pos={self._pos}"
        return f"<kithara_io.Stream {self.name!r} {state}>"


def _offset(value: Optional[int]) -> Optional[int]:
    return None if value is None else operator.index(value)


_live_streams: "weakref.WeakSet[Stream]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """In a forked child only the forking thread exists: every live stream gets a free
    cursor lock (a parent thread may have held it) and its reader drops what belonged to
    the parent's threads (``_after_fork_in_child`` of RemoteReader / LocalFileReader). Live
    and HLS readers have none (they are not readable in the child): they are left as they
    are, and the streams after them in the loop are still reset."""
    for stream in list(_live_streams):
        stream._lock = threading.Lock()
        after_fork = getattr(stream._reader, "_after_fork_in_child", None)
        if not stream.closed and after_fork is not None:
            after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def seek_target(pos: int, offset: int, whence: int, size: Optional[int]) -> int:
    """Where ``seek(offset, whence)`` from ``pos`` lands in a file of ``size`` bytes (None:
    not known yet), with the errors a file's seek raises."""
    if whence == io.SEEK_SET:
        target = offset
    elif whence == io.SEEK_CUR:
        target = pos + offset
    elif whence == io.SEEK_END:
        if size is None:
            raise io.UnsupportedOperation("seek from the end: the length is not known yet")
        target = size + offset
    else:
        raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
    if target < 0:
        raise OSError(errno.EINVAL, "Invalid argument: negative seek position")
    return target
