"""What one remote stream does for its fetch loop: the hosting half of RemoteReader.

:class:`FetchHosting` is the stream as ``fetching.FetchLoop`` sees it (``fetching.FetchHost``):
which fetch a command is, counters and events, the length once an answer tells it, the
link's measurements, a first answer without a length kept for a live reader, and each
command's completion (exactly once, from the Downloader), which schedules what follows.
Its state is the stream's (see ``schedule.FetchScheduling``), under the stream's ``_lock``.
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Tuple

from ..engine.downloader import FetchCommand, Outcome
from ..errors import StreamError, server_unreachable
from ..events import REQUEST_EVENTS, Event, RequestCompleted, RequestFailed
from ..sources.base import Abort, Body
from .fetching import Fetch
from .schedule import FetchScheduling

log = logging.getLogger(__name__)


class FetchHosting(FetchScheduling):
    """Mixed into RemoteReader: the ``FetchHost`` its fetch loop calls, and its events."""

    _handover: Optional[Tuple[Body, Abort]]  # a first answer without a length (RemoteReader.open)

    def listened(self, request: bool = False) -> bool:
        """Does anyone listen to this stream's events (``request``: or to the Downloader's,
        which also receives its request events)? Publishers build an event only then."""
        return self.events.has_subscribers or (request and self._downloader.events.has_subscribers)

    def _publish(self, event: Event) -> None:
        if self.events.has_subscribers:
            self.events.publish(event)
        if isinstance(event, REQUEST_EVENTS):  # the Downloader's bus sees every stream's requests
            self._downloader.events.publish(event)

    def begin_fetch(self, cmd: FetchCommand) -> Optional[Fetch]:
        with self._lock:
            fetch = self._active.get(cmd.id)
            if fetch is not None and fetch.for_reader and self._cache.interrupt_pending:
                # interrupt() came after the read planned this fetch, too early to cancel it:
                # not run, so the read raises InterruptedError instead of waiting for it.
                return None
            if fetch is not None:
                fetch.started = True
                fetch.began = time.monotonic()
            return fetch

    def count(self, name: str, amount: float) -> None:
        with self._lock:
            self._counts.add(name, amount)

    def publish(self, event: Event) -> None:
        self._publish(event)

    def learned_length(self, total: int, from_tail_probe: bool) -> None:
        with self._lock:
            if self._cache.size is not None:
                return
            self._cache.set_size(total)
            if from_tail_probe or self._tail_probe is not None:
                self._claim_tail_for_probe_locked()
            else:
                self._schedule_tail_locked()
            self._schedule_locked()

    def record_link(self, ttfb: float, nbytes: int, duration: float) -> None:
        with self._lock:
            self._link.record(ttfb, nbytes, duration)

    def takes_over(self, fetch: Fetch, body: Body) -> bool:
        """The first answer has no length: keep it, unread, for open() to hand over (a live
        stream is read by a reader of its own), and stop this reader."""
        if body.total is not None or body.ranged or self._cache.size is not None:
            return False
        with self._lock:
            if self._closed or self._error is not None or self._handover is not None:
                return False
            self._handover = (body, fetch.handle)
            fetch.handed = True
            self._error = UnknownLength("the first answer has no length", url=body.url)
        self._cache.fail(self._error)  # wakes open()
        return True

    def trickled(self) -> None:
        with self._lock:
            self._link.distrust()

    def reader_end(self) -> int:
        with self._lock:
            return self._pattern.end

    def streaming(self, cmd: FetchCommand, on: bool) -> None:
        with self._lock:
            fetch = self._active.get(cmd.id)
            if fetch is not None and self._set_streaming_locked(fetch, on) and not on:
                self._schedule_locked()  # the next read-ahead request, right behind this body

    def _on_complete(self, cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None:
        event: Optional[Event] = None
        with self._lock:
            fetch = self._forget_locked(cmd.id)
            if outcome is Outcome.DONE and fetch is not None and self.listened(True):
                duration = time.monotonic() - fetch.began if fetch.began else 0.0
                nbytes = cmd.bytes_received
                bandwidth = nbytes / duration if duration > 0 else 0.0
                event = RequestCompleted(cmd.id, nbytes, duration, bandwidth, self._source.url)
            elif outcome is Outcome.FAILED and error is not None:  # FAILED always carries it
                event = RequestFailed(cmd.id, error, self._source.url)
            if outcome is Outcome.CANCELLED:
                self._counts.cancels += 1
            elif outcome is Outcome.FAILED and not self._closed:
                if self._source.offline and isinstance(error, StreamError) and server_unreachable(error):
                    self._unreachable = error  # a reader fails only on reaching a gap (_demand)
                else:
                    self._fail_locked(error)
            # Released only now, under self._lock: a reader the release wakes finds the
            # failure recorded, and does not send the gap's fetch again at once (_demand).
            self._cache.release(cmd.id)
            if cmd.id == self._tail_probe:
                self._tail_probe = None
                if self._cache.size is not None:
                    self._schedule_tail_locked()  # whatever the probe did not bring
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


class UnknownLength(StreamError):
    """Internal: the first answer has no length; open() hands it over."""
