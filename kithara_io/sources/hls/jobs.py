"""The fetch jobs of an HlsReader: submitting them to the Downloader, running them on a
pool thread (PartFetcher), storing what they bring, and their completions.

A mixin of :class:`~.reader.HlsReader`, split out to keep each module to one job: it uses
the reader's state under the reader's condition (``self._cond``), with the same rules:
network I/O without the lock, each piece stored under it, ``Downloader.cancel`` only with
the lock released, events published once it is released.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import List, Optional

from ...engine.downloader import FetchCommand, Outcome
from ...events import REQUEST_EVENTS, Event, FirstByte, Progress, RequestCompleted, RequestFailed, RequestRetrying
from ...reading.planning import Priority
from ...retry import Cancellation
from .packed import HeadSkipper
from .plan import PartKey
from .state import ReaderState
from .store import PartData
from .transport import Abort

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One FetchCommand of the reader: bytes ``[start, end)`` of a part, or its size."""

    cmd: FetchCommand
    key: PartKey
    start: int
    end: Optional[int]  # None: to the end of the part
    kind: str  # "data" or "size"
    abort: Abort = field(default_factory=Abort)
    began: float = 0.0
    received: int = 0
    dropped: bool = False  # an epoch cancel is on its way


class JobsMixin(ReaderState):
    """Submitting, running and completing the HlsReader's fetch jobs (see the module doc)."""

    def _active(self) -> List[Job]:
        """Jobs queued or running that no cancel has reached."""
        return [j for j in self._jobs.values() if not j.dropped]

    def _submit_locked(self, key: PartKey, start: int, end: Optional[int], kind: str, priority: Priority) -> None:
        resource = self._plan.resource(key)
        cmd = FetchCommand(
            self._run_job,
            self._on_complete,
            stream_priority=self._priority,
            request_priority=priority,
            label=f"{resource.uri} part {key} {kind} {start}-{'' if end is None else end}",
            owner=self,
            url=resource.uri,
            byte_range=(start, end) if end is not None else None,
            events=self.events,
        )
        job = self._jobs[cmd.id] = Job(cmd, key, start, end, kind)
        cmd.abort = job.abort.abort
        self._downloader.submit(cmd)

    def _cancel(self, victims: List[Job]) -> None:
        for job in victims:
            self._downloader.cancel(job.cmd)  # sets cmd.cancelled, then aborts (cmd.abort) if running

    # -- on a pool thread ------------------------------------------------------------------
    def _run_job(self, cmd: FetchCommand) -> None:
        with self._cond:
            job = self._jobs.get(cmd.id)
            if job is None:
                return
            job.began = time.monotonic()
            resource, secret = self._plan.resource(job.key), self._plan.secret(job.key)
            size, skip = self._plan.raw_size(job.key), self._plan.skip(job.key)
        if skip is None and secret is None and (job.kind == "size" or job.start > 0):
            probed = self._fetcher.head(resource, job.abort, cmd.cancelled)  # packed audio? its tags' length
            if probed is None:
                return
            size, skip = probed
            with self._cond:
                self._learn_locked(job.key, size, skip)
        if job.kind == "size":
            if skip is not None and size is None:
                learned = self._fetcher.size(resource, job.abort, cmd.cancelled)
                with self._cond:
                    self._learn_locked(job.key, learned)
            return
        # In the part's file: the stream bytes from ``start`` on follow its leading tags
        # (skip None: unknown yet, the fetch starts at its first byte and the skipper learns it).
        skipper = HeadSkipper(skip)
        shift = skip or 0
        self._fetcher.fetch(
            resource,
            secret,
            job.key[1],
            job.start + shift,
            None if job.end is None else job.end + shift,
            size,
            job.abort,
            cmd.cancelled,
            lambda total: self._on_size(job, skipper, total),
            lambda pos, data: self._on_data(job, skipper, pos, data),
        )

    def _on_size(self, job: Job, skipper: HeadSkipper, total: int) -> None:
        skipper.total = total
        with self._cond:
            self._learn_locked(job.key, total)
        if skipper.skip is None:
            self._on_data(job, skipper, total, b"")  # the part may have ended within its tags

    def _learn_locked(self, key: PartKey, raw: Optional[int], skip: Optional[int] = None) -> None:
        """A part's length in its file and/or its leading tags' length became known."""
        news = raw is not None and self._plan.learn_raw(key, raw)
        news = (skip is not None and self._plan.learn_skip(key, skip)) or news
        if not news:
            return
        data = self._data.get(key)
        if data is not None:
            data.set_size(self._plan.sizes[key])
        self._cond.notify_all()

    def _on_data(self, job: Job, skipper: HeadSkipper, raw_pos: int, raw: bytes) -> None:
        learning = skipper.skip is None
        piece = skipper.feed(raw_pos, raw)
        with self._cond:
            self._counts["bytes_fetched"] += len(raw)
            if learning and skipper.skip is not None:
                self._learn_locked(job.key, None, skipper.skip)
            if piece is None:
                return
            pos, data = piece
            part = self._data.get(job.key)
            if part is None:
                part = self._data[job.key] = PartData(self._plan.sizes.get(job.key))
            part.write(pos, data)
            first = job.received == 0
            job.received += len(data)
            self._cond.notify_all()
        self._downloader.note_progress(len(raw), job.cmd)
        if self._listened():
            if first:
                self._publish(FirstByte(job.cmd.id, time.monotonic() - job.began, job.cmd.url))
            self._publish(Progress(job.cmd.id, len(data), job.received, job.cmd.url))

    def _on_complete(self, cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None:
        event: Optional[Event] = None
        with self._cond:
            job = self._jobs.pop(cmd.id, None)
            if job is not None and outcome is Outcome.DONE and job.kind == "data":
                duration = time.monotonic() - job.began
                self._estimator.record(job.received, duration)  # tiny ones are pooled
                event = RequestCompleted(
                    cmd.id, job.received, duration, job.received / duration if duration > 0 else 0.0, cmd.url
                )
            elif outcome is Outcome.FAILED and job is not None and (job.dropped or job.abort.aborted):
                self._counts["cancels"] += 1  # its connection was cut on purpose
            elif outcome is Outcome.FAILED and error is not None:  # FAILED always carries it
                event = RequestFailed(cmd.id, error, cmd.url)
                if job is not None and job.kind == "size" and not self._size_waiters:
                    log.info("learning the size of %s failed: %s", cmd.url, error)  # a data fetch will tell
                elif not self._closed:
                    self._fail_locked(error)
            elif outcome is Outcome.CANCELLED:
                self._counts["cancels"] += 1
            if event is not None:
                self._pending.append(event)
            self._schedule_locked()
            self._cond.notify_all()
        self._flush_events()

    def _listened(self) -> bool:
        return self.events.has_subscribers or self._downloader.events.has_subscribers

    def _publish(self, event: Event) -> None:
        """To this stream's bus; request events also to the Downloader's (it sees all streams)."""
        if self.events.has_subscribers:
            self.events.publish(event)
        if isinstance(event, REQUEST_EVENTS):
            self._downloader.events.publish(event)

    def _on_retry(self, cancelled: Cancellation, attempt: int, delay: float, cause: str) -> None:
        """A fetch retries: RequestRetrying for the job whose cancel event this is."""
        if not self._listened():
            return
        with self._cond:
            job = next((j for j in self._jobs.values() if j.cmd.cancelled is cancelled), None)
        if job is not None:
            self._publish(RequestRetrying(job.cmd.id, attempt, delay, cause, job.cmd.url))
