"""RemoteReader: the fetch scheduling of one remote resource.

It decides (through the pure functions in ``planning``) which bytes to fetch next, submits
fetch commands to the shared Downloader, streams their bodies into the SparseCache, and
cancels fetches the reader no longer needs after a far seek (epoch cancel). A reader that
misses and would wait for every byte of the new fetch runs it on its own thread when the
Downloader has a place for it (``Downloader.try_run_inline``; a random reader's usual case).

Ownership: ``self._cond`` guards ``_active``, the access pattern, ``_closed`` and
``_error``. Lock order: ``self._cond`` -> cache condition -> downloader lock; the cache and
the downloader never call back while holding theirs. ``Downloader.cancel`` may complete a
command synchronously, so it is only ever called with ``self._cond`` released.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from .cache import SparseCache, Wait
from .downloader import Downloader, FetchCommand, Outcome
from .events import (
    Event,
    EventBus,
    FirstByte,
    Progress,
    ReaderResumed,
    ReaderWaiting,
    RequestCompleted,
    RequestFailed,
    RequestRetrying,
    Seek,
)
from .errors import (
    ConnectionFailedError,
    InvalidResponseError,
    StreamError,
    TruncatedBodyError,
    server_unreachable,
)
from .options import StreamOptions
from .planning import FetchPlan, Priority, first_missing, keep_running, next_fetch, tail_fetch
from .sources.base import Abort, Body, Source
from .stats import StreamStats

log = logging.getLogger(__name__)

_UNKNOWN_END = 1 << 62  # claim end while a body's length is unknown
_MIN_READ = 16 * 1024  # smallest socket read into the cache
_MIN_PROGRESS = 16 * 1024  # a failed attempt that stored less counts as no progress
_SMALL_STEP_BACK = 256 * 1024  # decoders step back a few frames; farther is a random jump
_RUN_HERE_EXTRA = 0.0005  # a reader runs a fetch itself if its bytes past the read take < 0.5 ms


@dataclass
class _Fetch:
    cmd: FetchCommand
    plan: FetchPlan
    handle: Abort
    started: bool = False
    began: float = 0.0  # time.monotonic() when the run function started


class _LinkEstimate:
    """Smoothed time-to-first-byte and bandwidth, to judge what 'soon' means."""

    def __init__(self) -> None:
        self.ttfb = 0.05
        self.bandwidth = 1e6

    def record(self, ttfb: float, nbytes: int, duration: float) -> None:
        self.ttfb = 0.7 * self.ttfb + 0.3 * ttfb
        if nbytes >= 64 * 1024 and duration > 0:
            self.bandwidth = 0.7 * self.bandwidth + 0.3 * (nbytes / duration)

    def run_here_slack(self) -> int:
        """Bytes past a read that its reader may wait for to fetch it itself (no hand-offs)."""
        return int(self.bandwidth * _RUN_HERE_EXTRA)

    def soon_bytes(self, floor: int) -> int:
        """Bytes a running fetch delivers in the time a new request needs for its first byte."""
        return max(floor, int(self.bandwidth * self.ttfb))


class AccessPattern:
    """How the reader moves, to size read-ahead like an OS page cache does: a random reader
    gets only what it asks for (no wasted fetches to cancel), a sequential one a window
    that doubles with its run up to ``read_ahead``. Gaps behind the cursor are filled only
    once the reader has been seen stepping back (FLAC and MP3 decoders do)."""

    def __init__(self) -> None:
        self.cursor = 0
        self.end = 0  # end of the previous read
        self.run = 0  # bytes read contiguously up to ``end``
        self.went_back = False

    def record(self, pos: int, end: int, read_behind: int) -> None:
        if self.cursor <= pos <= self.end:
            self.run += max(0, end - self.end)
        elif pos < self.cursor and self.cursor - pos < min(read_behind, _SMALL_STEP_BACK):
            self.went_back = True  # a decoder re-reading a little: keep the run
        else:  # a jump: sequential only once the next read continues this one
            self.run = 0
            self.went_back = False
        self.cursor, self.end = pos, max(end, pos)

    def read_ahead(self, limit: int, floor: int) -> int:
        return max(self.end - self.cursor, min(limit, max(floor, 2 * self.run)))


class RemoteReader:
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
        self._cond = threading.Condition()
        self._active: Dict[int, _Fetch] = {}
        self._pattern = AccessPattern()
        self._tail_probe: Optional[int] = None  # id of the suffix request sent at open
        self._closed = False
        self._error: Optional[BaseException] = None
        # Offline replay of a disk cache: the failure of a fetch the reader did not wait on.
        # Only bytes held on disk are fetched from then on; a reader reaching a gap fails.
        self._unreachable: Optional[StreamError] = None
        self._link = _LinkEstimate()
        self._counts: Dict[str, float] = dataclasses.asdict(StreamStats())
        self.events = EventBus(source.url)  # this stream's events (issue #4)

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        """Start the first fetch and block until the total length is known."""
        self._downloader.attach()
        try:
            with self._cond:
                self._submit_locked(FetchPlan(0, self._opt.first_fetch, Priority.HIGH))
                if self._opt.tail:
                    self._submit_tail_probe_locked()
            self._cache.wait_for_size()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Cancel every fetch, wake blocked readers, wait for the fetch threads to let go,
        then release the connections. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            victims = list(self._active.values())
        self._cancel(victims)
        if victims:
            self._source.abort_all()  # also requests still waiting for their headers
        self._cache.close()
        deadline = time.monotonic() + self._opt.timeout.connect + 5.0
        with self._cond:
            while self._active:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("closing %s: %d fetches did not stop in time", self._source.url, len(self._active))
                    break
                self._cond.wait(remaining)
        self._downloader.detach()
        self._source.close()

    @property
    def size(self) -> int:
        return self._cache.wait_for_size()

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
        with self._cond:  # _submit_locked reads _priority under it too: no fetch slips through
            if priority is self._priority:
                return
            self._priority = priority
            self._downloader.reprioritize(self, priority)

    def _publish(self, event: Event) -> None:
        if self.events.has_subscribers:
            self.events.publish(event)

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        pinned = self._source.pinned
        return (
            self._source.supports_ranges,
            pinned.etag if pinned else None,
            pinned.last_modified if pinned else None,
        )

    def stats(self) -> StreamStats:
        with self._cond:
            return StreamStats(**{**self._counts, "bytes_cached": self._cache.bytes_held})

    # -- reading -----------------------------------------------------------------------
    def read_at(self, pos: int, out: memoryview) -> int:
        """Fill ``out`` from ``pos``; fewer bytes only at the end of the resource."""

        def copy(pieces: List[memoryview]) -> int:
            done = 0
            for piece in pieces:
                out[done : done + len(piece)] = piece
                done += len(piece)
            return done

        return self._read(pos, len(out), copy) or 0

    def read_bytes(self, pos: int, n: int) -> bytes:
        """``n`` bytes from ``pos`` (fewer only at the end) in one copy out of the cache."""
        return self._read(pos, n, b"".join) or b""

    def _read(self, pos: int, n: int, consume):
        size = self.size
        if pos >= size or n <= 0:
            return None
        end = min(size, pos + n)
        previous_end = self._pattern.end  # a read that does not continue the last one is a Seek
        hit, here = self._prepare_read(pos, end)
        if pos != previous_end:
            self._publish(Seek(previous_end, pos, hit))
        if not hit:
            self._publish(ReaderWaiting(pos))
        waited_from = time.monotonic()
        while True:
            if here is not None:
                self._downloader.try_run_inline(here)
            ready, result = self._cache.read_when_present(pos, end - pos, consume)
            if ready is Wait.READY:
                break
            here = self._demand(pos, end)
        waited = time.monotonic() - waited_from
        if not hit:
            self._publish(ReaderResumed(pos, waited))
        with self._cond:
            self._counts["bytes_served"] += end - pos
            if hit:
                self._counts["cache_hits"] += 1
            else:
                self._counts["waits"] += 1
                self._counts["time_waited"] += waited
        return result

    def _prepare_read(self, pos: int, end: int) -> Tuple[bool, Optional[FetchCommand]]:
        """Move the cursor; on a miss nobody will serve soon, cancel what the reader no
        longer needs (epoch cancel). Tops up read-ahead. Returns whether the bytes are
        present, and a fetch of bytes the reader waits for, for it to run (see ``_read``)."""
        victims: List[_Fetch] = []
        here = None
        with self._cond:
            self._pattern.record(pos, end, self._opt.read_behind)
            self._cache.set_window(
                max(0, pos - self._opt.read_behind), max(end, pos + self._opt.read_ahead + self._opt.max_fetch)
            )
            with self._cache.condition:
                missing = self._cache.present_unlocked().covered_until(pos)
                hit = missing >= end
                if not hit and self._source.supports_ranges:
                    soon = self._link.soon_bytes(self._opt.min_fetch)
                    if not any(self._keeps(f, missing, soon) for f in self._active.values()):
                        # A new epoch: what served the old reading position goes.
                        victims = [
                            f
                            for f in self._active.values()
                            if f.cmd.id != self._tail_probe and not self._keeps(f, missing, soon)
                        ]  # the tail probe is small and decoders need the tail: never cut
                        for f in victims:
                            self._cache.shrink_claim(f.cmd.id, 0)
            if not victims:
                here = self._schedule_locked(need=(pos, end))
        self._cancel(victims)
        if victims:
            with self._cond:
                here = self._schedule_locked(need=(pos, end))
        return hit, here

    def _keeps(self, fetch: _Fetch, target: int, soon: int) -> bool:
        """Is this fetch still useful for a reader at ``target``? (cache lock held)"""
        if fetch.cmd.id == self._tail_probe:
            size = self._cache.size
            return size is not None and target >= size - self._opt.tail
        claim = self._cache.claim_progress(fetch.cmd.id)
        if claim is None:
            return False
        pos, end = claim
        if not fetch.started:
            return pos <= target < end
        return keep_running(pos, end, target, soon)

    def _demand(self, pos: int, end: int) -> Optional[FetchCommand]:
        """The reader waits on bytes of ``[pos, end)`` nobody fetches: fetch the first such
        gap now, whatever the read-ahead window says (returned for the reader to run if it
        lies within ``[pos, end)``)."""
        with self._cond:
            if self._closed or self._error is not None:
                return None  # the cache raises for the waiter
            if not self._source.supports_ranges:
                self._restart_whole_body_locked()
                return None
            if self._out_of_reach_locked(pos):
                self._fail_locked(
                    ConnectionFailedError(
                        "bytes not in the disk cache, and the server is unreachable",
                        url=self._source.url,
                        byte_range=(pos, end),
                        cause=self._unreachable,
                    )
                )
                return None
            size = self._cache.size
            with self._cache.condition:
                present, claimed = self._cache.present_unlocked(), self._cache.claimed_unlocked()
                start = first_missing(present, claimed, pos)
                if start >= end:
                    return None  # claimed meanwhile
                plan = next_fetch(
                    present,
                    claimed,
                    cursor=start,
                    size=size,
                    read_ahead=end - start,
                    read_behind=0,
                    min_fetch=self._opt.min_fetch,
                    max_fetch=self._opt.max_fetch,
                )
            assert plan is not None and plan.start == start, (plan, start)
            here = plan.end <= end + self._link.run_here_slack()
            cmd = self._submit_locked(plan, here=here)
            return cmd if here else None

    # -- scheduling (self._cond held) ----------------------------------------------------
    def _plan_locked(self, cursor: int) -> Optional[FetchPlan]:
        size = self._cache.size
        if size is None:
            return None
        with self._cache.condition:
            return next_fetch(
                self._cache.present_unlocked(),
                self._cache.claimed_unlocked(),
                cursor=cursor,
                size=size,
                read_ahead=self._pattern.read_ahead(self._opt.read_ahead, self._opt.min_fetch),
                read_behind=self._opt.read_behind if self._pattern.went_back else 0,
                min_fetch=self._opt.min_fetch,
                max_fetch=self._opt.max_fetch,
            )

    def _schedule_locked(self, need: Optional[Tuple[int, int]] = None) -> Optional[FetchCommand]:
        """Keep up to ``max_outstanding`` fetches going for the read-ahead window.

        ``need``: the ``[pos, end)`` a reader is about to block on. The first fetch lying
        inside it (or reaching past it by what the link moves in ``_RUN_HERE_EXTRA``) is
        registered but not submitted: it is returned, for the reader to run itself
        (``Downloader.try_run_inline``), as it waits for (nearly) all of it anyway."""
        here = None
        if self._closed or self._error is not None or not self._source.supports_ranges:
            return here
        slack = self._link.run_here_slack()
        while len(self._active) < self._opt.max_outstanding:
            plan = self._plan_locked(self._pattern.cursor)
            if plan is None or self._out_of_reach_locked(plan.start):
                break
            inside = (
                here is None and need is not None and need[0] <= plan.start < need[1] and plan.end <= need[1] + slack
            )
            cmd = self._submit_locked(plan, here=inside)
            if inside:
                here = cmd
        return here

    def _out_of_reach_locked(self, pos: int) -> bool:
        """Offline after a failed fetch, and byte ``pos`` is not on disk: no fetch can bring it."""
        return self._unreachable is not None and not self._source.holds(pos)

    def _restart_head_locked(self) -> None:
        if self._closed or self._error is not None:
            return
        with self._cache.condition:
            start = self._cache.present_unlocked().covered_until(0)
        self._submit_locked(FetchPlan(start, start + self._opt.first_fetch, Priority.HIGH))

    def _restart_whole_body_locked(self) -> None:
        """A server without Range support: one streaming GET of everything (prefix skipped)."""
        if self._active or self._closed:
            return
        size = self._cache.size
        with self._cache.condition:
            start = self._cache.present_unlocked().covered_until(0)
        if size is not None and start >= size:
            return
        self._submit_locked(FetchPlan(start, size if size is not None else _UNKNOWN_END, Priority.HIGH))

    def _submit_locked(self, plan: FetchPlan, here: bool = False) -> FetchCommand:
        """Register and claim a fetch; submit it unless the reader runs it ``here``."""
        cmd = self._register_locked(
            self._run_fetch,
            plan,
            label=f"{self._source.url} bytes={plan.start}-{plan.end - 1}",
            byte_range=(plan.start, plan.end) if plan.end < _UNKNOWN_END else None,
        )
        self._cache.claim(cmd.id, plan.start, plan.end)
        if not here:
            self._downloader.submit(cmd)
        return cmd

    def _submit_tail_probe_locked(self) -> None:
        """Ask for the last bytes together with the head: containers read their end at open
        (Ogg duration, ID3v1), and the length is not known yet to ask for it by offset."""
        cmd = self._register_locked(
            self._run_tail_probe,
            FetchPlan(0, 0, Priority.HIGH),
            label=f"{self._source.url} last {self._opt.tail} bytes",
            byte_range=None,
        )
        self._tail_probe = cmd.id
        self._downloader.submit(cmd)

    def _register_locked(self, run, plan: FetchPlan, *, label: str, byte_range) -> FetchCommand:
        cmd = FetchCommand(
            run,
            self._on_complete,
            stream_priority=self._priority,
            request_priority=plan.priority,
            label=label,
            owner=self,
            url=self._source.url,
            byte_range=byte_range,
            events=self.events,
        )
        fetch = self._active[cmd.id] = _Fetch(cmd, plan, self._source.new_abort())
        cmd.abort = fetch.handle.abort  # the Downloader may cancel it too (preemption)
        return cmd

    def _claim_tail_for_probe_locked(self) -> None:
        """Once the length is known, the pending tail probe claims the tail's gap, so a
        reader waiting there waits for it instead of fetching the same bytes again."""
        size = self._cache.size
        if self._tail_probe is None or size is None:
            return
        with self._cache.condition:
            plan = tail_fetch(
                self._cache.present_unlocked(), self._cache.claimed_unlocked(), size=size, tail=self._opt.tail
            )
            if plan is not None:
                self._cache.claim(self._tail_probe, plan.start, plan.end)

    def _cancel(self, victims: List[_Fetch]) -> None:
        for fetch in victims:
            fetch.handle.abort()
            self._downloader.cancel(fetch.cmd)

    # -- on a pool thread --------------------------------------------------------------
    def _run_fetch(self, cmd: FetchCommand) -> None:
        with self._cond:
            fetch = self._active.get(cmd.id)
            if fetch is None:
                return
            fetch.started = True
            fetch.began = time.monotonic()
        retry = self._opt.retry
        pos = fetch.plan.start
        failures = 0
        while not cmd.cancelled.is_set():
            claim = self._cache.claim_progress(cmd.id)
            if claim is None or claim[0] >= claim[1]:
                return
            pos = claim[0]
            try:
                self._fetch_once(cmd, fetch, pos, claim[1])
                return
            except StreamError as exc:
                if cmd.cancelled.is_set() or fetch.handle.aborted:
                    return
                now = self._cache.claim_progress(cmd.id)
                # Progress is a real step forward (or the end), so a server that cuts every
                # answer after a few bytes ends in an error instead of crawling for hours.
                progressed = now is not None and (now[0] - pos >= _MIN_PROGRESS or now[0] >= now[1])
                failures = 1 if progressed else failures + 1
                if not retry.is_transient(exc) or failures >= retry.attempts:
                    raise
                delay = retry.delay(failures, getattr(exc, "retry_after", None))
                log.info("retrying %s in %.2fs after %s", cmd.label, delay, exc)
                self._publish(RequestRetrying(cmd.id, failures + 1, delay, str(exc), self._source.url))
                with self._cond:
                    self._counts["retries"] += 1
                cmd.cancelled.wait(delay)  # interruptible backoff

    def _run_tail_probe(self, cmd: FetchCommand) -> None:
        """Store what the suffix answer holds that nobody else fetches. Any failure here is
        quiet: the tail is then fetched by offset like any other gap."""
        with self._cond:
            fetch = self._active.get(cmd.id)
            if fetch is None:
                return
            fetch.started = True
            fetch.began = time.monotonic()
        try:
            body = self._source.fetch_suffix(self._opt.tail, fetch.handle)
        except StreamError as exc:
            log.debug("tail request of %s failed: %s", self._source.url, exc)
            return
        if body is None:
            return
        self._publish(FirstByte(cmd.id, time.monotonic() - fetch.began, self._source.url))
        try:
            with self._cond:
                self._counts["requests"] += body.requests_sent
                if self._cache.size is None:
                    self._cache.set_size(body.total)
                    self._claim_tail_for_probe_locked()
                    self._schedule_locked()
            claim = self._cache.claim_progress(cmd.id)
            if claim is not None and claim[0] < claim[1]:
                self._copy_body(cmd, body, claim[0])
        except StreamError as exc:
            log.debug("tail request of %s broke off: %s", self._source.url, exc)
        finally:
            body.close()

    def _fetch_once(self, cmd: FetchCommand, fetch: _Fetch, pos: int, claim_end: int) -> None:
        started = time.monotonic()
        request_end = None if claim_end >= _UNKNOWN_END else claim_end
        body = self._source.fetch(pos, request_end, fetch.handle)
        ttfb = time.monotonic() - started
        self._publish(FirstByte(cmd.id, ttfb, self._source.url))
        with self._cond:
            self._counts["requests"] += body.requests_sent
        try:
            self._on_response(cmd, body)
            delivered = self._copy_body(cmd, body, pos)
        finally:
            body.close()
        if not body.from_disk:  # the link estimate is of the network
            with self._cond:
                self._link.record(ttfb, delivered, time.monotonic() - started)

    def _on_response(self, cmd: FetchCommand, body: Body) -> None:
        """Learn the length from the first response and fit the claim to the body."""
        if body.total is None and body.ranged:
            raise InvalidResponseError("206 without a total length", url=body.url)
        if not body.ranged:  # the whole body: the claim becomes exactly its extent
            self._cache.extend_claim(cmd.id, body.end if body.end is not None else _UNKNOWN_END)
            if body.end is not None:
                self._cache.shrink_claim(cmd.id, body.end)
        elif body.end is not None:
            self._cache.shrink_claim(cmd.id, body.end)
        if self._cache.size is None and body.total is not None:
            self._cache.set_size(body.total)
            with self._cond:
                if self._tail_probe is None:
                    self._schedule_tail_locked()
                else:
                    self._claim_tail_for_probe_locked()
                self._schedule_locked()

    def _schedule_tail_locked(self) -> None:
        if self._closed or not self._source.supports_ranges:
            return
        size = self._cache.size
        with self._cache.condition:
            plan = tail_fetch(
                self._cache.present_unlocked(), self._cache.claimed_unlocked(), size=size, tail=self._opt.tail
            )
        if plan is not None and not self._out_of_reach_locked(plan.start):
            self._submit_locked(plan)

    def _copy_body(self, cmd: FetchCommand, body: Body, pos: int) -> int:
        """Stream the body into the cache from ``pos``; returns the bytes stored."""
        if body.start < pos:
            _skip(body, pos - body.start, self._opt.chunk)
        stored = 0
        started = time.monotonic()
        rate = self._link.bandwidth
        counter = "bytes_from_disk" if body.from_disk else "bytes_fetched"
        while not cmd.cancelled.is_set():
            # A socket read returns only when its buffer is full: size it to ~50 ms of
            # transfer, so a reader waiting on the first bytes of it does not wait for a
            # whole chunk on a slow link, while a fast link reads whole blocks.
            elapsed = time.monotonic() - started
            if stored >= _MIN_READ and elapsed > 0:
                rate = stored / elapsed
            limit = max(_MIN_READ, min(self._opt.chunk, int(rate * 0.05)))
            buf = self._cache.write_buffer(cmd.id, pos, limit)
            if buf is None:
                break
            n = body.readinto(buf)
            if n == 0:
                if body.end is None:  # length unknown: the end is proven here
                    self._cache.set_size(pos)
                    self._cache.shrink_claim(cmd.id, pos)
                    break
                raise TruncatedBodyError(
                    f"body ended after {body.position - body.start} of {body.end - body.start} bytes",
                    url=body.url,
                    byte_range=(body.start, body.end),
                )
            self._cache.commit(cmd.id, pos, n)
            with self._cond:
                self._counts[counter] += n
            pos += n
            stored += n
            self._downloader.note_progress(n, cmd)  # the hang watchdog sees bytes arrive
            self._publish(Progress(cmd.id, n, cmd.bytes_received, self._source.url))
        return stored

    def _on_complete(self, cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None:
        self._cache.release(cmd.id)
        event: Optional[Event] = None
        with self._cond:
            fetch = self._active.pop(cmd.id, None)
            if outcome is Outcome.DONE and fetch is not None:
                duration = time.monotonic() - fetch.began if fetch.began else 0.0
                nbytes = cmd.bytes_received
                bandwidth = nbytes / duration if duration > 0 else 0.0
                event = RequestCompleted(cmd.id, nbytes, duration, bandwidth, self._source.url)
            elif outcome is Outcome.FAILED:
                event = RequestFailed(cmd.id, error, self._source.url)
            if cmd.id == self._tail_probe:
                self._tail_probe = None
                if self._cache.size is not None:
                    self._schedule_tail_locked()  # whatever the probe did not bring
            if outcome is Outcome.CANCELLED:
                self._counts["cancels"] += 1
            elif outcome is Outcome.FAILED and not self._closed:
                if self._source.offline and error is not None and server_unreachable(error):
                    self._unreachable = error  # a reader fails only on reaching a gap (_demand)
                else:
                    self._fail_locked(error)
            if self._cache.size is None and not self._active:
                self._restart_head_locked()  # preempted before the length was known
            self._schedule_locked()
            self._cond.notify_all()
        if event is not None:  # RequestCancelled comes from the Downloader itself
            self._publish(event)

    def _fail_locked(self, error: Optional[BaseException]) -> None:
        if not isinstance(error, StreamError):
            error = StreamError("fetch failed unexpectedly", url=self._source.url, cause=error)
        if self._error is None:
            self._error = error
            log.error("kithara-io: %s", error)
        self._cache.fail(self._error)


def _skip(body: Body, count: int, chunk: int) -> None:
    """Discard ``count`` bytes of a body that started before the bytes we need."""
    scratch = memoryview(bytearray(min(count, chunk)))
    while count > 0:
        n = body.readinto(scratch[: min(count, len(scratch))])
        if n == 0:
            raise TruncatedBodyError("body ended while skipping its prefix", url=body.url)
        count -= n
