"""Events are frozen values; the EventBus delivers them synchronously and survives bad
subscribers; the Downloader publishes its own events in a consistent order."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter, defaultdict
from typing import Dict, List

import pytest

from kithara_io.engine.downloader import Downloader, FetchCommand, Outcome
from kithara_io.events import (
    DownloaderStalled,
    Event,
    EventBus,
    FetchInfo,
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
from kithara_io.reading.planning import Priority

WAIT = 10.0
H, L = Priority.HIGH, Priority.LOW

SAMPLES: List[Event] = [
    RequestEnqueued(1, "http://x/a", (0, 100), H, L, 2),
    RequestStarted(1, 0.5, "http://x/a"),
    FirstByte(1, 0.02),
    Progress(1, 4096, 8192),
    RequestCompleted(1, 100, 0.5, 200.0),
    RequestRetrying(1, 2, 0.25, "connection reset"),
    RequestFailed(1, RuntimeError("boom")),
    RequestCancelled(1, "cancelled"),
    Seek(0, 1000, False),
    ReaderWaiting(1000),
    ReaderResumed(1000, 0.1),
    DownloaderStalled(31.0, ((FetchInfo(2, "q", 0, 1.0),), (), (), ()), (FetchInfo(1, "r", 0, 31.0, 5, 31.0),)),
]


# -- the values ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_events_are_frozen_hashable_values(event):
    assert isinstance(event, Event) and dataclasses.is_dataclass(event)
    first = dataclasses.fields(event)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, first, 0)
    assert dataclasses.replace(event) == event
    hash(event)
    assert type(event).__name__ in repr(event)


def test_event_fields_as_specified():
    def names(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls)]

    assert names(RequestEnqueued)[:4] == ["request_id", "url", "range", "priority"]
    assert names(RequestStarted)[:2] == ["request_id", "wait_in_queue"]
    assert names(FirstByte)[:2] == ["request_id", "ttfb"]
    assert names(Progress)[:2] == ["request_id", "bytes"]
    assert names(RequestCompleted)[:4] == ["request_id", "bytes", "duration", "bandwidth"]
    assert names(RequestRetrying)[:4] == ["request_id", "attempt", "delay", "cause"]
    assert names(RequestFailed)[:2] == ["request_id", "error"]
    assert names(RequestCancelled)[:2] == ["request_id", "reason"]
    assert names(Seek) == ["from_pos", "to_pos", "hit"]
    assert names(ReaderWaiting) == ["position"]
    assert names(ReaderResumed) == ["position", "waited"]
    assert names(DownloaderStalled) == ["stalled_for", "slots", "in_flight"]
    for cls in (RequestStarted, FirstByte, Progress, RequestCompleted, RequestRetrying, RequestFailed, RequestCancelled):
        assert "url" in names(cls)


def test_stalled_describe_lists_slots_and_in_flight():
    text = SAMPLES[-1].describe()
    assert "stalled for 31.0s" in text and "#1" in text and "#2" in text and "slot 3 (0 queued)" in text


# -- the bus -------------------------------------------------------------------------------


def test_publish_calls_subscribers_in_order_synchronously():
    bus = EventBus()
    seen = []
    bus.subscribe(lambda e: seen.append(("a", e, threading.current_thread())))
    bus.subscribe(lambda e: seen.append(("b", e, threading.current_thread())))
    ev = Seek(0, 1, True)
    bus.publish(ev)
    me = threading.current_thread()
    assert seen == [("a", ev, me), ("b", ev, me)]


def test_unsubscribe_by_call_close_or_with_and_idempotent():
    bus = EventBus()
    seen = []
    one = bus.subscribe(seen.append)
    two = bus.subscribe(seen.append)  # the same callback twice: two subscriptions
    assert bus.has_subscribers
    bus.publish(ReaderWaiting(1))
    assert len(seen) == 2
    one()
    one()  # idempotent
    bus.publish(ReaderWaiting(2))
    assert len(seen) == 3
    two.close()
    assert not bus.has_subscribers and not two.active
    bus.publish(ReaderWaiting(3))
    assert len(seen) == 3
    with bus.subscribe(seen.append):
        bus.publish(ReaderWaiting(4))
    bus.publish(ReaderWaiting(5))
    assert [e.position for e in seen] == [1, 1, 2, 4]


def test_type_filter():
    bus = EventBus()
    seen = []
    bus.subscribe(seen.append, Seek, ReaderResumed)
    for ev in SAMPLES:
        bus.publish(ev)
    assert [type(e) for e in seen] == [Seek, ReaderResumed]


def test_failing_subscriber_is_logged_and_others_still_called(caplog):
    bus = EventBus()
    seen = []

    def bad(event):
        raise ValueError("nope")

    bus.subscribe(bad)
    bus.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="kithara_io.events"):
        bus.publish(Seek(0, 5, False))
        bus.publish(Seek(5, 0, True))
    assert len(seen) == 2
    failures = [r for r in caplog.records if r.name == "kithara_io.events"]
    assert len(failures) == 2 and all(r.exc_info[0] is ValueError for r in failures)


def test_subscribe_and_unsubscribe_from_inside_a_callback():
    bus = EventBus()
    seen = []
    late = []

    def first(event):
        seen.append(event)
        sub.close()  # unsubscribe myself
        bus.subscribe(late.append)  # takes effect from the next publish

    sub = bus.subscribe(first)
    bus.publish(ReaderWaiting(1))
    bus.publish(ReaderWaiting(2))
    assert [e.position for e in seen] == [1]
    assert [e.position for e in late] == [2]


def test_rejects_non_callable():
    with pytest.raises(TypeError):
        EventBus().subscribe(42)


def test_bus_is_thread_safe_under_concurrent_subscribe_publish():
    bus = EventBus()
    counts = Counter()
    lock = threading.Lock()
    start = threading.Barrier(4, timeout=WAIT)
    errors = []

    def counter(event):
        with lock:
            counts[event.position] += 1

    stable = bus.subscribe(counter)

    def churn():
        try:
            start.wait()
            for _ in range(300):
                bus.subscribe(lambda e: None)()
        except BaseException as exc:
            errors.append(exc)

    def publisher(base):
        try:
            start.wait()
            for i in range(300):
                bus.publish(ReaderWaiting(base + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn), threading.Thread(target=churn)]
    threads += [threading.Thread(target=publisher, args=(b,)) for b in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert not errors
    assert len(counts) == 600 and set(counts.values()) == {1}  # the stable one saw each once
    stable()
    assert not bus.has_subscribers


# -- the downloader's events -----------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: List[Event] = []

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def by_request(self) -> Dict[int, List[str]]:
        out: Dict[int, List[str]] = defaultdict(list)
        with self.lock:
            for e in self.events:
                if hasattr(e, "request_id"):
                    out[e.request_id].append(type(e).__name__)
        return out


def test_downloader_publishes_enqueued_started_cancelled_in_order():
    d = Downloader(max_concurrent=2, demand_throttle=0.001, stall_window=None)
    log = Log()
    sub = d.subscribe(log)
    d.attach()
    n = 60
    done = threading.Semaphore(0)
    outcomes: Dict[int, Outcome] = {}

    def body(cmd):
        if cmd.id % 4 == 0:
            assert cmd.cancelled.wait(WAIT)

    def complete(cmd, outcome, error):
        outcomes[cmd.id] = outcome
        done.release()

    cmds = [
        FetchCommand(
            body,
            complete,
            stream_priority=H if i % 2 else L,
            request_priority=L if i % 3 else H,
            owner=i % 3,
            url=f"http://x/{i}",
            byte_range=(i * 10, i * 10 + 10),
        )
        for i in range(n)
    ]
    try:
        for c in cmds:
            d.submit(c)
        for c in cmds[::5]:
            d.cancel(c)
        for c in cmds:
            if c.id % 4 == 0:
                d.cancel(c)
        for _ in range(n):
            assert done.acquire(timeout=WAIT)
    finally:
        d.close()
    sub()
    seqs = log.by_request()
    for c in cmds:
        seq = seqs[c.id]
        assert seq[0] == "RequestEnqueued"
        if outcomes[c.id] is Outcome.CANCELLED:
            assert seq[-1] == "RequestCancelled" and seq.count("RequestCancelled") == 1
            assert seq in (["RequestEnqueued", "RequestCancelled"], ["RequestEnqueued", "RequestStarted", "RequestCancelled"])
        else:
            assert seq == ["RequestEnqueued", "RequestStarted"]
    enq = {e.request_id: e for e in log.events if isinstance(e, RequestEnqueued)}
    c = cmds[7]
    assert enq[c.id] == RequestEnqueued(c.id, "http://x/7", (70, 80), L, H, 1)
    assert c.label == "http://x/7 bytes=70-79"
    started = [e for e in log.events if isinstance(e, RequestStarted)]
    assert all(e.wait_in_queue >= 0 and e.url.startswith("http://x/") for e in started)


def test_cancel_reasons():
    d = Downloader(max_concurrent=1, demand_throttle=0, stall_window=None)
    log = Log()
    d.subscribe(log, RequestCancelled)
    d.attach()
    release = threading.Event()
    started = threading.Event()

    def hold(cmd):
        started.set()
        assert release.wait(WAIT)

    noop = lambda c, o, e: None  # noqa: E731
    blocker = FetchCommand(hold, noop)
    a, b, c, e = (FetchCommand(lambda c: None, noop, owner=o) for o in ("x", "y", "z", "z"))
    d.submit(blocker)
    assert started.wait(WAIT)
    for cmd in (a, b, c, e):
        d.submit(cmd)
    d.cancel(a)
    d.cancel(b, reason="seek")
    d.cancel_owner("z")
    release.set()
    d.close()
    reasons = {ev.request_id: ev.reason for ev in log.events}
    assert reasons == {a.id: "cancelled", b.id: "seek", c.id: "owner", e.id: "owner"}


def test_stall_event_goes_to_subscribers_and_the_log(caplog):
    d = Downloader(max_concurrent=1, demand_throttle=0, stall_window=0.02)
    got = threading.Event()
    events = []

    def on_stall(event):
        events.append(event)
        got.set()

    d.subscribe(on_stall, DownloaderStalled)
    d.attach()
    gate = threading.Event()
    cmd = FetchCommand(lambda c: gate.wait(WAIT), lambda c, o, e: None, label="stuck fetch")
    cmd.abort = gate.set
    try:
        with caplog.at_level(logging.WARNING, logger="kithara_io.engine.downloader"):
            d.submit(cmd)
            assert got.wait(WAIT)
            d.cancel(cmd)
    finally:
        d.close()
    assert events[0].in_flight[0].label == "stuck fetch"
    assert "stalled" in caplog.text and "stuck fetch" in caplog.text


def test_command_bus_gets_the_downloader_events_of_its_commands_only():
    d = Downloader(max_concurrent=1, demand_throttle=0, stall_window=None)
    mine, everything = Log(), Log()
    stream_bus = EventBus("stream")
    stream_bus.subscribe(mine)
    d.subscribe(everything)
    d.attach()
    done = threading.Semaphore(0)
    release, started = threading.Event(), threading.Event()

    def hold(cmd):
        started.set()
        assert release.wait(WAIT)

    try:
        blocker = FetchCommand(hold, lambda c, o, e: done.release())
        d.submit(blocker)
        assert started.wait(WAIT)
        ours = [FetchCommand(lambda c: None, lambda c, o, e: done.release(), events=stream_bus) for _ in range(2)]
        other = FetchCommand(lambda c: None, lambda c, o, e: done.release())
        for c in (ours[0], other, ours[1]):
            d.submit(c)
        d.cancel(ours[1])
        release.set()
        for _ in range(4):
            assert done.acquire(timeout=WAIT)
    finally:
        d.close()
    assert mine.by_request() == {
        ours[0].id: ["RequestEnqueued", "RequestStarted"],
        ours[1].id: ["RequestEnqueued", "RequestCancelled"],
    }
    assert set(everything.by_request()) == {blocker.id, ours[0].id, ours[1].id, other.id}
    assert ours[0].started_at >= ours[0].enqueued_at > 0
