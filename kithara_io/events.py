"""Observable events of the engine, and the synchronous EventBus that delivers them.

Every event is a small frozen dataclass (a value: safe to keep, compare, send across threads).
Two kinds of publisher exist:

- the :class:`~kithara_io.engine.downloader.Downloader` publishes what it does itself:
  :class:`RequestEnqueued`, :class:`RequestStarted`, :class:`RequestCancelled` and
  :class:`DownloaderStalled` (``downloader.subscribe(cb)``);
- each stream has its own bus for what only the stream knows: first byte, progress,
  completion, retries, failures, seeks and reader waits.

A stream's bus receives the Downloader's events about its own requests too, and the
Downloader's bus receives the request events (:data:`REQUEST_EVENTS`) of every stream it
serves: one subscription there sees all downloads.

Subscribers run synchronously on the publishing thread (a pool thread, the dispatcher or the
caller of ``submit``/``cancel``), never while an engine lock is held. They must be quick and
must not block on the engine; record ``time.monotonic()`` on receipt if a timeline is needed.
A subscriber that raises is logged and otherwise ignored: it never breaks the engine.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple, Type, Union

from .reading.planning import Priority

log = logging.getLogger(__name__)

__all__ = [
    "Event",
    "FetchInfo",
    "RequestEnqueued",
    "RequestStarted",
    "FirstByte",
    "Progress",
    "RequestCompleted",
    "RequestRetrying",
    "RequestFailed",
    "RequestCancelled",
    "Seek",
    "ReaderWaiting",
    "ReaderResumed",
    "DownloaderStalled",
    "VariantSwitched",
    "Discontinuity",
    "REQUEST_EVENTS",
    "StreamGap",
    "MetadataChanged",
    "EventBus",
    "Subscription",
]


@dataclass(frozen=True)
class Event:
    """Base class of every event."""


# -- one request (a FetchCommand; ``request_id`` is ``FetchCommand.id``) -------------------


@dataclass(frozen=True)
class RequestEnqueued(Event):
    """A command entered the Downloader's queue. ``range`` is ``(start, end)``, end exclusive."""

    request_id: int
    url: str
    range: Optional[Tuple[int, int]]
    priority: Priority  # the request priority
    stream_priority: Priority = Priority.HIGH
    slot: int = 0


@dataclass(frozen=True)
class RequestStarted(Event):
    """A pool thread began running the command, ``wait_in_queue`` seconds after submit."""

    request_id: int
    wait_in_queue: float
    url: str = ""


@dataclass(frozen=True)
class FirstByte(Event):
    """The response headers arrived, ``ttfb`` seconds after the request was sent."""

    request_id: int
    ttfb: float
    url: str = ""


@dataclass(frozen=True)
class Progress(Event):
    """``bytes`` more body bytes were stored (``total`` so far for this request)."""

    request_id: int
    bytes: int
    total: int = 0
    url: str = ""


@dataclass(frozen=True)
class RequestCompleted(Event):
    """The request finished: ``bytes`` stored in ``duration`` seconds (bytes/second)."""

    request_id: int
    bytes: int
    duration: float
    bandwidth: float
    url: str = ""


@dataclass(frozen=True)
class RequestRetrying(Event):
    """A transient failure; attempt number ``attempt`` follows after ``delay`` seconds.

    ``cause`` is the failure's text, not the exception: keeping an exception would keep its
    traceback, and with it the failed connection, alive as long as a subscriber holds the event.
    """

    request_id: int
    attempt: int
    delay: float
    cause: str
    url: str = ""


@dataclass(frozen=True)
class RequestFailed(Event):
    """The request failed for good (the stream stores and raises ``error``)."""

    request_id: int
    error: BaseException
    url: str = ""


@dataclass(frozen=True)
class RequestCancelled(Event):
    """The command completed as cancelled; published exactly once per cancelled command.

    ``reason``: ``"cancelled"`` (``Downloader.cancel``), ``"owner"`` (``cancel_owner``),
    ``"closed"`` (downloader closed or last stream detached), ``"preempted"`` (a running
    Low-stream fetch gave way to High-stream work), ``"epoch"`` (a far seek made the stream's
    fetches useless) or a caller-given text.
    """

    request_id: int
    reason: str
    url: str = ""


#: The events about one request; a stream forwards the ones it publishes to its Downloader's bus.
REQUEST_EVENTS: Tuple[Type[Event], ...] = (
    RequestEnqueued,
    RequestStarted,
    FirstByte,
    Progress,
    RequestCompleted,
    RequestRetrying,
    RequestFailed,
    RequestCancelled,
)


# -- the reader ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Seek(Event):
    """The reader moved; ``hit`` if the bytes at ``to_pos`` were already present."""

    from_pos: int
    to_pos: int
    hit: bool


