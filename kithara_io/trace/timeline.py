"""Recorded events -> a fetch timeline: what a drawing shows, as plain values (pure).

A request is one :class:`Bar` from its ``RequestStarted`` to its completion, failure or
cancellation (or to the end of the recording if it was still running), in the lane of its
slot; requests of one slot that overlap in time get rows of their own. A request that was
cancelled before it started is a :class:`Bar` with ``start`` None (drawn as its queueing
only). Seeks, cancellations (epoch cancels, preemptions, closes), retries and failures are
:class:`Mark` s; a reader's wait from ``ReaderWaiting`` to ``ReaderResumed`` is a
:class:`Wait`. Streams are named by the recorder (one lane of seeks and waits each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..events import (
    Event,
    FirstByte,
    Progress,
    ReaderResumed,
    ReaderWaiting,
    RequestCancelled,
    RequestCompleted,
    RequestEnqueued,
    RequestFailed,
    RequestRetrying,
    RequestStarted,
    Seek,
)

#: What the four Downloader slots hold (``planning.slot_index``), as lane labels.
SLOT_NAMES = (
    "High stream, High request",
    "High stream, Low request",
    "Low stream, High request",
    "Low stream, Low request",
)


class Stamped(NamedTuple):
    """One recorded event: ``t`` seconds (monotonic clock) and the name of the stream it came from."""

    t: float
    stream: str
    event: Event


@dataclass
class Bar:
    """One request (a fetch command) as drawn."""

    request_id: int
    stream: str
    slot: int
    queued: float  # entered the Downloader's queue
    start: Optional[float]  # a pool thread (or the reader) began it; None: never started
    end: float  # completed, failed, cancelled, or the end of the recording
    outcome: str = "running"  # "completed", "failed", "cancelled" or "running" (unfinished)
    reason: str = ""  # the cancel reason ("epoch", "preempted", "closed", ...)
    first_byte: Optional[float] = None
    range: Optional[Tuple[int, int]] = None  # (start, end) end exclusive; None: the whole body
    bytes: int = 0
    url: str = ""
    row: int = 0  # the row inside its slot's lane (overlapping requests get their own)


@dataclass(frozen=True)
class Mark:
    """A moment: ``kind`` is "seek", "cancel", "retry" or "failed"; ``request_id`` is set for
    the marks of a request (drawn on its bar), None for a stream's (drawn in its lane)."""

    kind: str
    t: float
    stream: str
    text: str
    request_id: Optional[int] = None
    reason: str = ""


@dataclass(frozen=True)
class Wait:
    """A read blocked from ``start`` to ``end`` (end of the recording if it never resumed)."""

    stream: str
    start: float
    end: float
    position: int


@dataclass
class Timeline:
    t0: float
    t1: float
    streams: List[str]
    bars: List[Bar] = field(default_factory=list)
    marks: List[Mark] = field(default_factory=list)
    waits: List[Wait] = field(default_factory=list)

    def rows(self, slot: int) -> int:
        """How many rows the lane of ``slot`` needs (0: no request of that slot)."""
        return 1 + max((b.row for b in self.bars if b.slot == slot), default=-1)

    @property
    def slots(self) -> List[int]:
        """The slots with at least one request, in slot order."""
        return sorted({b.slot for b in self.bars})


def describe_range(r: Optional[Tuple[int, int]]) -> str:
    return "the whole body" if r is None else f"bytes {r[0]:,}-{r[1] - 1:,}"


def build(events: Sequence[Stamped], until: Optional[float] = None) -> Timeline:
    """The timeline of ``events`` (in any order; sorted by time here). ``until``: the end of
    the recording (default: the last event), where unfinished requests and waits end."""
    ordered = sorted(events, key=lambda s: s.t)
    t0 = ordered[0].t if ordered else 0.0
    t1 = max([until or t0] + [s.t for s in ordered])
    streams: List[str] = []
    bars: Dict[int, Bar] = {}
    marks: List[Mark] = []
    waits: List[Wait] = []
    waiting: Dict[str, Tuple[float, int]] = {}

    def bar(s: Stamped, request_id: int) -> Bar:
        found = bars.get(request_id)
        if found is None:  # recorded from the middle of its life: no RequestEnqueued seen
            found = bars[request_id] = Bar(request_id, s.stream, 0, s.t, None, t1, url=getattr(s.event, "url", ""))
        return found

    for s in ordered:
        if s.stream not in streams:
            streams.append(s.stream)
        ev = s.event
        if isinstance(ev, RequestEnqueued):
            bars[ev.request_id] = Bar(ev.request_id, s.stream, ev.slot, s.t, None, t1, range=ev.range, url=ev.url)
        elif isinstance(ev, RequestStarted):
            bar(s, ev.request_id).start = s.t
        elif isinstance(ev, FirstByte):
            b = bar(s, ev.request_id)
            b.first_byte = b.first_byte if b.first_byte is not None else s.t
        elif isinstance(ev, Progress):
            b = bar(s, ev.request_id)
            b.bytes = max(b.bytes, ev.total)
        elif isinstance(ev, RequestRetrying):
            marks.append(
                Mark("retry", s.t, s.stream, f"retry {ev.attempt} in {ev.delay:.2f} s: {ev.cause}", ev.request_id)
            )
        elif isinstance(ev, (RequestCompleted, RequestFailed, RequestCancelled)):
            b = bar(s, ev.request_id)
            b.end = s.t
            if isinstance(ev, RequestCompleted):
                b.outcome, b.bytes = "completed", max(b.bytes, ev.bytes)
            elif isinstance(ev, RequestFailed):
                b.outcome = "failed"
                marks.append(Mark("failed", s.t, s.stream, f"failed: {ev.error}", ev.request_id))
            else:
                b.outcome, b.reason = "cancelled", ev.reason
                marks.append(Mark("cancel", s.t, s.stream, f"cancelled ({ev.reason})", ev.request_id, ev.reason))
        elif isinstance(ev, Seek):
            what = "hit: bytes present" if ev.hit else "miss"
            marks.append(Mark("seek", s.t, s.stream, f"seek {ev.from_pos:,} -> {ev.to_pos:,} ({what})"))
        elif isinstance(ev, ReaderWaiting):
            waiting[s.stream] = (s.t, ev.position)
        elif isinstance(ev, ReaderResumed):
            start, position = waiting.pop(s.stream, (s.t - ev.waited, ev.position))
            waits.append(Wait(s.stream, start, s.t, position))
    for stream, (start, position) in waiting.items():
        waits.append(Wait(stream, start, t1, position))
    timeline = Timeline(t0, t1, streams, sorted(bars.values(), key=lambda b: (b.queued, b.request_id)), marks, waits)
    _assign_rows(timeline.bars)
    return timeline


def _assign_rows(bars: List[Bar]) -> None:
    """Greedy interval packing per slot: each bar (queueing included) takes the first row free
    at its enqueue time, so bars of one slot never overlap."""
    free_at: Dict[int, List[float]] = {}
    for b in bars:  # sorted by enqueue time
        rows = free_at.setdefault(b.slot, [])
        for i, busy_until in enumerate(rows):
            if busy_until <= b.queued:
                b.row, rows[i] = i, b.end
                break
        else:
            b.row = len(rows)
            rows.append(b.end)
