"""Which fetches one remote stream runs: the scheduling half of RemoteReader.

:class:`FetchScheduling` turns the reader's position, the access pattern and what the cache
holds (planning's pure functions decide) into fetch commands on the Downloader: read-ahead
up to ``max_outstanding`` fetches, the tail probe, the fetch a waiting reader runs itself,
and the epoch cancel of fetches a far seek made useless. Every ``..._locked`` method runs
with the stream's ``_lock`` held (lock order: stream -> cache -> downloader).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from ..engine.downloader import Downloader, FetchCommand, Outcome
from ..errors import ConnectionFailedError, StreamClosedError, StreamError
from ..events import EventBus
from ..options import StreamOptions
from ..sources.base import Source
from ..stats import StreamCounters
from .cache import CacheView, SparseCache
from .fetching import UNKNOWN_END, Fetch, FetchLoop
from .planning import (
    AccessPattern,
    FetchPlan,
    LinkEstimate,
    Priority,
    first_missing,
    keep_running,
    next_fetch,
    tail_fetch,
)


class FetchScheduling:
    """Mixed into RemoteReader, whose state (below, set in its ``__init__``) it schedules
    from; a command's completion goes to the reader's ``_on_complete``, a failure that
    ends the stream to its ``_fail_locked``."""

    _lock: threading.RLock  # guards everything below (``_cond`` waits on it)
    _cond: threading.Condition
    _source: Source
    _downloader: Downloader
    _opt: StreamOptions
    _cache: SparseCache
    _fetcher: FetchLoop
    _link: LinkEstimate
    _pattern: AccessPattern
    _priority: Priority
    _active: Dict[int, Fetch]  # fetch id -> its fetch, from registration to completion
    _deferred: List[FetchCommand]  # read-ahead planned beside a reader's own fetch, not yet submitted
    _streaming: int  # how many of them have Fetch.streaming set
    _tail_probe: Optional[int]
    _counts: StreamCounters
    _unreachable: Optional[StreamError]
    _closed: bool
    _error: Optional[BaseException]
    events: EventBus

    if TYPE_CHECKING:  # the RemoteReader's

        def _on_complete(self, cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None: ...
        def _fail_locked(self, error: Optional[BaseException]) -> None: ...

    def _prepare_read(self, pos: int, end: int) -> Tuple[bool, Optional[FetchCommand], bool]:
        """Move the cursor; on a miss nobody will serve soon, cancel what the reader no
        longer needs (epoch cancel). Tops up read-ahead. Returns whether the bytes are
        present, a fetch of bytes the reader waits for, for it to run (see ``_read``), and
        whether the read was counted already (a hit needing no plan: one lock hold)."""
        victims: List[Fetch] = []
        here = None
        with self._lock:
            self._pattern.record(pos, end, self._opt.read_behind)
            complete, present_until, free_from, size = self._cache.look(pos, self._window(pos, end))
            if complete or (present_until >= end and (self._busy_locked() or self._planned(free_from, size))):
                # A hit and no fetch to add (all held, the usual audio file once in, or the
                # read-ahead window covered): no snapshot, no plan; counted here.
                self._counts.bytes_served += end - pos
                self._counts.cache_hits += 1
                return True, None, True
            missing = present_until  # the first byte from pos that is not present
            hit = missing >= end
            if not hit and self._active and self._source.supports_ranges:
                view = self._cache.view()  # what the running fetches are judged by
                soon = self._link.soon_bytes(self._opt.min_fetch)
                if not any(self._keeps(f, missing, soon, view) for f in self._active.values()):
                    # A new epoch: what served the old reading position goes.
                    victims = [
                        f
                        for f in self._active.values()
                        if f.cmd.id != self._tail_probe and not self._keeps(f, missing, soon, view)
                    ]  # the tail probe is small and decoders need the tail: never cut
                    for f in victims:
                        self._cache.shrink_claim(f.cmd.id, 0)
            if not victims:
                here = self._schedule_locked(need=(pos, end))
        self._cancel(victims, "epoch")
        if victims:
            with self._lock:
                here = self._schedule_locked(need=(pos, end))
        return hit, here, False

    def _window(self, pos: int, end: int) -> Tuple[int, int]:
        """The bytes a read of ``[pos, end)`` keeps from eviction: behind it and the
        read-ahead it may bring (see ``SparseCache.set_window``)."""
        opt = self._opt
        return max(0, pos - opt.read_behind), max(end, pos + opt.read_ahead + opt.max_fetch)

    def _busy_locked(self) -> bool:
        """May read-ahead add no fetch now: ``max_outstanding`` are running, or a body fills
        the link (read-ahead then waits until it nears its end)?"""
        return len(self._active) >= self._opt.max_outstanding or self._streaming > 0

    def _planned(self, free_from: int, size: Optional[int]) -> bool:
        """Is every byte of the read-ahead window present or claimed (``free_from``: the
        first that is neither, from the cursor), with nothing to fill behind either? Then
        ``_plan_locked`` would find nothing (the window as ``next_fetch`` sizes it)."""
        if size is None or self._pattern.went_back or not self._source.supports_ranges:
            return False
        cursor = min(self._pattern.cursor, size)
        ahead = self._pattern.read_ahead(self._opt.read_ahead, self._opt.min_fetch)
        return free_from >= min(size, cursor + max(ahead, 1))

    def _keeps(self, fetch: Fetch, target: int, soon: int, view: CacheView) -> bool:
        """Is this fetch still useful for a reader at ``target``?"""
        if fetch.cmd.id == self._tail_probe:
            return view.size is not None and target >= view.size - self._opt.tail
        claim = view.claims.get(fetch.cmd.id)
        if claim is None:
            return False
        pos, end = claim
        if not fetch.started:
            return pos <= target < end
        return keep_running(pos, end, target, soon)

    def _demand(self, pos: int, end: int) -> Optional[FetchCommand]:
        """The reader waits on bytes of ``[pos, end)`` nobody fetches: fetch the first such
        gap now, whatever the read-ahead window says (returned for the reader to run if it
        lies within ``[pos, end)``). Offline, a gap no fetch can bring fails the stream:
        the gap, not ``pos`` (a read may start in bytes held on disk and end in a gap)."""
        with self._lock:
            if self._closed or self._error is not None:
                return None  # the cache raises for the waiter
            if not self._source.supports_ranges:
                self._restart_whole_body_locked()
                return None
            view = self._cache.view()
            start = first_missing(view.present, view.claimed, pos)
            if start >= end or view.size is None:  # the size is known from open() on
                return None  # claimed meanwhile
            if self._out_of_reach_locked(start):
                self._fail_locked(
                    ConnectionFailedError(
                        "bytes not in the disk cache, and the server is unreachable",
                        url=self._source.url,
                        byte_range=(pos, end),
                        cause=self._unreachable,
                    )
                )
                return None
            plan = next_fetch(
                view.present,
                view.claimed,
                cursor=start,
                size=view.size,
                read_ahead=end - start,
                read_behind=0,
                min_fetch=self._opt.min_fetch,
                max_fetch=self._opt.max_fetch,
                need_end=end,
            )
            assert plan is not None and plan.start == start, (plan, start)
            here = plan.end <= end + self._link.run_here_slack()
            cmd = self._submit_locked(plan, here=here)
            return cmd if here else None

    # -- scheduling (self._lock held) ----------------------------------------------------
    def _plan_locked(self, cursor: int, need_end: int = 0) -> Optional[FetchPlan]:
        """The next fetch of the read-ahead window from ``cursor``; one a reader waits for
        covers its read up to ``need_end`` (see ``planning.fetch_length``)."""
        opt, pattern = self._opt, self._pattern
        read_ahead = pattern.read_ahead(opt.read_ahead, opt.min_fetch)
        read_behind = opt.read_behind if pattern.went_back else 0
        reading_on = pattern.run > 0  # else it jumped: its fetches do not grow
        amortize = self._link.amortizing_bytes() if reading_on else 0

        def plan(present, claimed, size: Optional[int]) -> Optional[FetchPlan]:
            if size is None:
                return None
            return next_fetch(
                present,
                claimed,
                cursor=cursor,
                size=size,
                read_ahead=read_ahead,
                read_behind=read_behind,
                min_fetch=opt.min_fetch,
                max_fetch=opt.max_fetch,
                amortize=amortize,
                need_end=need_end,
                grow=reading_on,
            )

        return self._cache.consult(plan)  # no snapshot of a random reader's many ranges

    def _schedule_locked(self, need: Optional[Tuple[int, int]] = None) -> Optional[FetchCommand]:
        """Keep up to ``max_outstanding`` fetches going for the read-ahead window.

        ``need``: the ``[pos, end)`` a reader is about to block on. The first fetch lying
        inside it (or reaching past it by what the link moves in ``_RUN_HERE_EXTRA``) is
        registered but not submitted: it is returned, for the reader to run itself
        (``Downloader.try_run_inline``), as it waits for (nearly) all of it anyway. Read-ahead
        planned after it is submitted once that fetch has its place (``_hand_over``): queued
        first, it would take the place, and the reader's fetch would wait behind it."""
        here = None
        if self._closed or self._error is not None or not self._source.supports_ranges:
            return here
        slack = self._link.run_here_slack()
        while len(self._active) < self._opt.max_outstanding and self._error is None:  # set if refused
            if (need is None or here is not None) and (
                self._streaming or self._planned(self._cache.first_free(self._pattern.cursor), self._cache.known_size)
            ):
                break  # the window is covered (no snapshot, no plan), or the link is busy
            plan = self._plan_locked(self._pattern.cursor, need[1] if need is not None and here is None else 0)
            if plan is None or self._out_of_reach_locked(plan.start):
                break
            inside = (
                here is None and need is not None and need[0] <= plan.start < need[1] and plan.end <= need[1] + slack
            )
            if self._streaming and not inside:
                break  # read-ahead waits until the body filling the link nears its end
            cmd = self._submit_locked(plan, here=inside, defer=here is not None)
            if inside:
                here = cmd
        return here

    def _out_of_reach_locked(self, pos: int) -> bool:
        """Offline after a failed fetch, and byte ``pos`` is not on disk: no fetch can bring it."""
        return self._unreachable is not None and not self._source.holds(pos)

    def _restart_head_locked(self) -> None:
        if self._closed or self._error is not None:
            return
        start = self._cache.view().present.covered_until(0)
        self._submit_locked(FetchPlan(start, start + self._opt.first_fetch, Priority.HIGH))

    def _restart_whole_body_locked(self) -> None:
        """A server without Range support: one streaming GET of everything (prefix skipped)."""
        if self._active or self._closed:
            return
        view = self._cache.view()
        size, start = view.size, view.present.covered_until(0)
        if size is not None and start >= size:
            return
        self._submit_locked(FetchPlan(start, size if size is not None else UNKNOWN_END, Priority.HIGH))

    def _submit_locked(self, plan: FetchPlan, here: bool = False, defer: bool = False) -> FetchCommand:
        """Register and claim a fetch; submit it unless the reader runs it ``here`` (or,
        ``defer``, once the reader's own fetch has its place: ``_submit_deferred``)."""
        cmd = self._register_locked(
            self._fetcher.run,
            plan,
            label=f"{self._source.url} bytes={plan.start}-{plan.end - 1}",
            byte_range=(plan.start, plan.end) if plan.end < UNKNOWN_END else None,
        )
        self._cache.claim(cmd.id, plan.start, plan.end)
        fetch = self._active[cmd.id]
        # From now, read-ahead waits for it (until FetchLoop._copy_body says otherwise): a
        # body its reader runs fills the link as much as one a pool thread runs.
        self._set_streaming_locked(fetch, self._link.in_order(plan.end - plan.start, self._opt.min_fetch))
        if here:
            fetch.for_reader = True
        elif defer:
            self._deferred.append(cmd)
        else:
            self._hand_over(cmd)
        return cmd

    def _submit_deferred(self) -> None:
        """Submit the read-ahead held back while a reader's own fetch was handed over."""
        with self._lock:
            deferred, self._deferred = self._deferred, []
            for cmd in deferred:
                self._hand_over(cmd)

    def _submit_tail_probe_locked(self) -> None:
        """Ask for the last bytes together with the head: containers read their end at open
        (Ogg duration, ID3v1), and the length is not known yet to ask for it by offset."""
        cmd = self._register_locked(
            self._fetcher.run_tail_probe,
            FetchPlan(0, 0, Priority.HIGH),
            label=f"{self._source.url} last {self._opt.tail} bytes",
            byte_range=None,
        )
        self._tail_probe = cmd.id
        self._hand_over(cmd)

    def _hand_over(self, cmd: FetchCommand, inline: bool = False) -> None:
        """Submit ``cmd`` (or run it here, see ``_read``). A Downloader closed under the
        stream fails it with StreamClosedError instead of raising its RuntimeError."""
        try:
            if inline:
                self._downloader.try_run_inline(cmd, started=self._submit_deferred)
            else:
                self._downloader.submit(cmd)
        except RuntimeError:
            if not self._downloader.closed:
                raise
            with self._lock:  # reentrant: callers may hold it
                self._forget_locked(cmd.id)
                self._cache.release(cmd.id)
                self._fail_locked(StreamClosedError("the downloader of this stream was closed", url=self._source.url))
        finally:
            if inline and self._deferred:  # not started (closed, cancelled): submitted anyway
                self._submit_deferred()

    def _forget_locked(self, fetch_id: int) -> Optional[Fetch]:
        """Drop a fetch from ``_active`` (it completed, or never ran), keeping ``_streaming`` right."""
        fetch = self._active.pop(fetch_id, None)
        if fetch is not None:
            self._set_streaming_locked(fetch, False)
        return fetch

    def _set_streaming_locked(self, fetch: Fetch, on: bool) -> bool:
        """Set ``fetch.streaming``, keeping ``_streaming`` its count; True if it changed."""
        if fetch.streaming == on:
            return False
        fetch.streaming = on
        self._streaming += 1 if on else -1
        return True

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
        fetch = self._active[cmd.id] = Fetch(cmd, plan, self._source.new_abort(), turns=self._fetcher.turns)
        cmd.abort = fetch.abort  # the Downloader may cancel it too (preemption)
        return cmd

    def _claim_tail_for_probe_locked(self) -> None:
        """Once the length is known, the pending tail probe claims the tail's gap, so a
        reader waiting there waits for it instead of fetching the same bytes again."""
        view = self._cache.view()
        if self._tail_probe is None or view.size is None:
            return
        plan = tail_fetch(view.present, view.claimed, size=view.size, tail=self._opt.tail)
        if plan is not None:  # claims change only under self._lock, which is held
            self._cache.claim(self._tail_probe, plan.start, plan.end)

    def _cancel(self, victims: List[Fetch], reason: str = "cancelled") -> None:
        for fetch in victims:
            # Cancelled first, then aborted: a fetch loop that sees the abort first would end
            # its command as done (a RequestCompleted of fewer bytes) instead of cancelled.
            self._downloader.cancel(fetch.cmd, reason)
            fetch.abort()

    def _schedule_tail_locked(self) -> None:
        if self._closed or not self._source.supports_ranges:
            return
        view = self._cache.view()
        if view.size is None:  # known from open() on
            return
        plan = tail_fetch(view.present, view.claimed, size=view.size, tail=self._opt.tail)
        if plan is not None and not self._out_of_reach_locked(plan.start):
            self._submit_locked(plan)
