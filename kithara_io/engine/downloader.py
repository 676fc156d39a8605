"""Downloader: four priority slots feeding a bounded pool of fetch threads.

Scheduling. Stream priority x request priority give four slots, served strictly in the order
High/High, High/Low, Low/High, Low/Low, first in first out within a slot (:class:`SlotQueues`,
pure). One dispatcher pass starts as many commands as the pool has free places
(:func:`plan_pass`, pure). Work of a High stream (slots 0-1) is urgent: it wakes the
dispatcher and starts at once. Work of a Low stream (slots 2-3) starts only after the demand
throttle, a short pause (``demand_throttle`` seconds) that begins when such work could take a
free place: it gives a High stream that just finished a fetch the chance to submit its next
one first. Urgent work arriving during the pause interrupts it and starts at once.

Yielding (``yield_to_high``, on by default). Priorities at dispatch alone do not protect the
stream the listener hears: a running preload fetch shares the link with it. So Low-stream
work does not start while High-stream work runs, and High-stream work entering the queue
preempts the running Low-stream fetches: they are cancelled with reason ``"preempted"``
(their connections aborted; the bytes they stored stay) and their streams queue the rest
again, to run once no High-stream fetch is left.
``reprioritize(owner, ...)`` moves an owner's queued commands to their new slots.

Inline runs. A reader about to block on (nearly) all the bytes of a new fetch may run it itself
(:meth:`Downloader.try_run_inline`) when a dispatcher pass would start it right now
(:func:`may_start_inline`, pure); it then counts as running like a pool fetch. This saves
the two thread hand-offs (dispatcher, pool thread) that dominate a small random read.

Watchdog. Every pass is classified (:mod:`kithara_io.engine.watchdog`): Idle, Advanced or Stalled.
Work pending and nothing moving (no dispatch, no completion, no bytes reported through
:meth:`Downloader.note_progress`) for ``stall_window`` seconds publishes a
:class:`~kithara_io.events.DownloaderStalled` dump and logs a warning.

Ownership: the state shared with the threads (:mod:`kithara_io.engine.board`: slots, running map,
counters) is guarded by the board's lock; so are ``_workers`` and ``_users`` here. Nothing is
called out while it is held: completions, aborts and event subscribers run after it is
released, so a callback may submit or cancel freely. The threads: :mod:`kithara_io.engine.dispatcher`.

Threads (one dispatcher and at most ``max_concurrent`` pool workers) exist only while at
least one stream is attached; the last ``detach()`` stops and joins them, so closing every
stream leaves no thread behind, even on the shared default downloader.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Hashable, List, Optional, Tuple, Type, Union

from ..events import DownloaderStalled, Event, EventBus, RequestCancelled, RequestEnqueued, RequestStarted, Subscription
from ..reading.planning import Priority, is_urgent
from ..stats import DownloaderStats
from .board import Aborts, Board
from .dispatcher import Workers
from .scheduling import FetchCommand, Outcome, SlotQueues, _State, may_start_inline, plan_pass
from .watchdog import StallTracker

log = logging.getLogger(__name__)

Clock = Callable[[], float]

__all__ = ["Downloader", "FetchCommand", "Outcome", "SlotQueues", "may_start_inline", "plan_pass"]


class Downloader:
    """The shared fetch engine: strict slot order, at most ``max_concurrent`` fetches at once.

    ``demand_throttle``: seconds Low-stream work waits for a free place to be claimed by
    urgent work first (0 disables). ``yield_to_high``: Low-stream work waits while
    High-stream work runs, and is preempted when High-stream work arrives (see the module
    docstring). ``stall_window``: seconds of pending-but-frozen work before the watchdog
    reports (None disables). ``clock``: the monotonic clock used for deadlines and measured
    durations (injectable for tests).

    One default instance (:func:`default_downloader`) serves every stream unless a caller
    passes its own.
    """

    def __init__(
        self,
        max_concurrent: int = 5,
        *,
        demand_throttle: float = 0.01,
        yield_to_high: bool = True,
        stall_window: Optional[float] = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if demand_throttle < 0:
            raise ValueError("demand_throttle must be >= 0")
        StallTracker(stall_window)  # validates
        self.max_concurrent = max_concurrent
        self.demand_throttle = float(demand_throttle)
        self.yield_to_high = yield_to_high
        self.stall_window = stall_window
        self._clock = clock
        self._board = Board()
        self._users = 0
        self._workers: Optional[Workers] = None
        self._closed = False
        self._bus = EventBus("downloader")
        self._pid = os.getpid()  # the process whose threads this state describes

    @property
    def peak_running(self) -> int:
        """The most fetches that ever ran at once."""
        with self._board.lock:
            return self._board.count.peak_running

    def _after_fork_in_child(self) -> "Downloader":
        """In a forked child, where none of the parent's threads exist: the Downloader its
        streams use there. The parent's default is replaced by the child's own; any other
        starts over in place (fresh locks, nothing queued or running, no threads until the
        next ``attach``). The commands it held belong to readers, which submit them again."""
        from .default import replacement_in_child  # (.default imports this module)

        replacement = replacement_in_child(self)
        if replacement is not None:
            return replacement
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._board = Board(self._board.count)  # a parent thread may have held the old lock
            self._users = 0
            self._workers = None
        return self

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self) -> None:
        """A stream starts using this downloader (threads start if needed)."""
        with self._board.lock:
            if self._closed:
                raise RuntimeError("Downloader is closed")
            self._users += 1
            if self._workers is None:
                self._workers = Workers(
                    self._board,
                    max_concurrent=self.max_concurrent,
                    demand_throttle=self.demand_throttle,
                    yield_to_high=self.yield_to_high,
                    stall_window=self.stall_window,
                    clock=self._clock,
                    run=self._run,
                    on_rejected=self._complete_cancelled,
                    on_stall=self._report_stall,
                )

    def detach(self) -> None:
        """A stream is done; the last one out cancels what is still queued and stops and
        joins the threads."""
        with self._board.lock:
            self._users -= 1
            stopped = self._stop_workers_locked() if self._users <= 0 else None
        self._finish(stopped)

    def close(self) -> None:
        """Cancel everything queued and stop the threads (running fetches finish first).
        Idempotent."""
        with self._board.lock:
            self._closed = True
            stopped = self._stop_workers_locked()
        self._finish(stopped)

    def _stop_workers_locked(self) -> Tuple[Optional[Workers], List[FetchCommand]]:
        self._users = max(self._users, 0)
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.stop_locked()
        return workers, self._board.clear_locked()

    def _finish(self, stopped: Optional[Tuple[Optional[Workers], List[FetchCommand]]]) -> None:
        if stopped is None:
            return
        workers, queued = stopped
        self._complete_cancelled(queued)
        if workers is not None:
            workers.join()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- events ------------------------------------------------------------------------
    @property
    def events(self) -> EventBus:
        """The downloader's bus: every request event of every stream it serves (RequestEnqueued,
        RequestStarted, FirstByte, Progress, RequestCompleted, RequestRetrying, RequestFailed,
        RequestCancelled) and DownloaderStalled."""
        return self._bus

    def subscribe(self, callback: Callable[[Event], None], *types: Type[Event]) -> Subscription:
        """Shortcut for ``events.subscribe``; returns the handle that unsubscribes."""
        return self._bus.subscribe(callback, *types)

    # -- work --------------------------------------------------------------------------
    def submit(self, cmd: FetchCommand) -> None:
        """Queue a command in its slot; urgent slots wake the dispatcher at once.

        A command cancelled before it was submitted (it has completed already) is ignored;
        submitting a command twice is a ValueError."""
        if cmd._state is not _State.NEW:
            if cmd.cancelled.is_set():
                return
            raise ValueError(f"{cmd!r} was submitted already")
        if self._workers is None:  # re-checked under the lock
            raise RuntimeError("submit() needs an attached stream (call attach() first)")
        cmd._enqueued_at = self._clock()
        # Published before the command can start, so RequestEnqueued precedes RequestStarted.
        if self._listened(cmd):
            self._publish(cmd, _enqueued(cmd))
        with self._board.lock:
            if cmd._state is not _State.NEW:
                return  # cancelled meanwhile, and completed by cancel()
            if self._workers is not None:
                cmd._state = _State.QUEUED
                self._board.queues.push(cmd)
                self._board.count.submitted += 1
                # Low work that arrives during the pause need not wake the dispatcher: the
                # pause's deadline will.
                if is_urgent(cmd.slot) or not self._board.throttling:
                    self._board.wake.notify()
                preempted = self._preempt_low_locked() if is_urgent(cmd.slot) else []
                self._board.bump_locked()
                refused = False
            else:
                # Detached between the check above and here: the command never entered the queue.
                cmd._state = _State.FINISHED
                cmd.cancel("closed")
                preempted, refused = [], True
        _abort_all(preempted)
        if refused:
            self._complete_cancelled([cmd])
            raise RuntimeError("submit() needs an attached stream (call attach() first)")

    def try_run_inline(self, cmd: FetchCommand, started: Optional[Callable[[], None]] = None) -> bool:
        """Run ``cmd`` on the calling thread if it may start right now, else ``submit`` it.

        For a reader that will block on exactly these bytes anyway: running the fetch itself
        saves the hand-offs to the dispatcher and a pool thread. It starts here only when a
        dispatcher pass would start it now as the next command (:func:`may_start_inline`: a
        free place, nothing queued in its slot or a more urgent one, and for Low-stream work
        neither a throttle pause nor running High-stream work under ``yield_to_high``).
        It then counts as running exactly like a pool fetch: toward ``max_concurrent`` and
        the peak, in ``stats()``, ``in_flight()``, the watchdog and ``note_progress``; it
        publishes RequestEnqueued then RequestStarted, preempts running Low-stream work if
        urgent, and ``cancel``/``cancel_owner``/preemption set ``cmd.cancelled`` and call its
        abort as for any running command. Its completion (exactly one, on this thread) has
        been called when this returns True. Otherwise the command is queued as by
        ``submit`` (same errors) and False returns at once; False also when the command was
        cancelled before this call (it has completed already).

        A ``BaseException`` that is not an ``Exception`` (KeyboardInterrupt, SystemExit)
        raised by the run function completes the command as CANCELLED (reason
        ``"interrupted"``) and then propagates to the caller. The caller must hold no lock
        that the run function or the completion takes. ``Downloader.close()`` does not wait
        for inline runs (their callers do). ``started``: called once ``cmd`` has its place
        (before it runs here) or its place in the queue (lock released; not called when
        the command had completed already).
        """
        if cmd._state is not _State.NEW:
            if cmd.cancelled.is_set():
                return False
            raise ValueError(f"{cmd!r} was submitted already")
        with self._board.lock:
            if cmd._state is not _State.NEW:
                return False  # cancelled meanwhile, and completed by cancel()
            inline = self._workers is not None and may_start_inline(
                self._board.queues,
                cmd.slot,
                self._board.free_locked(self.max_concurrent),
                throttle=self.demand_throttle,
                yield_to_high=self.yield_to_high,
                high_running=self._board.high_running_locked(),
            )
            if inline:
                cmd._enqueued_at = now = self._clock()
                self._board.start_locked(cmd, now)
                self._board.count.submitted += 1
                self._board.counted_start_locked()
                preempted = self._preempt_low_locked() if is_urgent(cmd.slot) else []
                if self._board.count.dispatcher_idle:
                    self._board.wake.notify()  # parked without a timeout: its watchdog must see this run
                self._board.bump_locked()
        if not inline:
            self.submit(cmd)
            if started is not None:
                started()
            return False
        _abort_all(preempted)
        if self._listened(cmd):
            self._publish(cmd, _enqueued(cmd))
            self._publish(cmd, RequestStarted(cmd.id, 0.0, cmd.url))
        if started is not None:
            started()
        self._execute(cmd, inline=True)
        return True

    def cancel(self, cmd: FetchCommand, reason: str = "cancelled") -> None:
        """Cancel a command: a queued one completes CANCELLED now, a running one is told to
        stop (``cmd.cancelled``) and its blocking I/O aborted; a finished one is left alone.
        One never submitted completes CANCELLED now too (no event, not counted) and a later
        ``submit`` of it is ignored. ``reason`` goes into the RequestCancelled event."""
        with self._board.lock:
            state = cmd._state
            if state is _State.FINISHED:
                return
            cmd.cancel(reason)
            abort = cmd.abort if state is _State.RUNNING else None
            if state is _State.QUEUED:
                self._board.queues.remove(cmd)
                self._board.cancel_queued_locked(cmd, reason)
                self._board.bump_locked()
            elif state is _State.NEW:  # never submitted: complete it, submit() will ignore it
                cmd._state = _State.FINISHED
        if state is _State.QUEUED:
            self._complete_cancelled([cmd])
        elif state is _State.NEW:
            _complete(cmd, Outcome.CANCELLED, None)
        elif abort is not None:
            _call_abort(cmd, abort)

    def cancel_owner(self, owner: Hashable, reason: str = "owner") -> int:
        """Cancel every queued and running command of ``owner``; returns how many. Each one
        completes exactly once, as CANCELLED (running ones when their run function returns)."""
        if owner is None:
            raise ValueError("owner must not be None")
        with self._board.lock:
            queued = self._board.queues.take_owner(owner)
            for cmd in queued:
                self._board.cancel_queued_locked(cmd, reason)
            running = [cmd for cmd in self._board.running.values() if cmd.owner == owner and not cmd.cancelled.is_set()]
            aborts = []
            for cmd in running:
                cmd.cancel(reason)
                if cmd.abort is not None:
                    aborts.append((cmd, cmd.abort))
            if queued or running:
                self._board.bump_locked()
        self._complete_cancelled(queued)
        _abort_all(aborts)
        return len(queued) + len(running)

    def reprioritize(self, owner: Hashable, stream_priority: Union[Priority, str]) -> int:
        """Change the stream priority of ``owner``'s commands: queued ones move to their new
        slots (relative order kept, none lost or duplicated; work moving to an urgent slot is
        dispatched at once); running ones keep running. Returns how many moved.

        The owner must use the new priority for the commands it submits from now on."""
        if owner is None:
            raise ValueError("owner must not be None")
        priority = Priority.parse(stream_priority)
        with self._board.lock:
            moved = self._board.queues.reprioritize(owner, priority)
            changed = False  # a running command that stops being High-stream work frees held Low work
            for cmd in self._board.running.values():
                if cmd.owner == owner and cmd.stream_priority is not priority:
                    cmd.stream_priority = priority
                    changed = True
            preempted = []
            if moved or changed:
                self._board.wake.notify()
                if any(is_urgent(cmd.slot) for cmd in moved):
                    preempted = self._preempt_low_locked()
                self._board.bump_locked()
        _abort_all(preempted)
        return len(moved)

    def note_progress(self, nbytes: int, cmd: Optional[FetchCommand] = None) -> None:
        """A fetch stored ``nbytes`` body bytes: the watchdog counts it as movement. Cheap (no
        wake-up); call it for every chunk, with the command when known."""
        with self._board.lock:
            self._board.count.bytes += nbytes
            if cmd is not None:
                cmd._bytes += nbytes
                cmd._last_progress = self._clock()

    def watch(self, cmd: FetchCommand, seconds: float, break_off: Callable[[], None]) -> None:
        """Unless ``unwatch(cmd)`` comes within ``seconds``, the dispatcher calls
        ``break_off()`` (once, on its thread): for a running command's blocking read that a
        server trickling its bytes would keep going for hours (see FetchLoop._piece)."""
        deadline = time.monotonic() + seconds
        with self._board.lock:
            if self._workers is None or cmd.id not in self._board.running:
                return
            self._board.overruns[cmd.id] = (deadline, break_off)
            wakes_at = self._board.wakes_at
            if wakes_at is None or deadline < wakes_at:
                self._board.wake.notify()  # (asleep past the deadline)

    def unwatch(self, cmd: FetchCommand) -> None:
        """The read ``watch`` guarded is over."""
        with self._board.lock:
            self._board.overruns.pop(cmd.id, None)

    def queued(self) -> List[List[FetchCommand]]:
        """A snapshot of the four slots."""
        with self._board.lock:
            return self._board.queues.snapshot()

    def in_flight(self) -> List[FetchCommand]:
        """A snapshot of the running commands, in dispatch order."""
        with self._board.lock:
            return list(self._board.running.values())

    def running_count(self) -> int:
        with self._board.lock:
            return len(self._board.running)

    def stats(self) -> DownloaderStats:
        """A snapshot of the counters."""
        with self._board.lock:
            return self._board.stats_locked()

    def wait_until(self, predicate: Callable[[DownloaderStats], bool], timeout: Optional[float] = None) -> bool:
        """Block until ``predicate(stats())`` holds (re-checked after every change of state;
        bytes alone do not count as one); False on timeout (seconds, real time)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._board.lock:
            version, snap = self._board.version, self._board.stats_locked()
        while not predicate(snap):
            with self._board.lock:
                while self._board.version == version:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._board.watchers += 1
                    try:
                        self._board.changed.wait(remaining)
                    finally:
                        self._board.watchers -= 1
                version, snap = self._board.version, self._board.stats_locked()
        return True

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        return self.wait_until(lambda s: s.idle, timeout)

    def _preempt_low_locked(self) -> Aborts:
        return self._board.preempt_low_locked() if self.yield_to_high else []

    # -- threads -----------------------------------------------------------------------
    def _run(self, cmd: FetchCommand) -> None:
        """A dispatched command, on a pool thread."""
        if self._listened(cmd):
            self._publish(cmd, RequestStarted(cmd.id, cmd._started_at - cmd._enqueued_at, cmd.url))
        self._execute(cmd, inline=False)

    def _execute(self, cmd: FetchCommand, *, inline: bool) -> None:
        """Run a command counted as running, then complete it (exactly once)."""
        error: Optional[BaseException] = None
        try:
            if not cmd.cancelled.is_set():  # cancelled between dispatch and start: skip the work
                cmd.run(cmd)
        except BaseException as exc:  # noqa: BLE001 - reported through the completion
            error = exc
        # Interrupting the caller of try_run_inline (Ctrl-C) is not a failure of the fetch.
        interrupted = inline and error is not None and not isinstance(error, Exception)
        try:
            with self._board.lock:
                outcome = self._board.finish_locked(cmd, error, interrupted)
            if outcome is Outcome.CANCELLED:
                self._complete_cancelled([cmd])
            else:
                _complete(cmd, outcome, error)
            if interrupted and error is not None:
                raise error
        finally:
            # The traceback references this frame: without this, error -> traceback -> frame
            # -> error is a cycle that keeps the failed request's socket open until a GC pass.
            error = None

    def _report_stall(self, stalled: DownloaderStalled) -> None:
        log.warning("kithara-io: %s", stalled.describe())
        self._bus.publish(stalled)

    def _complete_cancelled(self, cmds: List[FetchCommand]) -> None:
        """Publish RequestCancelled and call the completion of each (lock released)."""
        for cmd in cmds:
            if self._listened(cmd):
                self._publish(cmd, RequestCancelled(cmd.id, cmd.cancel_reason or "cancelled", cmd.url))
            _complete(cmd, Outcome.CANCELLED, None)

    def _listened(self, cmd: FetchCommand) -> bool:
        return self._bus.has_subscribers or (cmd.events is not None and cmd.events.has_subscribers)

    def _publish(self, cmd: FetchCommand, event: Event) -> None:
        """To the downloader's bus, then to the command's own (the stream's), if any."""
        self._bus.publish(event)
        if cmd.events is not None and cmd.events is not self._bus:
            cmd.events.publish(event)


def _enqueued(cmd: FetchCommand) -> RequestEnqueued:
    return RequestEnqueued(cmd.id, cmd.url, cmd.byte_range, cmd.request_priority, cmd.stream_priority, cmd.slot)


def _complete(cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None:
    try:
        cmd.on_complete(cmd, outcome, error)
    except Exception:  # a broken callback must not kill a pool thread
        log.exception("completion callback of %r failed", cmd)
    # Finished: nothing aborts it any more. An owner's abort callback often refers back to
    # the command (a stream's Fetch.abort -> its Fetch -> the command): without this, every
    # command is a cycle freed only by the cyclic GC, whose full collections pause every thread.
    cmd.abort = None


def _call_abort(cmd: FetchCommand, abort: Callable[[], Any]) -> None:
    try:
        abort()
    except Exception:
        log.exception("abort of %r failed", cmd)


def _abort_all(aborts: Aborts) -> None:
    for cmd, abort in aborts:
        _call_abort(cmd, abort)
