"""The Downloader's threads: one dispatcher and a pool of fetch threads.

The dispatcher sleeps on the board's ``wake`` condition. Each pass starts what
:func:`~kithara_io.engine.scheduling.plan_pass` picks for the free places, on the pool, then
classifies the pass for the hang watchdog (:mod:`kithara_io.engine.watchdog`). It waits with a
timeout only while work is pending (watchdog, throttle pause); idle, without one.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional

from ..events import DownloaderStalled
from .board import Board
from .scheduling import FetchCommand, plan_pass
from .watchdog import StallTracker, classify

THREAD_PREFIX = "kithara-fetch"

log = logging.getLogger(__name__)


class Workers:
    """One generation of threads, started and stopped together.

    ``run(cmd)`` executes a dispatched command on a pool thread; ``on_rejected(cmds)``
    completes commands the pool refused (interpreter shutdown) and ``on_stall(event)``
    reports a stall; both are called without the board's lock.
    """

    def __init__(
        self,
        board: Board,
        *,
        max_concurrent: int,
        demand_throttle: float,
        yield_to_high: bool,
        stall_window: Optional[float],
        clock: Callable[[], float],
        run: Callable[[FetchCommand], None],
        on_rejected: Callable[[List[FetchCommand]], None],
        on_stall: Callable[[DownloaderStalled], None],
    ) -> None:
        self.stopping = False  # under the board's lock
        self._board = board
        self._max_concurrent = max_concurrent
        self._throttle = demand_throttle
        self._yield_to_high = yield_to_high
        self._stall_window = stall_window
        self._clock = clock
        self._run = run
        self._on_rejected = on_rejected
        self._on_stall = on_stall
        self.pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix=THREAD_PREFIX)
        self.dispatcher = threading.Thread(target=self._loop, name=f"{THREAD_PREFIX}-dispatcher", daemon=True)
        self.dispatcher.start()

    def stop_locked(self) -> None:
        self.stopping = True
        self._board.wake.notify_all()

    def join(self) -> None:
        me = threading.current_thread()
        if me is self.dispatcher or me.name.startswith(THREAD_PREFIX + "_"):
            # Detached from inside one of our own threads: cannot join ourselves.
            self.pool.shutdown(wait=False)
            return
        self.dispatcher.join()
        self.pool.shutdown(wait=True)

    def _loop(self) -> None:
        board = self._board
        tracker = StallTracker(self._stall_window)
        with board.lock:
            seen = (board.count.started, board.count.finished, board.count.bytes)
        while True:
            stalled: Optional[DownloaderStalled] = None
            rejected: List[FetchCommand] = []
            with board.lock:
                if self.stopping:
                    return
                board.count.dispatcher_idle = False
                now = self._clock()
                rejected = self._start_batch_locked(now)
                overrun = board.take_overruns_locked()
                current = (board.count.started, board.count.finished, board.count.bytes)
                kind = classify(
                    queued=len(board.queues),
                    running=len(board.running),
                    drained=current[0] - seen[0],
                    completed=current[1] - seen[1],
                    nbytes=current[2] - seen[2],
                )
                seen = current
                pending = bool(board.queues) or bool(board.running)
                report = tracker.observe(kind, now, pending=pending)
                if report is not None:
                    if report.first:
                        board.count.stalls += 1
                    stalled = board.stalled_event_locked(report.stalled_for, now)
                elif not rejected and not overrun:
                    timeout = board.wait_timeout_locked(now, tracker)
                    board.count.dispatcher_idle = timeout is None and not pending
                    board.wakes_at = None if timeout is None else time.monotonic() + timeout
                    board.wake.wait(timeout)
                    board.wakes_at = None
                    continue
            # Outside the lock: completions and subscribers may call back into the Downloader.
            self._on_rejected(rejected)
            for break_off in overrun:
                _call(break_off)
            if stalled is not None:
                self._on_stall(stalled)

    def _start_batch_locked(self, now: float) -> List[FetchCommand]:
        """One pass: start what fits; returns the commands the pool refused."""
        board = self._board
        rejected: List[FetchCommand] = []
        batch, board.throttle_deadline = plan_pass(
            board.queues,
            board.free_locked(self._max_concurrent),
            now,
            self._throttle,
            board.throttle_deadline,
            yield_to_high=self._yield_to_high,
            high_running=board.high_running_locked(),
        )
        for cmd in batch:
            board.start_locked(cmd, now)
            try:
                self.pool.submit(self._run, cmd)
            except RuntimeError:  # the pool refuses work (interpreter shutdown)
                del board.running[cmd.id]
                board.cancel_queued_locked(cmd, "closed")
                rejected.append(cmd)
                continue
            board.counted_start_locked()
        board.throttling = board.throttle_deadline is not None
        board.count.passes += 1
        board.bump_locked()
        return rejected


def _call(break_off: Callable[[], None]) -> None:
    try:
        break_off()
    except Exception:  # a broken callback must not stop the dispatcher
        log.exception("breaking off a read that overran failed")
