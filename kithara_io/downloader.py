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

Watchdog. Every pass is classified (:mod:`kithara_io.watchdog`): Idle, Advanced or Stalled.
Work pending and nothing moving (no dispatch, no completion, no bytes reported through
:meth:`Downloader.note_progress`) for ``stall_window`` seconds publishes a
:class:`~kithara_io.events.DownloaderStalled` dump and logs a warning. The dispatcher waits with
a timeout only while work is pending; idle, it waits without one.

Ownership: ``self._lock`` guards the slots, the running map, the counters and the worker
generation; ``self._wake`` (the dispatcher) and ``self._changed`` (``wait_until``) are
conditions on it. Nothing is called out while it is held: completions, aborts and event
subscribers run after it is released, so a callback may submit or cancel freely.

Threads (one dispatcher and at most ``max_concurrent`` pool workers) exist only while at
least one stream is attached; the last ``detach()`` stops and joins them, so closing every
stream leaves no thread behind, even on the shared default downloader.
"""

from __future__ import annotations


import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple, Type, Union

from .events import (
    DownloaderStalled,
    Event,
    EventBus,
    FetchInfo,
    RequestCancelled,
    RequestEnqueued,
    RequestStarted,
    Subscription,
)
from .planning import Priority, is_urgent
from .stats import DownloaderStats
from .scheduling import FetchCommand, Outcome, SlotQueues, _State, may_start_inline, plan_pass
from .watchdog import StallTracker, classify

log = logging.getLogger(__name__)

_THREAD_PREFIX = "kithara-fetch"

Clock = Callable[[], float]


# -- the threaded engine ----------------------------------------------------------------------


@dataclass
class _Counters:
    """The Downloader's running totals (under its lock); see DownloaderStats."""

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


