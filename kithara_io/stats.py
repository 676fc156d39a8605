"""Counters of a stream and of the Downloader, as plain snapshot values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class StreamStats:
    """What one stream did so far. ``bytes_fetched / size`` is the read amplification."""

    requests: int = 0  # HTTP requests sent (retries included)
    bytes_fetched: int = 0  # body bytes received from the network and stored in the cache
    bytes_served: int = 0  # bytes returned to the caller
    cache_hits: int = 0  # reads served without waiting
    waits: int = 0  # reads that had to wait for the network
    time_waited: float = 0.0  # seconds readers spent waiting
    retries: int = 0
    cancels: int = 0  # fetches cancelled (seek far away, close)
    bytes_from_disk: int = 0  # bytes read from the disk cache (open(..., cache=...))
    bytes_cached: int = 0  # memory held for downloaded bytes now (bounded by cache_budget)
    offline: bool = False  # a disk cache serves its copy: the server could not be reached
    takeovers: int = 0  # times a waiting reader took over a running fetch's body (turns)
    bytes_by_reader: int = 0  # of bytes_fetched/bytes_from_disk: received by readers that took a fetch over


@dataclass
class StreamCounters:
    """The running totals behind StreamStats (mutated under the stream's lock)."""

    requests: int = 0
    bytes_fetched: int = 0
    bytes_served: int = 0
    cache_hits: int = 0
    waits: int = 0
    time_waited: float = 0.0
    retries: int = 0
    cancels: int = 0
    bytes_from_disk: int = 0
    takeovers: int = 0
    bytes_by_reader: int = 0

    def add(self, name: str, amount: float) -> None:
        setattr(self, name, getattr(self, name) + amount)

    def snapshot(self, bytes_cached: int, offline: bool = False) -> StreamStats:
        return StreamStats(**dataclasses.asdict(self), bytes_cached=bytes_cached, offline=offline)


@dataclass(frozen=True)
class DownloaderStats:
    """A snapshot of the Downloader's counters.

    Every submitted command ends as exactly one of completed (DONE), failed or cancelled;
    until then it is queued or running.
    """

    submitted: int
    started: int
    completed: int
    failed: int
    cancelled: int
    running: int
    queued: Tuple[int, ...]  # per slot
    peak_running: int
    stalls: int  # stalls reported by the watchdog
    preempted: int = 0  # running Low-stream fetches cancelled for High-stream work (in cancelled)
    bytes: int = 0  # reported through note_progress
    throttling: bool = False  # Low-stream work is waiting out the demand-throttle pause
    passes: int = 0  # dispatcher passes (it only wakes for a reason)
    dispatcher_idle: bool = False  # the dispatcher waits without a timeout (nothing pending)
    finished: int = 0  # completions of every kind: completed + failed + cancelled

    @property
    def queued_total(self) -> int:
        return sum(self.queued)

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.queued_total == 0


@dataclass
class DownloaderCounters:
    """The running totals behind DownloaderStats (mutated under the Downloader's lock)."""

    submitted: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    finished: int = 0  # all completions (the three above)
    peak_running: int = 0
    stalls: int = 0
    preempted: int = 0
    bytes: int = 0
    passes: int = 0
    dispatcher_idle: bool = False

    def snapshot(self, running: int, queued: Tuple[int, ...], throttling: bool) -> DownloaderStats:
        return DownloaderStats(running=running, queued=queued, throttling=throttling, **dataclasses.asdict(self))
