"""Downloader: four priority slots feeding a bounded pool of fetch threads.

Ownership: ``self._cond`` (one Condition) guards the slots, the running set and the worker
generation. Nothing is called out while it is held: completions and aborts run after it is
released, so a completion callback may submit or cancel freely.

Threads (one dispatcher and at most ``max_concurrent`` pool workers) exist only while at
least one stream is attached; the last ``detach()`` stops and joins them, so closing every
stream leaves no thread behind, even on the shared default downloader.
"""

from __future__ import annotations

import collections
import enum
import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Deque, List, Optional, Set

from .planning import SLOT_COUNT, Priority, slot_index

log = logging.getLogger(__name__)

_ids = itertools.count(1)
_THREAD_PREFIX = "kithara-fetch"


class Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _State(enum.Enum):
    QUEUED = 0
    RUNNING = 1
    FINISHED = 2


class FetchCommand:
    """One unit of work: ``run(cmd)`` on a pool thread, then ``on_complete(cmd, outcome,
    error)`` exactly once, also when cancelled while still queued."""

    def __init__(
        self,
        run: Callable[["FetchCommand"], None],
        on_complete: Callable[["FetchCommand", Outcome, Optional[BaseException]], None],
        *,
        stream_priority: Priority = Priority.HIGH,
        request_priority: Priority = Priority.HIGH,
        label: str = "",
    ) -> None:
        self.id = next(_ids)
        self.run = run
        self.on_complete = on_complete
        self.stream_priority = stream_priority
        self.request_priority = request_priority
        self.label = label
        # Set by cancel(); the run function checks it between body chunks.
        self.cancelled = threading.Event()
        # Installed by the run function while it blocks on I/O; called by cancel() to unblock it.
        self.abort: Optional[Callable[[], None]] = None
        self._state = _State.QUEUED

    @property
    def slot(self) -> int:
        return slot_index(self.stream_priority, self.request_priority)

    def __repr__(self) -> str:
        return f"<FetchCommand {self.id} slot={self.slot} {self._state.name} {self.label}>"


class _Workers:
    """One generation of threads: a dispatcher and a pool, started and stopped together."""

    def __init__(self, owner: "Downloader") -> None:
        self.stopping = False
        self.pool = ThreadPoolExecutor(owner.max_concurrent, thread_name_prefix=_THREAD_PREFIX)
        self.dispatcher = threading.Thread(
            target=owner._dispatch_loop, args=(self,), name=f"{_THREAD_PREFIX}-dispatcher"
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

    One default instance (:func:`default_downloader`) serves every stream unless a caller
    passes its own.
    """

    def __init__(self, max_concurrent: int = 5) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.max_concurrent = max_concurrent
        self._cond = threading.Condition(threading.Lock())
        self._slots: List[Deque[FetchCommand]] = [collections.deque() for _ in range(SLOT_COUNT)]
        self._running: Set[FetchCommand] = set()
        self._users = 0
        self._workers: Optional[_Workers] = None
        self._closed = False
        self.peak_running = 0

    # -- lifecycle ---------------------------------------------------------------------
    def attach(self) -> None:
        """A stream starts using this downloader (threads start if needed)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("Downloader is closed")
            self._users += 1
            if self._workers is None:
                self._workers = _Workers(self)

    def detach(self) -> None:
        """A stream is done; the last one out stops and joins the threads."""
        with self._cond:
            self._users -= 1
            workers = self._stop_workers_locked() if self._users <= 0 else None
        self._finish(workers)

    def close(self) -> None:
        """Cancel everything queued and stop the threads. Idempotent."""
        with self._cond:
            self._closed = True
            workers = self._stop_workers_locked()
        self._finish(workers)

    def _stop_workers_locked(self):
        self._users = max(self._users, 0)
        workers, self._workers = self._workers, None
        queued = [cmd for slot in self._slots for cmd in slot]
        for slot in self._slots:
            slot.clear()
        for cmd in queued:
            cmd._state = _State.FINISHED
        if workers is not None:
            workers.stopping = True
            self._cond.notify_all()
        return workers, queued

    def _finish(self, stopped) -> None:
        if stopped is None:
            return
        workers, queued = stopped
        for cmd in queued:
            _complete(cmd, Outcome.CANCELLED, None)
        if workers is not None:
            workers.join()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- work --------------------------------------------------------------------------
    def submit(self, cmd: FetchCommand) -> None:
        """Queue a command in its slot; urgent slots wake the dispatcher at once."""
        with self._cond:
            if self._workers is None:
                raise RuntimeError("submit() needs an attached stream (call attach() first)")
            self._slots[cmd.slot].append(cmd)
            self._cond.notify_all()

    def cancel(self, cmd: FetchCommand) -> None:
        """Cancel a command: a queued one completes CANCELLED now, a running one is told to
        stop and its blocking I/O aborted; a finished one is left alone."""
        with self._cond:
            state = cmd._state
            if state is _State.QUEUED:
                try:
                    self._slots[cmd.slot].remove(cmd)
                except ValueError:
                    pass
                cmd._state = _State.FINISHED
            cmd.cancelled.set()
            abort = cmd.abort if state is _State.RUNNING else None
        if state is _State.QUEUED:
            _complete(cmd, Outcome.CANCELLED, None)
        elif abort is not None:
            abort()

    def queued(self) -> List[List[FetchCommand]]:
        """A snapshot of the four slots."""
        with self._cond:
            return [list(slot) for slot in self._slots]

    def running_count(self) -> int:
        with self._cond:
            return len(self._running)

    # -- threads -----------------------------------------------------------------------
    def _pop_locked(self) -> Optional[FetchCommand]:
        for slot in self._slots:
            if slot:
                return slot.popleft()
        return None

    def _dispatch_loop(self, workers: _Workers) -> None:
        with self._cond:
            while not workers.stopping:
                # One pass starts as many commands as there are free pool places.
                while len(self._running) < self.max_concurrent:
                    cmd = self._pop_locked()
                    if cmd is None:
                        break
                    cmd._state = _State.RUNNING
                    self._running.add(cmd)
                    self.peak_running = max(self.peak_running, len(self._running))
                    workers.pool.submit(self._run, cmd)
                self._cond.wait()

    def _run(self, cmd: FetchCommand) -> None:
        error: Optional[BaseException] = None
        try:
            cmd.run(cmd)
        except BaseException as exc:  # noqa: BLE001 - reported through the completion
            error = exc
        finally:
            with self._cond:
                self._running.discard(cmd)
                cmd._state = _State.FINISHED
                self._cond.notify_all()
        try:
            if cmd.cancelled.is_set():
                _complete(cmd, Outcome.CANCELLED, None)
            elif error is not None:
                _complete(cmd, Outcome.FAILED, error)
            else:
                _complete(cmd, Outcome.DONE, None)
        finally:
            # The traceback references this frame: without this, error -> traceback -> frame
            # -> error is a cycle that keeps the failed request's socket open until a GC pass.
            error = None


def _complete(cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None:
    try:
        cmd.on_complete(cmd, outcome, error)
    except Exception:  # a broken callback must not kill a pool thread
        log.exception("completion callback of %r failed", cmd)


_default: Optional[Downloader] = None
_default_lock = threading.Lock()


def default_downloader() -> Downloader:
    """The process-wide Downloader used when ``open()`` is given none."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Downloader()
        return _default
