"""Pure scheduling: the fetch command, the four priority slots and the dispatcher's decisions.

Nothing here starts a thread or takes a lock: :class:`SlotQueues` orders commands,
:func:`plan_pass` decides what one dispatcher pass starts and :func:`may_start_inline`
whether a reader may run a command itself. The Downloader (threads, locks) only calls them.
"""

from __future__ import annotations

import collections
import enum
import itertools
import threading
from typing import Callable, Dict, Hashable, List, Optional, Tuple

from ..events import EventBus
from ..reading.planning import SLOT_COUNT, Priority, is_urgent, slot_index

_ids = itertools.count(1)


class CancelFlag:
    """A command's cancellation (a ``retry.Cancellation``): a one-way ``threading.Event``
    (``is_set``, ``set``, ``wait``) that makes its Event only when a thread waits on it.
    Most commands are never waited on (only a retry's backoff is), and an Event with its
    Condition costs ~8 us to make, which a random read paid for its one fetch."""

    __slots__ = ("_set", "_event", "_lock")

    def __init__(self) -> None:
        self._set = False
        self._event: Optional[threading.Event] = None
        self._lock = threading.Lock()  # guards _event's creation against set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until set or ``timeout`` seconds pass; True if set."""
        with self._lock:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


class Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _State(enum.Enum):
    NEW = 0
    QUEUED = 1
    RUNNING = 2
    FINISHED = 3


class FetchCommand:
    """One unit of work: ``run(cmd)`` on a pool thread (or on the caller of
    :meth:`Downloader.try_run_inline`), then ``on_complete(cmd, outcome, error)`` exactly
    once, also when cancelled while still queued.

    ``owner``: any hashable token grouping the commands of one stream, for
    :meth:`Downloader.reprioritize` and :meth:`Downloader.cancel_owner`. ``url`` and
    ``byte_range`` (``(start, end)``, end exclusive) only describe the command in events.
    ``events``: a bus (the stream's) that also receives the Downloader's events about this
    command (RequestEnqueued, RequestStarted, RequestCancelled).
    """

    def __init__(
        self,
        run: Callable[["FetchCommand"], None],
        on_complete: Callable[["FetchCommand", Outcome, Optional[BaseException]], None],
        *,
        stream_priority: Priority = Priority.HIGH,
        request_priority: Priority = Priority.HIGH,
        label: str = "",
        owner: Optional[Hashable] = None,
        url: str = "",
        byte_range: Optional[Tuple[int, int]] = None,
        events: Optional[EventBus] = None,
    ) -> None:
        self.id = next(_ids)
        self.run = run
        self.on_complete = on_complete
        self.stream_priority = stream_priority
        self.request_priority = request_priority
        self.owner = owner
        self.url = url
        self.byte_range = byte_range
        self.events = events
        if not label and url:
            label = url if byte_range is None else f"{url} bytes={byte_range[0]}-{byte_range[1] - 1}"
        self.label = label
        # Set by cancel(); the run function checks it between body chunks.
        self.cancelled = CancelFlag()
        # Installed by the run function while it blocks on I/O; called by cancel() to unblock it.
        self.abort: Optional[Callable[[], None]] = None
        self._state = _State.NEW
        self._cancel_reason: Optional[str] = None  # the first cancel()'s reason
        self._enqueued_at = 0.0
        self._started_at = 0.0
        self._last_progress = 0.0
        self._bytes = 0

    @property
    def slot(self) -> int:
        return slot_index(self.stream_priority, self.request_priority)

    @property
    def enqueued_at(self) -> float:
        """The Downloader clock's reading at submit (0.0 before)."""
        return self._enqueued_at

    @property
    def started_at(self) -> float:
        """The Downloader clock's reading at dispatch (0.0 before)."""
        return self._started_at

    @property
    def bytes_received(self) -> int:
        """Bytes reported for this command through ``Downloader.note_progress(n, cmd)``."""
        return self._bytes

    @property
    def cancel_reason(self) -> Optional[str]:
        return self._cancel_reason

    def cancel(self, reason: str) -> None:
        """Tell the run function to stop (it checks between body chunks); the first reason
        given is the one reported. The Downloader completes the command."""
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self.cancelled.set()

    def __repr__(self) -> str:
        return f"<FetchCommand {self.id} slot={self.slot} {self._state.name} {self.label}>"


# -- pure scheduling ------------------------------------------------------------------------


