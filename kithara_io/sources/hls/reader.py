"""HlsReader: an HLS presentation as one continuous byte stream (what a ``Stream`` reads).

Why a reader of its own, not an ``HlsSource`` under RemoteReader: RemoteReader needs the
total length at open and one fixed byte space. HLS has neither: segment sizes are learned as
they arrive (and EOF must not be claimed before every size is known), the variant of a
segment not yet read changes with ABR (so every later offset moves), and a live playlist
grows (an EVENT playlist by appending: :mod:`.kind`). So here the *plan* (which variant's
part sits at each place: init segment, media segments) and the *layout* (offsets from the sizes known so far, :mod:`.layout`) are
re-derived on every change, and bytes are stored per part ``(variant, sequence)``
(:mod:`.store`), so re-planning loses nothing. What RemoteReader gives a file is kept: every
segment fetch is a command of the shared Downloader (the part under the cursor at High
request priority, prefetch and size learning at Low, the stream's priority as for any
stream); a read far from every running fetch cancels the prefetches it made useless; a
random read of a clear segment fetches only the sub-range read (``min_fetch``), so a seek
does not pull whole segments; sizes come from EXT-X-BYTERANGE, else from the first response
of a segment or a HEAD.

Ownership: ``self._cond`` guards all mutable state (plan, layout, sizes, part data, jobs,
pattern, counters). Fetch threads do network I/O without it and take it to store each piece.
Lock order: ``self._cond`` -> downloader lock. ``Downloader.cancel`` may complete a command
synchronously, so it is only called with ``self._cond`` released. The reload thread of a
live or EVENT playlist (:mod:`.live`) is owned by the reader and joined by ``close()``.
ABR, ``select`` and restart offsets: :mod:`.switching`; where a stream starts: :mod:`.start`;
seeking within a live window: :mod:`.window`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ...engine.downloader import Downloader
from ...errors import StreamClosedError, StreamError
from ...events import Event, EventBus, ReaderResumed, ReaderWaiting, Seek
from ...options import StreamOptions
from ...reading.planning import Priority
from ...stats import StreamStats
from . import abr
from .fetch import PartFetcher
from .gaps import evictions, next_gap
from .info import HlsInfo
from .jobs import Job, JobsMixin
from .keyhook import fetch_key
from .keys import KeyStore, check_supported
from .kind import PlaylistKind
from .live import LiveWatcher, ReloadMixin
from .load import load_media
from .plan import PartKey, Plan
from .playlist import MediaPlaylist, Rendition, Variant
from .start import choose as choose_start
from .store import PartData
from .switching import SwitchingMixin
from .transport import Transport
from .window import WindowMixin

log = logging.getLogger(__name__)

_PREFETCH_PARTS = 2  # parts near the cursor kept from eviction
_SIZE_JOBS = 2  # size-learning requests in flight at once (background)
_SIZE_JOBS_URGENT = 8  # ... while a caller waits for the size
_EOF = -1


class HlsReader(SwitchingMixin, ReloadMixin, WindowMixin, JobsMixin):
    """Blocking positional reads of an HLS media playlist (or one variant of a master)."""

    def __init__(
        self,
        url: str,
        variants: Tuple[Variant, ...],
        media: Dict[int, MediaPlaylist],
        variant: int,
        auto: bool,
        transport: Transport,
        downloader: Downloader,
        options: StreamOptions,
        priority: Priority = Priority.HIGH,
    ) -> None:
        self.url = url
        self.events = EventBus(url)
        self._variants = variants
        self.renditions: Tuple[Rendition, ...] = ()  # the master's audio renditions (loading)
        self.reading: Tuple[Optional[Rendition], ...] = ()  # the one each variant reads, or None
        self._transport = transport
        self._downloader = downloader
        self._opt = options
        self._priority = priority
        self._cond = threading.Condition()
        self._auto = auto
        self._estimator = abr.ThroughputEstimator()
        self._plan = Plan(media)
        self._data: Dict[PartKey, PartData] = {}
        self._jobs: Dict[int, Job] = {}
        self._cursor_part = 0  # part holding the last byte of the last read
        self._last_end = 0  # end of the last read
        self._sequential = True  # the last read continued the one before
        self._run = 0  # bytes read contiguously up to _last_end
        self._size_waiters = 0
        self._closed = False
        self._interrupt = False  # one-shot: the next wait of a reader raises InterruptedError
        self._stalled: Optional[StreamError] = None  # the live playlist stopped growing (live.py)
        self._error: Optional[BaseException] = None
        self._pending: List[Event] = []  # published once self._cond is released
        self._counts: Dict[str, float] = dict.fromkeys(StreamStats.__dataclass_fields__, 0)
        # Callbacks that refer to the reader weakly, and a stream.hls made at each call: the
        # reader holds nothing that holds it, so a closed stream is freed at once, not by the
        # garbage collector (~100 objects per stream).
        self._keys = KeyStore(functools.partial(fetch_key, transport, options.hls_keys, options.retry))
        self._fetcher = PartFetcher(transport, self._keys, options, weakly(self._on_retry))
        playlist = self._plan.media[variant]
        self._kind = PlaylistKind.of(playlist)
        self._ended = self._kind is PlaylistKind.VOD  # an EVENT or live playlist ends at ENDLIST
        self._restartable = False  # the reader re-opens its demuxer at init segments (switching)
        self._announced: set = set()  # offsets of the discontinuities published (switching)
        self._watcher = None
        self.start = choose_start(playlist, self._kind, options.live_start)  # live_start: .start
        self._plan.build(variant, [s.sequence for s in playlist.segments[self.start.index :]])
        for key in self._plan.parts:
            check_supported(self._plan.secret(key), url)

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        """Start fetching the head and learning sizes; for a live playlist, its reloads."""
        self._downloader.attach()
        try:
            with self._cond:
                if self._plan.parts:
                    self._submit_locked(
                        self._plan.parts[0],
                        0,
                        None if self._plan.encrypted(self._plan.parts[0]) else self._opt.first_fetch,
                        "data",
                        Priority.HIGH,
                    )
                self._schedule_locked()
            if not self._ended:
                self._watcher = LiveWatcher(self, self._opt.timeout.read)
                self._watcher.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            victims = list(self._jobs.values())
            self._cond.notify_all()
        self._cancel(victims)
        if self._watcher is not None:
            self._watcher.join()
        deadline = time.monotonic() + self._opt.timeout.connect + 5.0
        with self._cond:
            while self._jobs and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            if self._jobs:
                log.warning("closing %s: %d fetches did not stop in time", self.url, len(self._jobs))
        self._downloader.detach()
        self._transport.close()

    # -- what a Stream asks ------------------------------------------------------------
    @property
    def hls(self) -> HlsInfo:
        """What ``stream.hls`` tells: a view of this reader, a new one at each call."""
        return HlsInfo(self)

    @property
    def size(self) -> Optional[int]:
        """Total length once every size is known (blocks until then); None for a live
        playlist, and for an EVENT playlist until it ends."""
        with self._cond:
            if not self._ended or not self._kind.seekable:
                return None
            self._size_waiters += 1
            try:
                while True:
                    self._check_usable_locked()
                    total = self._plan.layout.total()
                    if total is not None:
                        return total
                    self._schedule_locked()
                    self._cond.wait()
            finally:
                self._size_waiters -= 1

    @property
    def seekable(self) -> bool:
        return self._kind.seekable

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    @property
    def priority(self) -> Priority:
        return self._priority

    def set_priority(self, priority: Union[Priority, str]) -> None:
        priority = Priority.parse(priority)
        with self._cond:
            if priority is self._priority:
                return
            self._priority = priority
            self._downloader.reprioritize(self, priority)

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        return (self._kind.seekable, None, None)

    def stats(self) -> StreamStats:
        with self._cond:
            held = sum(d.held for d in self._data.values())
            from_disk = getattr(self._transport, "bytes_from_disk", 0)
            counts: Dict[str, Any] = {  # the counters (float and int) of StreamStats
                **self._counts,
                "requests": self._transport.requests,
                "retries": self._fetcher.retries,
                "bytes_fetched": self._counts["bytes_fetched"] - from_disk,
                "bytes_from_disk": from_disk,
            }
            return StreamStats(**{**counts, "bytes_cached": held})

    def buffered(self) -> List[Tuple[int, int]]:
        with self._cond:
            out: List[Tuple[int, int]] = []
            for index, key in enumerate(self._plan.parts):
                offset, data = self._plan.layout.offset(index), self._data.get(key)
                if offset is None:
                    break
                if data is not None:
                    out.extend((offset + a, offset + b) for a, b in data.present)
            return out

    def read_at(self, pos: int, out: memoryview) -> int:
        """Fill ``out`` from ``pos``; fewer bytes only at the proven end, or (after
        ``enable_restarts``) before a restart offset."""
        return self._read(pos, out)

    def read_bytes(self, pos: int, n: int) -> bytes:
        buf = bytearray(n)
        got = self._read(pos, memoryview(buf))
        del buf[got:]
        return bytes(buf)

    def _read(self, pos: int, out: memoryview) -> int:
        done, waited, interrupted, started = 0, False, False, time.monotonic()
        with self._cond:
            self._sequential = pos == self._last_end
            if not self._sequential:
                self._run = 0
                self._pending.append(Seek(self._last_end, pos, self._present_locked(pos)))
        while done < len(out):
            victims: List[Job] = []
            with self._cond:
                self._check_usable_locked()
                if done and self._stops_before_locked(pos + done):
                    break  # an init segment: the reader opens a fresh demuxer here
                step = self._copy_locked(pos + done, out[done:])
                if step == _EOF:
                    break
                if step > 0:
                    done += step
                    self._last_end = pos + done
                    self._run += step
                    continue
                victims = self._demand_locked(pos + done, len(out) - done)
                if not victims:
                    if not waited:  # announce the wait first (unlocked), then check again
                        waited = True
                        self._pending.append(ReaderWaiting(pos + done))
                    elif self._interrupt:
                        self._interrupt = False
                        self._last_end, self._run = pos, max(0, self._run - done)  # this read did nothing
                        interrupted = True
                        break
                    elif not self._fail_if_stalled_locked():  # a live playlist that stopped
                        self._cond.wait()
                    elif done:
                        break  # the bytes copied go out; the next read raises
            self._cancel(victims)
            self._flush_events()
        if interrupted:
            self._flush_events()
            raise InterruptedError("read interrupted (Stream.interrupt)")
        with self._cond:
            self._counts["bytes_served"] += done
            self._announce_discontinuities_locked(pos, pos + done)
            self._counts["waits" if waited else "cache_hits"] += 1
            if waited:
                self._counts["time_waited"] += time.monotonic() - started
                self._pending.append(ReaderResumed(pos, time.monotonic() - started))
            self._schedule_locked()
        self._flush_events()
        return done

    def _load_media(self, index: int) -> MediaPlaylist:
        return load_media(self._transport, self._variants[index].uri, self._opt.retry)

    def add_media(self, index: int, playlist: MediaPlaylist) -> None:
        with self._cond:
            self._plan.add_media(index, playlist)

    def fail(self, error: StreamError) -> None:
        with self._cond:
            self._fail_locked(error)

    def interrupt(self) -> None:
        """The read waiting for bytes now, else the next one that has to wait, raises
        ``InterruptedError`` once; nothing else changes (as for a remote file)."""
        with self._cond:
            self._interrupt = True
            self._cond.notify_all()

    # -- reading (self._cond held) -------------------------------------------------------
    def _check_usable_locked(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)
        if self._closed:
            raise StreamClosedError("stream closed", url=self.url)

    def _copy_locked(self, pos: int, out: memoryview) -> int:
        """Copy what is present at ``pos``; 0: must wait; _EOF: the proven end."""
        found = self._plan.layout.locate(pos)
        if found is None:
            return _EOF if self._ended and self._plan.layout.total() is not None else 0
        index, offset = found
        data = self._data.get(self._plan.parts[index])
        if data is None:
            return 0
        n = min(data.available(offset), len(out))
        if n <= 0:
            return 0
        out[:n] = data.buf[offset : offset + n]
        self._cursor_part = index
        return n

    def _demand_locked(self, pos: int, want: int) -> List[Job]:
        """The reader waits at ``pos``: make sure a fetch will bring it. Returns the fetches
        this read made useless (epoch cancel), for the caller to cancel unlocked."""
        found = self._plan.layout.locate(pos)
        if found is None:
            return []  # live: the next reload brings more parts
        index, offset = found
        if offset == 0 and self._auto and index > 0:
            self._adapt_locked(index)  # a segment boundary: ABR may switch here
        key = self._plan.parts[index]
        self._cursor_part = index
        queued_low = [
            j
            for j in self._active()
            if j.key == key and j.cmd.request_priority is Priority.LOW and not j.began and _covers(j, offset)
        ]
        for job in queued_low:  # read-ahead still queued at Low: asked again at High
            job.dropped = True
        if self._covered_locked(key, offset):
            return queued_low
        keep = set(self._plan.parts[index : index + 2])
        victims = queued_low + [j for j in self._active() if j.kind == "data" and j.key not in keep]
        size = self._plan.sizes.get(key)
        data = self._data.get(key)
        if self._plan.encrypted(key):
            self._submit_locked(key, 0, None, "data", Priority.HIGH)
        elif size is None and offset > (data.first_missing(0) if data else 0):
            if not any(j.key == key for j in self._active()):  # where the part ends decides
                self._submit_locked(key, 0, None, "size", Priority.HIGH)
        else:
            gap = self._gap_locked(key, offset, offset + max(want, self._window()))
            if gap is not None:
                self._submit_locked(key, gap[0], gap[1], "data", Priority.HIGH)
        for job in victims:
            job.dropped = True  # out of every decision now; cancelled once the lock is released
        return victims

    def _covered_locked(self, key: PartKey, offset: int) -> bool:
        """Will a fetch already queued or running bring byte ``offset`` of part ``key``?"""
        for job in self._active():
            if job.key != key:
                continue
            if job.kind == "size":
                return True  # the size decides where the byte is: wait for it
            if self._plan.encrypted(key) or _covers(job, offset):
                return True
        return False

    # -- scheduling (self._cond held) ----------------------------------------------------
    def _schedule_locked(self) -> None:
        if self._closed or self._error is not None:
            return
        if self._sequential:
            self._prefetch_locked()
        if self._kind.seekable and self._plan.layout.total() is None:
            self._learn_sizes_locked()
        self._evict_locked()

    def _window(self) -> int:
        """Read-ahead that follows the access pattern, like an OS page cache: a random
        reader gets ``min_fetch``, a sequential one twice its run, up to ``read_ahead``."""
        return min(self._opt.read_ahead, max(self._opt.min_fetch, 2 * self._run))

    def _prefetch_locked(self) -> None:
        """Low-priority fetches of the gaps within the window after the last read."""
        found = self._plan.layout.locate(self._last_end)
        if found is None:
            return
        index, offset = found
        busy = sum(1 for j in self._active() if j.kind == "data")
        budget = self._window()
        while budget > 0 and index < len(self._plan.parts) and busy < self._opt.max_outstanding:
            if offset == 0 and index > self._cursor_part and self._auto:
                if not self._adapt_locked(index, deferrable=True):
                    break  # the boundary waits for the first throughput sample
            key = self._plan.parts[index]
            size = self._plan.sizes.get(key)
            gap = self._gap_locked(key, offset, offset + budget)
            if gap is not None:
                self._submit_locked(key, gap[0], gap[1], "data", Priority.LOW)
                busy += 1
            budget -= (size if size is not None else offset + budget) - offset
            index, offset = index + 1, 0

    def _gap_locked(self, key: PartKey, start: int, end: int) -> Optional[Tuple[int, Optional[int]]]:
        """The first range of part ``key`` within ``[start, end)`` that is neither present
        nor being fetched; an encrypted part is always one range (all of it)."""
        jobs = [j for j in self._active() if j.key == key and j.kind == "data"]
        data = self._data.get(key)
        if self._plan.encrypted(key):
            return None if jobs or (data is not None and data.complete) else (0, None)
        claims = [(j.start + j.received, j.end) for j in jobs]
        return next_gap(data.present if data else None, self._plan.sizes.get(key), claims, start, end)

    def _learn_sizes_locked(self) -> None:
        urgent = self._size_waiters > 0
        running = sum(
            1 for j in self._active() if j.kind == "size" or (j.end is None and j.key not in self._plan.sizes)
        )
        limit = _SIZE_JOBS_URGENT if urgent else _SIZE_JOBS
        for key in self._plan.parts:
            if running >= limit:
                return
            if key in self._plan.sizes or any(j.key == key for j in self._active()):
                continue
            kind = "data" if self._plan.encrypted(key) else "size"  # only decrypting proves a plaintext size
            self._submit_locked(key, 0, None, kind, Priority.HIGH if urgent else Priority.LOW)
            running += 1

    def _evict_locked(self) -> None:
        budget = self._opt.cache_budget
        if budget is None:
            return
        held = {key: data.held for key, data in self._data.items()}
        keep = {j.key for j in self._jobs.values()}
        keep.update(self._plan.parts[max(0, self._cursor_part - 1) : self._cursor_part + 2 + _PREFETCH_PARTS])
        order = {key: i for i, key in enumerate(self._plan.parts)}
        for key in evictions(held, order, self._cursor_part, keep, budget):
            del self._data[key]

    def _fail_locked(self, error: Optional[BaseException]) -> None:
        if not isinstance(error, StreamError):
            error = StreamError("HLS fetch failed unexpectedly", url=self.url, cause=error)
        if self._error is None:
            self._error = error
            log.error("kithara-io: %s", error)
        self._cond.notify_all()

    def _present_locked(self, pos: int) -> bool:
        found = self._plan.layout.locate(pos)
        if found is None:
            return False
        data = self._data.get(self._plan.parts[found[0]])
        return data is not None and data.available(found[1]) > 0

    def _flush_events(self) -> None:
        with self._cond:
            pending, self._pending = self._pending, []
        for event in pending:
            self._publish(event)


def _covers(job: Job, offset: int) -> bool:
    """Will this data job write byte ``offset`` of its part?"""
    return job.start + job.received <= offset and (job.end is None or offset < job.end)


def weakly(method: Callable[..., None]) -> Callable[..., None]:
    """A callback that calls the bound ``method`` while its object lives, without keeping
    the object alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args)

    return call