@dataclass(frozen=True)
class ReaderWaiting(Event):
    """A read blocks until the bytes at ``position`` arrive."""

    position: int


@dataclass(frozen=True)
class ReaderResumed(Event):
    """The blocked read at ``position`` continues after ``waited`` seconds."""

    position: int
    waited: float


@dataclass(frozen=True)
class VariantSwitched(Event):
    """An HLS stream reads its next segments from another variant (indexes in the master
    playlist's order); ``reason``: ``"throughput"`` (adaptive) or ``"selected"``."""

    from_variant: int
    to_variant: int
    reason: str


@dataclass(frozen=True)
class Discontinuity(Event):
    """A read of an HLS stream reached an ``#EXT-X-DISCONTINUITY`` (an ad break, a stitched
    stream): at byte ``position``, ``seconds`` into the stream, timestamps restart and the
    codec or rate may change; a fresh demuxer must read on from there (``hls.restarts``)."""

    position: int
    seconds: float


# -- live streams (radio, pipes) -------------------------------------------------------------


@dataclass(frozen=True)
class StreamGap(Event):
    """A live connection dropped and a new one took over: the bytes from ``position`` on come
    from the new connection, so a decoder resyncs there (audio in between was missed)."""

    position: int


@dataclass(frozen=True)
class MetadataChanged(Event):
    """The station sent new metadata (a title change): ``metadata`` is the whole dict as
    ``stream.metadata`` will show it once the reader reaches ``position``, the audio byte
    offset where it applies. Published when the metadata arrives, ahead of the reader."""

    metadata: Mapping[str, Union[str, int]]
    position: int


# -- the downloader -----------------------------------------------------------------------


@dataclass(frozen=True)
class FetchInfo:
    """A queued or running command as shown in a :class:`DownloaderStalled` dump.

    ``age``: seconds since it was submitted (queued) or started (running). ``idle_for``: for a
    running one, seconds since its last reported progress (or since it started).
    """

    request_id: int
    label: str
    slot: int
    age: float
    bytes: int = 0
    idle_for: float = 0.0


@dataclass(frozen=True)
class DownloaderStalled(Event):
    """Work is pending but nothing moved for ``stalled_for`` seconds (the hang watchdog).

    ``slots``: the queued commands of each of the four slots; ``in_flight``: the running ones.
    """

    stalled_for: float
    slots: Tuple[Tuple[FetchInfo, ...], ...]
    in_flight: Tuple[FetchInfo, ...]

    def describe(self) -> str:
        """A multi-line, human readable dump."""
        lines = [f"downloader stalled for {self.stalled_for:.1f}s"]
        lines.append(f"  in flight ({len(self.in_flight)}):")
        for f in self.in_flight:
            lines.append(
                f"    #{f.request_id} slot={f.slot} running {f.age:.1f}s, {f.bytes} B, "
                f"no progress for {f.idle_for:.1f}s  {f.label}"
            )
        for slot, queued in enumerate(self.slots):
            lines.append(f"  slot {slot} ({len(queued)} queued):")
            for f in queued:
                lines.append(f"    #{f.request_id} waiting {f.age:.1f}s  {f.label}")
        return "\n".join(lines)


# -- the bus ------------------------------------------------------------------------------

Callback = Callable[[Event], None]


class Subscription:
    """Handle returned by :meth:`EventBus.subscribe`; call it (or ``close()``, or leave its
    ``with`` block) to unsubscribe. Idempotent."""

    def __init__(self, bus: "EventBus", callback: Callback, types: Tuple[Type[Event], ...]) -> None:
        self._bus: Optional[EventBus] = bus
        self.callback = callback
        self.types = types

    def wants(self, event: Event) -> bool:
        return not self.types or isinstance(event, self.types)

    @property
    def active(self) -> bool:
        return self._bus is not None

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus._remove(self)

    __call__ = close

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Synchronous publish/subscribe. Thread-safe; subscribing or unsubscribing from inside a
    callback is allowed (it takes effect from the next ``publish``)."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._subs: Tuple[Subscription, ...] = ()  # copy-on-write: publish never locks

    def subscribe(self, callback: Callback, *types: Type[Event]) -> Subscription:
        """Call ``callback(event)`` for every event published from now on (only events of
        ``types`` when given). Returns the handle that unsubscribes."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        sub = Subscription(self, callback, tuple(types))
        with self._lock:
            self._subs = self._subs + (sub,)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    @property
    def has_subscribers(self) -> bool:
        """True when someone listens (publishers may skip building events otherwise)."""
        return bool(self._subs)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber in subscription order; an exception raised
        by a subscriber is logged and swallowed."""
        for sub in self._subs:
            if not sub.active or not sub.wants(event):
                continue
            try:
                sub.callback(event)
            except Exception:
                log.exception("event subscriber %r failed on %r", sub.callback, event)
