"""RemoteReader: blocking positional reads of one remote resource.

It decides (with ``schedule.FetchScheduling``, which the pure functions in
``planning`` advise) which bytes to fetch next, submits
fetch commands to the shared Downloader (their bodies go into the SparseCache through the
fetch loop, ``fetching.FetchLoop``, whose ``FetchHost`` it is: ``hosting.FetchHosting``), and cancels fetches
the reader no longer needs after a far seek (epoch cancel); ``read_ranges`` comes from
``range_reads.RangeReads`` (a FetchScheduling, its base class). A reader that
misses and would wait for every byte of the new fetch runs it on its own thread when the
Downloader has a place for it (``Downloader.try_run_inline``; a random reader's usual case).

Ownership: ``self._lock`` (``self._cond`` waits on it) guards ``_active``, the access
pattern, the counters, ``_closed`` and ``_error``. Lock order: ``self._lock`` -> cache lock
-> downloader lock; the cache and the downloader never call back while holding theirs.
``Downloader.cancel`` may complete a command synchronously, so it is only ever called with
``self._lock`` released.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, List, Optional, Tuple, Union

from ..engine.downloader import Downloader, FetchCommand
from ..errors import ConnectionFailedError, StreamClosedError, StreamError
from ..events import EventBus, ReaderResumed, ReaderWaiting, Seek
from ..options import StreamOptions
from ..sources.base import Abort, Body, Source
from ..stats import StreamCounters, StreamStats
from .cache import SparseCache, Wait, joined
from .fetching import Fetch, FetchLoop
from .hosting import FetchHosting, UnknownLength
from .planning import AccessPattern, FetchPlan, LinkEstimate, Priority
from .range_reads import RangeReads

log = logging.getLogger(__name__)

_SHORT_READ = 256 * 1024  # reads up to this long copy under the stream's lock (_read_present)


class RemoteReader(RangeReads, FetchHosting):
    """Blocking positional reads of one HTTP resource, filled by background fetches."""

    def __init__(
        self,
        source: Source,
        downloader: Downloader,
        options: StreamOptions,
        priority: Priority = Priority.HIGH,
    ) -> None:
        self._source = source
        self._downloader = downloader
        self._opt = options
        self._priority = priority
        self._cache = SparseCache(budget=options.cache_budget)
        self._lock = threading.RLock()  # entered directly: Condition.__enter__ is a Python call
        self._cond = threading.Condition(self._lock)
        self._active: Dict[int, Fetch] = {}
        self._deferred: List[FetchCommand] = []  # see FetchScheduling._schedule_locked
        self._streaming = 0  # active fetches whose body fills the link (Fetch.streaming)
        self._pattern = AccessPattern()
        self._tail_probe: Optional[int] = None  # id of the suffix request sent at open
        self._closed = False
        self._error: Optional[BaseException] = None
        # Offline replay of a disk cache: the failure of a network fetch, once its retries
        # are spent. Only bytes held on disk are fetched from then on; a read reaching a gap
        # fails (ConnectionFailedError), so a gap costs one fetch's attempts, not a loop.
        self._unreachable: Optional[StreamError] = None
        self._link = LinkEstimate()
        self._counts = StreamCounters()
        self._fetcher = FetchLoop(self, source, self._cache, options, self._link, downloader)
        self.events = EventBus(source.url)  # this stream's events (issue #4)
        self._handover: Optional[Tuple[Body, Abort]] = None  # a first answer without a length
        self._forked = False  # in a forked child, until the first read attaches again

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> Optional[Tuple[Body, Abort]]:
        """Start the first fetch and block until the total length is known.

        If the first answer has no length (a live stream, a chunked or close-delimited
        body), this reader cannot serve it: it closes and returns that answer's body and
        abort handle instead, unread and open; the caller owns them from then on."""
        try:
            self._downloader.attach()
        except RuntimeError:  # closed: say it in the stream's terms
            self._source.close()
            raise StreamClosedError("cannot open: the downloader was closed", url=self._source.url) from None
        try:
            with self._lock:
                self._submit_locked(FetchPlan(0, self._opt.first_fetch, Priority.HIGH))
                if self._opt.tail:
                    self._submit_tail_probe_locked()
            limit = self._opt.timeout.open
            if self._cache.wait_for_size(limit) is None:
                raise ConnectionFailedError(
                    f"timed out: no answer within {limit:g} s (Timeout.open)", url=self._source.url
                )
        except UnknownLength as exc:
            self.close()
            self._let_go_of(exc)
            return self._handover
        except BaseException as exc:
            self.close()
            self._let_go_of(exc)
            raise
        return None

    def _let_go_of(self, error: BaseException) -> None:
        """After an open that did not give this reader a stream, it keeps no ``error``: the
        frames of its traceback (this reader's) would refer back, a cycle for the collector."""
        with self._lock:
            if self._error is error:
                self._error = None

    def _after_fork_in_child(self) -> None:
        """In a forked child (only the forking thread exists; called by ``stream``'s fork
        hook): drop the fetches, whose threads are gone, forget the parent's connections,
        and take fresh locks. The first read attaches to the child's Downloader and fetches
        what it needs again."""
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._cache._after_fork_in_child()
        self._fetcher.turns._after_fork_in_child()
        self._active.clear()
        self._deferred = []
        self._streaming = 0
        self._tail_probe = None
        self._source._after_fork_in_child()
        self._downloader = self._downloader._after_fork_in_child()
        self._forked = not self._closed

    def _attach_after_fork(self) -> None:
        with self._lock:
            if not self._forked:
                return
            self._forked = False
            self._downloader.attach()
            if self._cache.size is None:
                self._restart_head_locked()

    def close(self) -> None:
        """Cancel every fetch, wake blocked readers, wait for the fetch threads to let go,
        then release the connections. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            detach = not self._forked  # a forked child's reader that never read is not attached
            self._forked = False
            # A fetch with nothing left to receive (a reader took its last bytes, its pool
            # thread is completing it) is waited for below, not cancelled.
            victims = [f for f in self._active.values() if not self._cache.claim_done(f.cmd.id)]
        self._cancel(victims)
        if victims and self._handover is None:  # (that would break the handed-over body too)
            self._source.abort_all()  # also requests still waiting for their headers
        self._cache.close()
        deadline = time.monotonic() + self._opt.timeout.connect + 5.0
        with self._lock:
            while self._active:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("closing %s: %d fetches did not stop in time", self._source.url, len(self._active))
                    break
                self._cond.wait(remaining)
            stopped = not self._active
        if stopped:  # else a late fetch may still write into a block
            self._cache.recycle()
        if detach:
            self._downloader.detach()
        self._source.close()

    @property
    def size(self) -> int:
        if self._forked:
            self._attach_after_fork()
        size = self._cache.known_size  # set once: no lock once known
        return size if size is not None else self._cache.wait_for_size()

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    @property
    def url(self) -> str:
        return self._source.url

    def buffered(self) -> List[Tuple[int, int]]:
        return list(self._cache.present())

    @property
    def priority(self) -> Priority:
        return self._priority

    def set_priority(self, priority: Union[Priority, str]) -> None:
        """Change the stream priority at any time: queued fetches move to their new slots
        now (running ones finish), later fetches are submitted with it."""
        priority = Priority.parse(priority)
        with self._lock:  # _submit_locked reads _priority under it too: no fetch slips through
            if priority is self._priority:
                return
            self._priority = priority
            self._downloader.reprioritize(self, priority)

    @property
    def filename(self) -> Optional[str]:
        return self._source.filename

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        pinned = self._source.pinned
        return (
            self._source.supports_ranges,
            pinned.etag if pinned else None,
            pinned.last_modified if pinned else None,
        )

    def stats(self) -> StreamStats:
        offline = self._source.offline  # the source's own lock, not taken under ours
        with self._lock:
            return self._counts.snapshot(self._cache.bytes_held, offline)

    # -- reading -----------------------------------------------------------------------
    def interrupt(self) -> None:
        """A read waiting for bytes raises ``InterruptedError`` (see ``SparseCache.interrupt``);
        a fetch such a read runs itself (inline) or receives itself (taken over) is
        cancelled, so it cannot keep the read blocked on a stalled server."""
        self._cache.interrupt()
        self._fetcher.turns.interrupt()
        with self._lock:
            inline = [f for f in self._active.values() if (f.for_reader and f.started) or f.reader_holds]
        self._cancel(inline)

    def read_at(self, pos: int, out: memoryview) -> int:
        """Fill ``out`` from ``pos``; fewer bytes only at the end of the resource."""
        if not self._forked:
            if self._cache.whole:  # every byte held: the short way
                n = self._read_held(pos, out)
                if n >= 0:
                    return n
            elif len(out) <= _SHORT_READ:  # a decoder's read, most often present
                n = self._read_present(pos, out)
                if n >= 0:
                    return n

        def copy(pieces: List[memoryview]) -> int:
            done = 0
            for piece in pieces:
                out[done : done + len(piece)] = piece
                done += len(piece)
            return done

        return self._read(pos, len(out), copy) or 0

    def _read_held(self, pos: int, out: memoryview) -> int:
        """A read of a whole resource: the copy, the cursor and the counts in one hold of
        each lock (a decoder makes thousands of these per file)."""
        with self._lock:
            n = self._cache.copy_held(pos, out)
            if n <= 0:
                return n  # -1: the long way; 0: nothing to read, not a hit, no Seek
            previous_end = self._hit_locked(pos, pos + n)
        self._note_seek(previous_end, pos, True)
        return n

    def _hit_locked(self, pos: int, end: int) -> int:
        """Move the cursor over a read served from the cache and count it; returns where the
        read before it ended."""
        pattern = self._pattern
        previous_end = pattern.end
        if pos == previous_end:  # AccessPattern.record's usual case, inlined: the run grows
            pattern.run += end - pos
            pattern.cursor, pattern.end = pos, end
        else:
            pattern.record(pos, end, self._opt.read_behind)
        counts = self._counts
        counts.bytes_served += end - pos
        counts.cache_hits += 1
        return previous_end

    def _note_seek(self, previous_end: int, pos: int, hit: bool) -> None:
        if pos != previous_end and self.events.has_subscribers:  # a read that does not continue the last
            self._publish(Seek(previous_end, pos, hit))

    def _read_present(self, pos: int, out: memoryview) -> int:
        """A hit in two lock holds (the stream's, the cache's inside it): the copy, the
        counts, and read-ahead topped up if the window needs it; -1 when not all of it is
        present (nothing done: the long way follows)."""
        size = self._cache.known_size
        if size is None or pos >= size:
            return -1
        if pos + len(out) > size:
            out = out[: size - pos]
        n = len(out)
        if n == 0:
            return 0  # nothing to read: not a hit, no Seek (as the long way)
        window = self._window(pos, pos + n)
        with self._lock:
            busy = self._busy_locked()
            free_from = self._cache.copy_present(pos, out, window, free=not busy)
            if free_from < 0:
                return -1
            previous_end = self._hit_locked(pos, pos + n)
            if not busy and not self._planned(free_from, size):
                self._schedule_locked()
        self._note_seek(previous_end, pos, True)
        return n

    def read_bytes(self, pos: int, n: int) -> bytes:
        """``n`` bytes from ``pos`` (fewer only at the end) in one copy out of the cache."""
        return self._read(pos, n, joined) or b""

    def _read(self, pos: int, n: int, consume):
        if self._forked:
            self._attach_after_fork()
        size = self._cache.known_size
        if size is None:
            size = self.size
        if pos >= size or n <= 0:
            return None
        end = min(size, pos + n)
        if self._cache.whole:  # every byte held (the usual audio file once in): one short way
            with self._lock:
                result = self._cache.read_held(pos, end - pos, consume)
                if result is not None:
                    previous_end = self._hit_locked(pos, end)
            if result is not None:
                self._note_seek(previous_end, pos, True)
                return result
        previous_end = self._pattern.end
        hit, here, counted = self._prepare_read(pos, end)
        self._note_seek(previous_end, pos, hit)
        if counted:  # a plain hit: one more lock hold, the copy
            ready, result = self._cache.read_when_present(pos, end - pos, consume)
            if ready is Wait.READY:
                return result
            # evicted since, or the stream failed (raised above): the long way, counted already
        if not hit and self.events.has_subscribers:
            self._publish(ReaderWaiting(pos))
        waited_from = time.monotonic()
        seen = -1  # take a running fetch over at once; after a miss, once one has a body
        turns = self._fetcher.turns
        # Only a read that misses holds the pool threads back (see turns.py): one served
        # from the cache leaves them receiving ahead (a decoder's 8 KiB reads between its
        # decoding would otherwise keep read-ahead from ever overlapping the decoding).
        since = None if hit else turns.enter()
        try:
            while True:
                if here is not None:
                    self._run_own(here, since is not None)
                    here = None
                if seen == -1:
                    ready, result = self._cache.read_when_present(pos, end - pos, consume, takeover=seen)
                else:  # this may wait: for a fetch to start, answer, or end
                    turns.block()
                    try:
                        ready, result = self._cache.read_when_present(pos, end - pos, consume, takeover=seen)
                    finally:
                        turns.unblock()
                if ready is Wait.READY:
                    break
                if since is None:  # the hit was evicted meanwhile: this read waits after all
                    since = turns.enter()
                if ready is Wait.CLAIMED:
                    fetch_id, pokes = result
                    seen = -1 if self._take_over(fetch_id, end, since) else pokes
                    continue
                seen = -1
                here = self._demand(pos, end)
        finally:
            if since is not None:
                turns.leave()
        waited = time.monotonic() - waited_from
        if not hit and self.events.has_subscribers:
            self._publish(ReaderResumed(pos, waited))
        if counted:
            return result
        with self._lock:
            self._counts.bytes_served += end - pos
            if hit:
                self._counts.cache_hits += 1
            else:
                self._counts.waits += 1
                self._counts.time_waited += waited
        return result

    def _run_own(self, cmd: FetchCommand, inside: bool) -> None:
        """Run the fetch of the bytes this read waits for on the reader's thread. ``inside``:
        the read counts as in ``read()`` for the turns; while it receives its own body it
        takes no other, so the pool threads receive theirs meanwhile (a read-ahead body left
        behind by a jump would otherwise wait, holding its place and connection, for as
        long as the reader keeps reading elsewhere)."""
        turns = self._fetcher.turns
        if inside:
            turns.block()
        try:
            self._hand_over(cmd, inline=True)
        finally:
            if inside:
                turns.unblock()

    def _take_over(self, fetch_id: int, end: int, since: int) -> bool:
        """Receive the bytes this reader waits for on its own thread, from the body of the
        running fetch that claims them (see :mod:`.turns`); False if it has none to take."""
        with self._lock:
            fetch = self._active.get(fetch_id)
            if fetch is None or not fetch.started or fetch.cmd.id == self._tail_probe or self._closed:
                return False
            fetch.reader_holds = True  # before take(): interrupt() sees it, or take() sees interrupt()
        try:
            got = self._fetcher.serve_reader(fetch, end, since)
        finally:
            with self._lock:
                fetch.reader_holds = False
        if got:
            with self._lock:
                self._counts.takeovers += 1
                self._counts.bytes_by_reader += got
        return got > 0