class _Workers:
    """One generation of threads: a dispatcher and a pool, started and stopped together."""

    def __init__(self, owner: "Downloader") -> None:
        self.stopping = False
        self.pool = ThreadPoolExecutor(owner.max_concurrent, thread_name_prefix=_THREAD_PREFIX)
        self.dispatcher = threading.Thread(
            target=owner._dispatch_loop, args=(self,), name=f"{_THREAD_PREFIX}-dispatcher", daemon=True
        )
        self.dispatcher.start()

    def join(self) -> None:
        me = threading.current_thread()
        if me is self.dispatcher or me.name.startswith(_THREAD_PREFIX + "_"):
            # Detached from inside one of our own threads: cannot join ourselves.
            self.pool.shutdown(wait=False)
            return
        self.dispatcher.join()
        self.pool.shutdown(wait=True)


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
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the dispatcher waits here
        self._changed = threading.Condition(self._lock)  # wait_until() waits here
        self._version = 0
        self._queues = SlotQueues()
        self._running: Dict[int, FetchCommand] = {}
        self._users = 0
        self._workers: Optional[_Workers] = None
        self._closed = False
        self._bus = EventBus("downloader")
        self._throttle_deadline: Optional[float] = None
        self._throttling = False
        self._count = _Counters()
        self._pid = os.getpid()  # the process whose threads this state describes

    @property
    def peak_running(self) -> int:
        """The most fetches that ever ran at once."""
        with self._lock:
            return self._count.peak_running

    def _after_fork_in_child(self) -> "Downloader":
        """In a forked child, where none of the parent's threads exist: the Downloader its
        streams use there. The parent's default is replaced by the child's own; any other
        starts over in place (fresh locks, nothing queued or running, no threads until the
        next ``attach``). The commands it held belong to readers, which submit them again."""
        _replace_default_in_child()
        if self is _parent_default:
            return default_downloader()
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()  # a parent thread may have held the old one
            self._wake = threading.Condition(self._lock)
            self._changed = threading.Condition(self._lock)
            self._queues = SlotQueues()
            self._running = {}
            self._users = 0
            self._workers = None
            self._throttle_deadline = None
            self._throttling = False
            self._count.dispatcher_idle = False
        return self

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self) -> None:
        """A stream starts using this downloader (threads start if needed)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Downloader is closed")
            self._users += 1
            if self._workers is None:
                self._workers = _Workers(self)

    def detach(self) -> None:
        """A stream is done; the last one out cancels what is still queued and stops and
        joins the threads."""
        with self._lock:
            self._users -= 1
            stopped = self._stop_workers_locked() if self._users <= 0 else None
        self._finish(stopped)

    def close(self) -> None:
        """Cancel everything queued and stop the threads (running fetches finish first).
        Idempotent."""
        with self._lock:
            self._closed = True
            stopped = self._stop_workers_locked()
        self._finish(stopped)

    def _stop_workers_locked(self) -> Tuple[Optional[_Workers], List[FetchCommand]]:
        self._users = max(self._users, 0)
        workers, self._workers = self._workers, None
        queued = self._queues.clear()
        for cmd in queued:
            self._cancel_queued_locked(cmd, "closed")
        self._throttle_deadline = None
        self._throttling = False
        self._count.dispatcher_idle = False
        if workers is not None:
            workers.stopping = True
            self._wake.notify_all()
        self._bump_locked()
        return workers, queued

    def _finish(self, stopped: Optional[Tuple[Optional[_Workers], List[FetchCommand]]]) -> None:
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
            self._publish(
                cmd,
                RequestEnqueued(
                    cmd.id, cmd.url, cmd.byte_range, cmd.request_priority, cmd.stream_priority, cmd.slot
                ),
            )
        with self._lock:
            if cmd._state is not _State.NEW:
                return  # cancelled meanwhile, and completed by cancel()
            if self._workers is not None:
                cmd._state = _State.QUEUED
                self._queues.push(cmd)
                self._count.submitted += 1
                # Low work that arrives during the pause need not wake the dispatcher: the
                # pause's deadline will.
                if is_urgent(cmd.slot) or not self._throttling:
                    self._wake.notify()
                preempted = self._preempt_low_locked() if is_urgent(cmd.slot) else []
                self._bump_locked()
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

    def try_run_inline(self, cmd: FetchCommand) -> bool:
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
        for inline runs (their callers do).
        """
        if cmd._state is not _State.NEW:
            if cmd.cancelled.is_set():
                return False
            raise ValueError(f"{cmd!r} was submitted already")
        with self._lock:
            if cmd._state is not _State.NEW:
                return False  # cancelled meanwhile, and completed by cancel()
            inline = self._workers is not None and may_start_inline(
                self._queues,
                cmd.slot,
                self.max_concurrent - len(self._running),
                throttle=self.demand_throttle,
                yield_to_high=self.yield_to_high,
                high_running=any(is_urgent(c.slot) for c in self._running.values()),
            )
            if inline:
                now = self._clock()
                cmd._enqueued_at = cmd._started_at = cmd._last_progress = now
                cmd._state = _State.RUNNING
                self._running[cmd.id] = cmd
                self._count.submitted += 1
                self._count.started += 1
                self._count.peak_running = max(self._count.peak_running, len(self._running))
                preempted = self._preempt_low_locked() if is_urgent(cmd.slot) else []
                if self._count.dispatcher_idle:
                    self._wake.notify()  # parked without a timeout: its watchdog must see this run
                self._bump_locked()
        if not inline:
            self.submit(cmd)
            return False
        _abort_all(preempted)
        if self._listened(cmd):
            self._publish(
                cmd,
                RequestEnqueued(
                    cmd.id, cmd.url, cmd.byte_range, cmd.request_priority, cmd.stream_priority, cmd.slot
                ),
            )
            self._publish(cmd, RequestStarted(cmd.id, 0.0, cmd.url))
        self._execute(cmd, inline=True)
        return True

    def cancel(self, cmd: FetchCommand, reason: str = "cancelled") -> None:
        """Cancel a command: a queued one completes CANCELLED now, a running one is told to
        stop (``cmd.cancelled``) and its blocking I/O aborted; a finished one is left alone.
        One never submitted completes CANCELLED now too (no event, not counted) and a later
        ``submit`` of it is ignored. ``reason`` goes into the RequestCancelled event."""
        with self._lock:
            state = cmd._state
            if state is _State.FINISHED:
                return
            cmd.cancel(reason)
            abort = cmd.abort if state is _State.RUNNING else None
            if state is _State.QUEUED:
                self._queues.remove(cmd)
                self._cancel_queued_locked(cmd, reason)
                self._bump_locked()
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
        with self._lock:
            queued = self._queues.take_owner(owner)
            for cmd in queued:
                self._cancel_queued_locked(cmd, reason)
            running = [cmd for cmd in self._running.values() if cmd.owner == owner and not cmd.cancelled.is_set()]
            aborts = []
            for cmd in running:
                cmd.cancel(reason)
                if cmd.abort is not None:
                    aborts.append((cmd, cmd.abort))
            if queued or running:
                self._bump_locked()
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
        with self._lock:
            moved = self._queues.reprioritize(owner, priority)
            for cmd in self._running.values():
                if cmd.owner == owner:
                    cmd.stream_priority = priority
            preempted = []
            if moved:
                self._wake.notify()
                if any(is_urgent(cmd.slot) for cmd in moved):
                    preempted = self._preempt_low_locked()
                self._bump_locked()
        _abort_all(preempted)
        return len(moved)

    def note_progress(self, nbytes: int, cmd: Optional[FetchCommand] = None) -> None:
        """A fetch stored ``nbytes`` body bytes: the watchdog counts it as movement. Cheap (no
        wake-up); call it for every chunk, with the command when known."""
        with self._lock:
            self._count.bytes += nbytes
            if cmd is not None:
                cmd._bytes += nbytes
                cmd._last_progress = self._clock()

    def queued(self) -> List[List[FetchCommand]]:
        """A snapshot of the four slots."""
        with self._lock:
            return self._queues.snapshot()

    def in_flight(self) -> List[FetchCommand]:
        """A snapshot of the running commands, in dispatch order."""
        with self._lock:
            return list(self._running.values())

    def running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def stats(self) -> DownloaderStats:
        """A snapshot of the counters."""
        with self._lock:
            return self._stats_locked()

    def wait_until(self, predicate: Callable[[DownloaderStats], bool], timeout: Optional[float] = None) -> bool:
        """Block until ``predicate(stats())`` holds (re-checked after every change of state;
        bytes alone do not count as one); False on timeout (seconds, real time)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            version, snap = self._version, self._stats_locked()
        while not predicate(snap):
            with self._lock:
                while self._version == version:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                version, snap = self._version, self._stats_locked()
        return True

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        return self.wait_until(lambda s: s.idle, timeout)

    # -- internals (self._lock held) ---------------------------------------------------------
    def _bump_locked(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def _stats_locked(self) -> DownloaderStats:
        return DownloaderStats(
            running=len(self._running),
            queued=self._queues.counts(),
            throttling=self._throttling,
            **dataclasses.asdict(self._count),
        )

    def _preempt_low_locked(self) -> List[Tuple[FetchCommand, Callable[[], Any]]]:
        """High-stream work arrived: tell every running Low-stream fetch to stop. Returns
        the aborts to call once the lock is released."""
        aborts: List[Tuple[FetchCommand, Callable[[], Any]]] = []
        if not self.yield_to_high:
            return aborts
        for cmd in self._running.values():
            if is_urgent(cmd.slot) or cmd.cancelled.is_set():
                continue
            cmd.cancel("preempted")
            self._count.preempted += 1
            if cmd.abort is not None:
                aborts.append((cmd, cmd.abort))
        return aborts

    def _cancel_queued_locked(self, cmd: FetchCommand, reason: str) -> None:
        """Bookkeeping of a command leaving the queue cancelled (already out of the slots)."""
        cmd._state = _State.FINISHED
        cmd.cancel(reason)
        self._count.cancelled += 1
        self._count.finished += 1

    def _info_locked(self, cmd: FetchCommand, now: float, running: bool) -> FetchInfo:
        if running:
            return FetchInfo(
                cmd.id, cmd.label, cmd.slot, now - cmd._started_at, cmd._bytes, now - cmd._last_progress
            )
        return FetchInfo(cmd.id, cmd.label, cmd.slot, now - cmd._enqueued_at)

    def _stalled_event_locked(self, stalled_for: float, now: float) -> DownloaderStalled:
        slots = tuple(
            tuple(self._info_locked(cmd, now, False) for cmd in slot) for slot in self._queues.snapshot()
        )
        in_flight = tuple(self._info_locked(cmd, now, True) for cmd in self._running.values())
        return DownloaderStalled(stalled_for, slots, in_flight)

    def _wait_timeout_locked(self, now: float, tracker: StallTracker) -> Optional[float]:
        """Time-limited only while work is pending (watchdog, throttle); idle: no timeout."""
        if not self._queues and not self._running:
            return None
        deadlines = [d for d in (tracker.deadline(), self._throttle_deadline) if d is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    # -- threads -----------------------------------------------------------------------
    def _dispatch_loop(self, workers: _Workers) -> None:
        tracker = StallTracker(self.stall_window)
        with self._lock:
            seen = (self._count.started, self._count.finished, self._count.bytes)
        while True:
            stalled: Optional[DownloaderStalled] = None
            rejected: List[FetchCommand] = []
            with self._lock:
                if workers.stopping:
                    return
                self._count.dispatcher_idle = False
                now = self._clock()
                free = self.max_concurrent - len(self._running)
                batch, self._throttle_deadline = plan_pass(
                    self._queues,
                    free,
                    now,
                    self.demand_throttle,
                    self._throttle_deadline,
                    yield_to_high=self.yield_to_high,
                    high_running=any(is_urgent(cmd.slot) for cmd in self._running.values()),
                )
                for cmd in batch:
                    cmd._state = _State.RUNNING
                    cmd._started_at = cmd._last_progress = now
                    self._running[cmd.id] = cmd
                    try:
                        workers.pool.submit(self._run, cmd)
                    except RuntimeError:  # the pool refuses work (interpreter shutdown)
                        del self._running[cmd.id]
                        self._cancel_queued_locked(cmd, "closed")
                        rejected.append(cmd)
                        continue
                    self._count.started += 1
                self._count.peak_running = max(self._count.peak_running, len(self._running))
                self._throttling = self._throttle_deadline is not None
                self._count.passes += 1
                self._bump_locked()
                current = (self._count.started, self._count.finished, self._count.bytes)
                kind = classify(
                    queued=len(self._queues),
                    running=len(self._running),
                    drained=current[0] - seen[0],
                    completed=current[1] - seen[1],
                    nbytes=current[2] - seen[2],
                )
                seen = current
                pending = bool(self._queues) or bool(self._running)
                report = tracker.observe(kind, now, pending=pending)
                if report is not None:
                    if report.first:
                        self._count.stalls += 1
                    stalled = self._stalled_event_locked(report.stalled_for, now)
                elif not rejected:
                    timeout = self._wait_timeout_locked(now, tracker)
                    self._count.dispatcher_idle = timeout is None and not pending
                    self._wake.wait(timeout)
                    continue
            # Outside the lock: completions and subscribers may call back into us.
            self._complete_cancelled(rejected)
            if stalled is not None:
                log.warning("kithara-io: %s", stalled.describe())
                self._bus.publish(stalled)

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
            with self._lock:
                self._running.pop(cmd.id, None)
                cmd._state = _State.FINISHED
                if interrupted:
                    cmd.cancel("interrupted")
                if cmd.cancelled.is_set():
                    outcome = Outcome.CANCELLED
                    self._count.cancelled += 1
                elif error is not None:
                    outcome = Outcome.FAILED
                    self._count.failed += 1
                else:
                    outcome = Outcome.DONE
                    self._count.completed += 1
                self._count.finished += 1
                if self._queues:  # a place is free for queued work
                    self._wake.notify()
                self._bump_locked()
            if outcome is Outcome.CANCELLED:
                self._complete_cancelled([cmd])
            else:
                _complete(cmd, outcome, error)
            if interrupted:
                raise error
        finally:
            # The traceback references this frame: without this, error -> traceback -> frame
            # -> error is a cycle that keeps the failed request's socket open until a GC pass.
            error = None

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


def _complete(cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None:
    try:
        cmd.on_complete(cmd, outcome, error)
    except Exception:  # a broken callback must not kill a pool thread
        log.exception("completion callback of %r failed", cmd)


def _call_abort(cmd: FetchCommand, abort: Callable[[], Any]) -> None:
    try:
        abort()
    except Exception:
        log.exception("abort of %r failed", cmd)


def _abort_all(aborts: List[Tuple[FetchCommand, Callable[[], Any]]]) -> None:
    for cmd, abort in aborts:
        _call_abort(cmd, abort)


_default: Optional[Downloader] = None
_default_lock = threading.Lock()
_parent_default: Optional[Downloader] = None  # in a forked child: the parent's default
_default_pid = os.getpid()


def _replace_default_in_child() -> None:
    """Once per process: a forked child gets its own default Downloader."""
    global _default, _default_lock, _parent_default, _default_pid
    if _default_pid != os.getpid():
        _default_pid = os.getpid()
        _default_lock = threading.Lock()
        _parent_default, _default = _default, None


os.register_at_fork(after_in_child=_replace_default_in_child)


def default_downloader() -> Downloader:
    """The process-wide Downloader used when ``open()`` is given none."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Downloader()
        return _default


def _forget_default_in_child() -> None:
    """A forked child has none of the parent's threads: it starts its own default Downloader."""
    global _default, _default_lock
    _default, _default_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_default_in_child)
