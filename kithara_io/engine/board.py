"""The Downloader's shared state: the four slots, the running commands and the counters.

Ownership: ``Board.lock`` guards every field; ``wake`` (the dispatcher waits on it) and
``changed`` (``Downloader.wait_until`` waits on it) are conditions on that lock. Methods
named ``..._locked`` expect it held. Nothing here calls out: aborts to call and commands to
complete are returned, for the caller to handle once the lock is released.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..events import DownloaderStalled, FetchInfo
from ..reading.planning import is_urgent
from ..stats import DownloaderCounters, DownloaderStats
from .scheduling import FetchCommand, Outcome, SlotQueues, _State
from .watchdog import StallTracker

Aborts = List[Tuple[FetchCommand, Callable[[], Any]]]


class Board:
    """What is queued, what runs, and the counters, under one lock."""

    def __init__(self, count: Optional[DownloaderCounters] = None) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.changed = threading.Condition(self.lock)
        self.version = 0  # bumped at every change of state (wait_until re-checks then)
        self.watchers = 0  # threads waiting on ``changed`` (none: a bump notifies nobody)
        # Blocking reads to break off if still running then (Downloader.watch): command id ->
        # (time.monotonic() deadline, what breaks the read off); and when the dispatcher,
        # asleep, wakes next (time.monotonic(); None: not before it is notified).
        self.overruns: Dict[int, Tuple[float, Callable[[], None]]] = {}
        self.wakes_at: Optional[float] = None
        self.queues = SlotQueues()
        self.running: Dict[int, FetchCommand] = {}
        self.count = count if count is not None else DownloaderCounters()
        self.count.dispatcher_idle = False
        self.throttle_deadline: Optional[float] = None
        self.throttling = False  # Low-stream work waits out the demand-throttle pause

    def bump_locked(self) -> None:
        self.version += 1
        if self.watchers:
            self.changed.notify_all()

    def stats_locked(self) -> DownloaderStats:
        return self.count.snapshot(len(self.running), self.queues.counts(), self.throttling)

    def high_running_locked(self) -> bool:
        return any(is_urgent(cmd.slot) for cmd in self.running.values())

    def free_locked(self, max_concurrent: int) -> int:
        return max_concurrent - len(self.running)

    def start_locked(self, cmd: FetchCommand, now: float) -> None:
        """``cmd`` runs from now on (on a pool thread or inline)."""
        cmd._state = _State.RUNNING
        cmd._started_at = cmd._last_progress = now
        self.running[cmd.id] = cmd

    def counted_start_locked(self) -> None:
        self.count.started += 1
        self.count.peak_running = max(self.count.peak_running, len(self.running))

    def finish_locked(self, cmd: FetchCommand, error: Optional[BaseException], interrupted: bool) -> Outcome:
        """A run function returned (or raised ``error``): the command's outcome, counted."""
        self.running.pop(cmd.id, None)
        self.overruns.pop(cmd.id, None)
        cmd._state = _State.FINISHED
        if interrupted:
            cmd.cancel("interrupted")
        if cmd.cancelled.is_set():
            outcome = Outcome.CANCELLED
            self.count.cancelled += 1
        elif error is not None:
            outcome = Outcome.FAILED
            self.count.failed += 1
        else:
            outcome = Outcome.DONE
            self.count.completed += 1
        self.count.finished += 1
        if self.queues:  # a place is free for queued work
            self.wake.notify()
        self.bump_locked()
        return outcome

    def preempt_low_locked(self) -> Aborts:
        """High-stream work arrived: tell every running Low-stream fetch to stop. Returns
        the aborts to call once the lock is released."""
        aborts: Aborts = []
        for cmd in self.running.values():
            if is_urgent(cmd.slot) or cmd.cancelled.is_set():
                continue
            cmd.cancel("preempted")
            self.count.preempted += 1
            if cmd.abort is not None:
                aborts.append((cmd, cmd.abort))
        return aborts

    def cancel_queued_locked(self, cmd: FetchCommand, reason: str) -> None:
        """Bookkeeping of a command leaving the queue cancelled (already out of the slots)."""
        cmd._state = _State.FINISHED
        cmd.cancel(reason)
        self.count.cancelled += 1
        self.count.finished += 1

    def clear_locked(self) -> List[FetchCommand]:
        """Every queued command leaves, cancelled ("closed"); returns them, to complete."""
        queued = self.queues.clear()
        for cmd in queued:
            self.cancel_queued_locked(cmd, "closed")
        self.throttle_deadline = None
        self.throttling = False
        self.count.dispatcher_idle = False
        self.bump_locked()
        return queued

    def stalled_event_locked(self, stalled_for: float, now: float) -> DownloaderStalled:
        slots = tuple(tuple(_info(cmd, now, False) for cmd in slot) for slot in self.queues.snapshot())
        in_flight = tuple(_info(cmd, now, True) for cmd in self.running.values())
        return DownloaderStalled(stalled_for, slots, in_flight)

    def wait_timeout_locked(self, now: float, tracker: StallTracker) -> Optional[float]:
        """Time-limited only while work is pending (watchdog, throttle, a watched read);
        idle: no timeout."""
        if not self.queues and not self.running:
            return None
        timeouts = [d - now for d in (tracker.deadline(), self.throttle_deadline) if d is not None]
        if self.overruns:  # (their deadlines are on the real clock)
            timeouts.append(min(d for d, _ in self.overruns.values()) - time.monotonic())
        return max(0.0, min(timeouts)) if timeouts else None

    def take_overruns_locked(self) -> List[Callable[[], None]]:
        """The watched reads past their deadline, each broken off once (call them unlocked)."""
        if not self.overruns:
            return []
        now = time.monotonic()
        late = [i for i, (deadline, _) in self.overruns.items() if deadline <= now]
        return [self.overruns.pop(i)[1] for i in late]


def _info(cmd: FetchCommand, now: float, running: bool) -> FetchInfo:
    if running:
        return FetchInfo(cmd.id, cmd.label, cmd.slot, now - cmd._started_at, cmd._bytes, now - cmd._last_progress)
    return FetchInfo(cmd.id, cmd.label, cmd.slot, now - cmd._enqueued_at)