class SlotQueues:
    """The four FIFO queues of queued commands (pure data: no threads, no locking).

    A command is in at most one slot; it remembers the slot it was queued in, so it can be
    removed even if its priorities were changed meanwhile.
    """

    def __init__(self) -> None:
        self._slots: List["collections.OrderedDict[int, FetchCommand]"] = [
            collections.OrderedDict() for _ in range(SLOT_COUNT)
        ]
        self._slot_of: Dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, cmd: object) -> bool:
        return isinstance(cmd, FetchCommand) and cmd.id in self._slot_of

    def push(self, cmd: FetchCommand) -> None:
        """Append ``cmd`` to the end of its slot. Queuing a command twice is a ValueError."""
        if cmd.id in self._slot_of:
            raise ValueError(f"{cmd!r} is already queued")
        slot = cmd.slot
        self._slots[slot][cmd.id] = cmd
        self._slot_of[cmd.id] = slot

    def remove(self, cmd: FetchCommand) -> bool:
        """Take ``cmd`` out; False if it was not queued."""
        slot = self._slot_of.pop(cmd.id, None)
        if slot is None:
            return False
        del self._slots[slot][cmd.id]
        return True

    def head_slot(self) -> Optional[int]:
        """The slot the next ``pop()`` takes from, or None when empty."""
        for index, slot in enumerate(self._slots):
            if slot:
                return index
        return None

    def pop(self) -> Optional[FetchCommand]:
        """The oldest command of the first non-empty slot, or None."""
        for slot in self._slots:
            if slot:
                _, cmd = slot.popitem(last=False)
                del self._slot_of[cmd.id]
                return cmd
        return None

    def take_owner(self, owner: Hashable) -> List[FetchCommand]:
        """Remove and return every queued command of ``owner`` (slot order, then FIFO)."""
        taken = [cmd for slot in self._slots for cmd in slot.values() if cmd.owner == owner]
        for cmd in taken:
            self.remove(cmd)
        return taken

    def reprioritize(self, owner: Hashable, stream_priority: Priority) -> List[FetchCommand]:
        """Give ``owner``'s queued commands the new stream priority and move each whose slot
        changes to the end of its new slot, keeping their relative order. Returns the moved."""
        moved: List[FetchCommand] = []
        for slot in self._slots:
            for cmd in list(slot.values()):
                if cmd.owner != owner:
                    continue
                cmd.stream_priority = stream_priority
                if self._slot_of[cmd.id] != cmd.slot:
                    moved.append(cmd)
        # Each destination slot receives from one source slot only (the request priority is
        # kept), so removing in slot/FIFO order and appending in that order keeps FIFO.
        for cmd in moved:
            self.remove(cmd)
            self.push(cmd)
        return moved

    def clear(self) -> List[FetchCommand]:
        """Remove and return everything (slot order, then FIFO)."""
        everything = [cmd for slot in self._slots for cmd in slot.values()]
        for slot in self._slots:
            slot.clear()
        self._slot_of.clear()
        return everything

    def snapshot(self) -> List[List[FetchCommand]]:
        """The four slots, each oldest first."""
        return [list(slot.values()) for slot in self._slots]

    def counts(self) -> Tuple[int, ...]:
        return tuple(len(slot) for slot in self._slots)


def plan_pass(
    queues: SlotQueues,
    free: int,
    now: float,
    throttle: float,
    deadline: Optional[float],
    *,
    yield_to_high: bool = False,
    high_running: bool = False,
) -> Tuple[List[FetchCommand], Optional[float]]:
    """One dispatcher pass: pop the commands to start now, at most ``free`` of them.

    Urgent commands (slots 0-1) always go. A Low-stream command (slots 2-3) goes only once
    the demand-throttle pause is over: the pause starts (deadline = ``now + throttle``) at the
    first pass where such a command could take a free place, and ``deadline`` is the pause
    in progress, if any. With ``yield_to_high``, Low-stream work does not start at all while
    High-stream work runs (``high_running``) or starts in this pass. Returns the commands in
    start order and the pause still in progress (None when not throttling: the next pause
    starts afresh).
    """
    batch: List[FetchCommand] = []
    while len(batch) < free:
        slot = queues.head_slot()
        if slot is None:
            break
        if not is_urgent(slot) and yield_to_high and (high_running or any(is_urgent(c.slot) for c in batch)):
            return batch, None
        if not is_urgent(slot) and throttle > 0:
            if deadline is None:
                deadline = now + throttle
            if now < deadline:
                return batch, deadline
        cmd = queues.pop()
        assert cmd is not None
        batch.append(cmd)
    return batch, None


def may_start_inline(
    queues: SlotQueues,
    slot: int,
    free: int,
    *,
    throttle: float,
    yield_to_high: bool,
    high_running: bool,
) -> bool:
    """May a command of ``slot`` start now on its submitter's thread (``try_run_inline``)?

    Only if a dispatcher pass would start it right now as the next command: a place is free,
    nothing is queued in its slot (older, FIFO) or in a more urgent one, and, for Low-stream
    work, no demand-throttle pause applies (``throttle`` 0) and it need not yield to running
    High-stream work.
    """
    if free <= 0:
        return False
    head = queues.head_slot()
    if head is not None and head <= slot:
        return False
    if is_urgent(slot):
        return True
    return throttle <= 0 and not (yield_to_high and high_running)
