"""The Downloader with real threads and scripted commands (no sockets, no sleeps as
synchronisation: Events, Barriers, ``wait_until`` and an injectable clock, all bounded)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import List, Optional

import pytest

from kithara_io.engine.downloader import Downloader, FetchCommand, Outcome
from kithara_io.engine.scheduling import CancelFlag
from kithara_io.events import DownloaderStalled, RequestCancelled, RequestEnqueued, RequestStarted
from kithara_io.reading.planning import Priority

WAIT = 10.0  # generous bound for every Event wait; a correct run never approaches it


class Recorder:
    """Collects run order and completions; ``done`` is set after ``expected`` completions."""

    def __init__(self, expected: int) -> None:
        self.lock = threading.Lock()
        self.ran: List[str] = []
        self.completions: Counter = Counter()
        self.outcomes = {}
        self.expected = expected
        self.done = threading.Event()

    def command(self, label, stream=Priority.HIGH, request=Priority.HIGH, body=None) -> FetchCommand:
        def run(cmd: FetchCommand) -> None:
            with self.lock:
                self.ran.append(label)
            if body is not None:
                body(cmd)

        def complete(cmd: FetchCommand, outcome: Outcome, error: Optional[BaseException]) -> None:
            with self.lock:
                self.completions[label] += 1
                self.outcomes[label] = (outcome, error)
                if sum(self.completions.values()) >= self.expected:
                    self.done.set()

        return FetchCommand(run, complete, stream_priority=stream, request_priority=request, label=label)


@pytest.fixture
def downloader():
    d = Downloader(max_concurrent=1)
    d.attach()
    yield d
    d.close()


def blocker(recorder: Recorder):
    """A command that holds the only pool place until ``release`` is set."""
    started, release = threading.Event(), threading.Event()

    def body(cmd):
        started.set()
        assert release.wait(WAIT)

    return recorder.command("blocker", body=body), started, release


def test_slots_are_served_strictly_in_order(downloader):
    rec = Recorder(expected=9)
    block, started, release = blocker(rec)
    downloader.submit(block)
    assert started.wait(WAIT)
    H, L = Priority.HIGH, Priority.LOW
    submitted = [("LL1", L, L), ("LH1", L, H), ("HL1", H, L), ("HH1", H, H),
                 ("LL2", L, L), ("HH2", H, H), ("LH2", L, H), ("HL2", H, L)]
    for label, s, r in submitted:
        downloader.submit(rec.command(label, s, r))
    release.set()
    assert rec.done.wait(WAIT)
    assert rec.ran == ["blocker", "HH1", "HH2", "HL1", "HL2", "LH1", "LH2", "LL1", "LL2"]
    assert all(n == 1 for n in rec.completions.values())


def test_cancel_while_queued_completes_once_as_cancelled(downloader):
    rec = Recorder(expected=3)
    block, started, release = blocker(rec)
    downloader.submit(block)
    assert started.wait(WAIT)
    victim, other = rec.command("victim"), rec.command("other")
    downloader.submit(victim)
    downloader.submit(other)
    downloader.cancel(victim)
    downloader.cancel(victim)  # twice: still one completion
    assert rec.outcomes["victim"] == (Outcome.CANCELLED, None)
    release.set()
    assert rec.done.wait(WAIT)
    assert "victim" not in rec.ran
    assert rec.completions == Counter(blocker=1, victim=1, other=1)
    assert rec.outcomes["other"][0] is Outcome.DONE


def test_cancel_while_running_reports_cancelled(downloader):
    rec = Recorder(expected=1)

    def body(cmd):
        started.set()
        assert cmd.cancelled.wait(WAIT)

    started = threading.Event()
    cmd = rec.command("running", body=body)
    downloader.submit(cmd)
    assert started.wait(WAIT)
    downloader.cancel(cmd)
    assert rec.done.wait(WAIT)
    assert rec.outcomes["running"] == (Outcome.CANCELLED, None)


def test_failure_is_reported_with_its_error(downloader):
    rec = Recorder(expected=1)
    boom = RuntimeError("boom")

    def body(cmd):
        raise boom

    downloader.submit(rec.command("bad", body=body))
    assert rec.done.wait(WAIT)
    assert rec.outcomes["bad"] == (Outcome.FAILED, boom)


def test_max_concurrent_is_never_exceeded():
    d = Downloader(max_concurrent=3)
    d.attach()
    try:
        rec = Recorder(expected=12)
        lock = threading.Lock()
        running = [0, 0]  # now, peak
        barrier = threading.Barrier(3, timeout=WAIT)

        def body(cmd):
            with lock:
                running[0] += 1
                running[1] = max(running[1], running[0])
            try:
                barrier.wait()  # all three places must fill before anyone finishes
            finally:
                with lock:
                    running[0] -= 1

        for i in range(12):
            d.submit(rec.command(f"c{i}", body=body))
        assert rec.done.wait(WAIT)
        assert running[1] == 3 and d.peak_running == 3
        assert all(outcome is Outcome.DONE for outcome, _ in rec.outcomes.values())
    finally:
        d.close()


def test_close_cancels_queued_and_joins_threads():
    d = Downloader(max_concurrent=1)
    d.attach()
    rec = Recorder(expected=3)
    block, started, release = blocker(rec)
    d.submit(block)
    assert started.wait(WAIT)
    d.submit(rec.command("q1"))
    d.submit(rec.command("q2"))
    release.set()
    d.close()
    assert rec.done.wait(WAIT)
    assert sum(rec.completions.values()) == 3 and set(rec.completions.values()) == {1}
    assert not [t for t in threading.enumerate() if t.name.startswith("kithara-fetch")]
    with pytest.raises(RuntimeError, match="closed"):
        d.attach()


def test_last_detach_stops_threads_and_attach_restarts_them():
    d = Downloader(max_concurrent=2)
    for _ in range(3):
        d.attach()
        d.attach()
        assert any(t.name.startswith("kithara-fetch") for t in threading.enumerate())
        d.detach()
        assert any(t.name.startswith("kithara-fetch") for t in threading.enumerate())
        d.detach()
        assert not [t for t in threading.enumerate() if t.name.startswith("kithara-fetch")]
    d.close()


def test_completion_callback_may_submit_more_work(downloader):
    rec = Recorder(expected=1)
    second = rec.command("second")
    first = FetchCommand(lambda c: None, lambda c, o, e: downloader.submit(second), label="first")
    downloader.submit(first)
    assert rec.done.wait(WAIT)
    assert rec.ran == ["second"] and rec.outcomes["second"][0] is Outcome.DONE


# -- issue #4: priorities, throttle, batch dispatch, cancel, watchdog, stats ---------------

H, L = Priority.HIGH, Priority.LOW


def fetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("kithara-fetch")]


class FakeClock:
    """A clock that only moves when told to: deadlines computed from it never expire by
    themselves, so timing decisions become deterministic."""

    def __init__(self, now: float = 1000.0) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, dt: float) -> None:
        with self._lock:
            self._now += dt


class EventLog:
    """Thread-safe list of events with a condition to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list = []

    def __call__(self, event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def of(self, kind) -> list:
        with self.cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, predicate, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.events), timeout)


def started_ids(log: EventLog) -> list:
    return [e.request_id for e in log.of(RequestStarted)]


def gated(recorder: Recorder, label: str, stream=H, request=H, owner=None):
    """A command that blocks until its gate opens (cancel opens it too); returns (cmd, started, gate)."""
    started, gate = threading.Event(), threading.Event()

    def body(cmd):
        started.set()
        assert gate.wait(WAIT)

    cmd = recorder.command(label, stream, request, body=body)
    cmd.owner = owner
    cmd.abort = gate.set
    return cmd, started, gate


def test_urgent_work_interrupts_the_demand_throttle():
    # yield_to_high off: the pause goes on while the urgent work runs (with it, Low waits anyway)
    d = Downloader(max_concurrent=2, demand_throttle=60.0, stall_window=None, yield_to_high=False)
    d.attach()
    log = EventLog()
    d.subscribe(log)
    try:
        rec = Recorder(expected=2)
        low, low_started, _ = gated(rec, "low", L, H)
        d.submit(low)
        # the dispatcher saw the low command, a place is free: it is pausing
        assert d.wait_until(lambda s: s.throttling and s.queued == (0, 0, 1, 0), WAIT)
        urgent, urgent_started, urgent_gate = gated(rec, "urgent", H, L)
        d.submit(urgent)
        assert urgent_started.wait(WAIT)  # at once, during the 60 s pause
        assert not low_started.is_set()
        s = d.stats()
        assert s.queued == (0, 0, 1, 0) and s.running == 1 and s.throttling
        assert started_ids(log) == [urgent.id]
        urgent_gate.set()
    finally:
        d.close()  # cancels the low command still waiting out the pause
    assert rec.done.wait(WAIT)
    assert rec.outcomes["low"] == (Outcome.CANCELLED, None)
    assert rec.outcomes["urgent"][0] is Outcome.DONE
    assert "low" not in rec.ran
    assert [e.reason for e in log.of(RequestCancelled)] == ["closed"]


def test_low_work_waits_out_the_demand_throttle():
    clock = FakeClock()
    d = Downloader(max_concurrent=2, demand_throttle=0.05, stall_window=None, clock=clock)
    d.attach()
    log = EventLog()
    d.subscribe(log)
    try:
        rec = Recorder(expected=2)
        d.submit(rec.command("low1", L, L))
        d.submit(rec.command("low2", L, H))
        assert d.wait_until(lambda s: s.throttling and s.queued_total == 2, WAIT)
        # real time passes (the dispatcher re-checks after 50 ms), the clock does not: still paused
        assert not d.wait_until(lambda s: s.started > 0, 0.2)
        clock.advance(0.05)
        assert rec.done.wait(WAIT)
        assert sorted(rec.ran) == ["low1", "low2"]
        # both started in the pass that ended the pause, 50 ms (of the clock) after submit
        waits = [e.wait_in_queue for e in log.of(RequestStarted)]
        assert waits == [pytest.approx(0.05), pytest.approx(0.05)]
        assert not d.stats().throttling
    finally:
        d.close()


def test_zero_throttle_dispatches_low_work_at_once():
    d = Downloader(max_concurrent=1, demand_throttle=0, stall_window=None)
    d.attach()
    try:
        rec = Recorder(expected=1)
        d.submit(rec.command("low", L, L))
        assert rec.done.wait(WAIT)
        assert not d.stats().throttling
    finally:
        d.close()


def test_high_stream_work_preempts_running_low_stream_work():
    d = Downloader(max_concurrent=3, demand_throttle=0, stall_window=None)
    d.attach()
    log = EventLog()
    d.subscribe(log)
    try:
        rec = Recorder(expected=4)
        low1, low1_started, _ = gated(rec, "low1", L, L)
        low2, low2_started, _ = gated(rec, "low2", L, H)
        d.submit(low1)
        d.submit(low2)
        assert low1_started.wait(WAIT) and low2_started.wait(WAIT)
        urgent, urgent_started, urgent_gate = gated(rec, "urgent", H, L)
        d.submit(urgent)  # both running Low commands are told to stop, their I/O aborted
        assert urgent_started.wait(WAIT)
        assert d.wait_until(lambda s: s.cancelled == 2 and s.running == 1, WAIT)
        assert sorted(e.reason for e in log.of(RequestCancelled)) == ["preempted", "preempted"]
        # Low work submitted now waits while the High-stream command runs, a place being free
        later, later_started, later_gate = gated(rec, "later", L, H)
        d.submit(later)
        assert d.wait_until(lambda s: s.queued == (0, 0, 1, 0) and s.running == 1 and s.passes > 0, WAIT)
        assert not later_started.is_set() and not d.stats().throttling
        urgent_gate.set()
        assert later_started.wait(WAIT)  # the High work is over: the Low work goes
        later_gate.set()
        assert rec.done.wait(WAIT)
    finally:
        d.close()
    assert rec.outcomes["low1"][0] is rec.outcomes["low2"][0] is Outcome.CANCELLED
    assert rec.outcomes["urgent"][0] is rec.outcomes["later"][0] is Outcome.DONE
    s = d.stats()
    assert s.preempted == 2 and s.cancelled == 2 and s.completed == 2


def test_without_yield_low_stream_work_keeps_running_beside_high():
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=None, yield_to_high=False)
    d.attach()
    try:
        rec = Recorder(expected=2)
        low, low_started, low_gate = gated(rec, "low", L, L)
        d.submit(low)
        assert low_started.wait(WAIT)
        urgent, urgent_started, urgent_gate = gated(rec, "urgent", H, H)
        d.submit(urgent)
        assert urgent_started.wait(WAIT)
        assert d.stats().running == 2 and not low.cancelled.is_set()
        low_gate.set()
        urgent_gate.set()
        assert rec.done.wait(WAIT)
    finally:
        d.close()
    assert rec.outcomes["low"][0] is Outcome.DONE and d.stats().preempted == 0


def test_raising_a_stream_to_high_preempts_other_low_work():
    d = Downloader(max_concurrent=1, demand_throttle=0, stall_window=None)
    d.attach()
    try:
        rec = Recorder(expected=2)
        running, running_started, _ = gated(rec, "running", L, L, owner="a")
        d.submit(running)
        assert running_started.wait(WAIT)
        waiting, waiting_started, waiting_gate = gated(rec, "waiting", L, H, owner="b")
        d.submit(waiting)  # the only place is taken
        assert d.wait_until(lambda s: s.queued == (0, 0, 1, 0), WAIT)
        d.reprioritize("b", Priority.HIGH)  # now urgent: it preempts "a" and takes its place
        assert waiting_started.wait(WAIT)
        waiting_gate.set()
        assert rec.done.wait(WAIT)
    finally:
        d.close()
    assert rec.outcomes["running"][0] is Outcome.CANCELLED
    assert rec.outcomes["waiting"][0] is Outcome.DONE
    assert d.stats().preempted == 1


@pytest.mark.parametrize("max_concurrent", [3, 5])
def test_one_pass_starts_all_urgent_work_that_fits(max_concurrent):
    d = Downloader(max_concurrent=max_concurrent, demand_throttle=60.0, stall_window=None)
    d.attach()
    try:
        rec = Recorder(expected=5)
        cmds = [gated(rec, f"c{i}", L, H, owner="me") for i in range(5)]
        for cmd, _, _ in cmds:
            d.submit(cmd)
        assert d.wait_until(lambda s: s.throttling and s.queued == (0, 0, 5, 0), WAIT)
        passes = d.stats().passes
        assert d.reprioritize("me", H) == 5  # all become urgent with one wake-up
        fits = min(5, max_concurrent)
        assert d.wait_until(lambda s: s.running == fits, WAIT)
        s = d.stats()
        assert s.passes == passes + 1  # one pass started them all
        assert s.queued == (5 - fits, 0, 0, 0)
        assert [c.id for c in d.in_flight()] == [c.id for c, _, _ in cmds[:fits]]  # FIFO
        assert [c.id for c in d.queued()[0]] == [c.id for c, _, _ in cmds[fits:]]
        for cmd, _, gate in cmds:
            gate.set()
        assert rec.done.wait(WAIT)
    finally:
        d.close()


def test_lowering_a_running_stream_releases_the_low_work_it_held():
    """Low-stream work waits while High-stream work runs; once the only High stream running is
    lowered (nothing queued moves), the held work starts at once, not at the next event. Found
    by the threaded scheduler model: the dispatcher was not woken, and the Low work waited."""
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=None, yield_to_high=True)
    d.attach()
    try:
        rec = Recorder(expected=2)
        high, high_started, high_gate = gated(rec, "high", H, H, owner="b")
        d.submit(high)
        assert high_started.wait(WAIT)
        low, low_started, low_gate = gated(rec, "low", L, H, owner="a")
        before = d.stats().passes  # a dispatcher pass is whole under the board's lock
        d.submit(low)  # a place is free, but Low-stream work yields to the High stream running
        # ... and the dispatcher has decided so in a pass after the submit: it now waits
        assert d.wait_until(lambda s: s.queued == (0, 0, 1, 0) and s.running == 1 and s.passes > before, WAIT)
        assert d.reprioritize("b", Priority.LOW) == 0  # nothing queued moved: only a running command
        assert low_started.wait(WAIT)
        low_gate.set()
        high_gate.set()
        assert rec.done.wait(WAIT)
    finally:
        d.close()
    assert rec.outcomes["low"][0] is Outcome.DONE and rec.outcomes["high"][0] is Outcome.DONE


def test_reprioritize_moves_queued_work_and_keeps_running_work():
    d = Downloader(max_concurrent=1, demand_throttle=0, stall_window=None)
    d.attach()
    try:
        rec = Recorder(expected=8)
        block, started, release = blocker(rec)
        d.submit(block)
        assert started.wait(WAIT)
        a = [rec.command(f"a{i}", L, r) for i, r in enumerate([H, L, H])]
        b = [rec.command(f"b{i}", H, r) for i, r in enumerate([H, L])]
        for c in a:
            c.owner = "A"
        for c in b:
            c.owner = "B"
        for c in (a[0], b[0], a[1], b[1], a[2]):
            d.submit(c)
        assert [[c.label for c in s] for s in d.queued()] == [["b0"], ["b1"], ["a0", "a2"], ["a1"]]
        assert d.reprioritize("A", "high") == 3
        assert d.reprioritize("B", Priority.LOW) == 2
        assert [[c.label for c in s] for s in d.queued()] == [["a0", "a2"], ["a1"], ["b0"], ["b1"]]
        assert d.reprioritize("A", H) == 0  # nothing to move
        assert d.reprioritize("nobody", L) == 0
        block.owner = "X"
        assert d.reprioritize("X", L) == 0 and block.stream_priority is L  # running: not preempted
        assert d.running_count() == 1
        # the owner's next submissions use the new priority; they queue behind the moved ones
        late = rec.command("a3", H, H)
        late.owner = "A"
        d.submit(late)
        extra = rec.command("b2", L, H)
        d.submit(extra)
        release.set()
        assert rec.done.wait(WAIT)
        assert rec.ran == ["blocker", "a0", "a2", "a3", "a1", "b0", "b2", "b1"]
        assert set(rec.completions.values()) == {1}
        with pytest.raises(ValueError):
            d.reprioritize(None, H)
    finally:
        d.close()


def test_cancel_owner_cancels_queued_and_running_exactly_once():
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=None)
    d.attach()
    log = EventLog()
    d.subscribe(log)
    try:
        rec = Recorder(expected=6)
        run1, s1, _ = gated(rec, "mine-running", owner="me")
        other, s2, other_gate = gated(rec, "other-running", owner="you")
        d.submit(run1)
        d.submit(other)
        assert s1.wait(WAIT) and s2.wait(WAIT)
        queued_mine = [rec.command(f"mine{i}", H, L) for i in range(3)]
        for c in queued_mine:
            c.owner = "me"
            d.submit(c)
        theirs = rec.command("theirs", L, L)
        theirs.owner = "you"
        d.submit(theirs)
        assert d.cancel_owner("me") == 4
        assert d.cancel_owner("me") == 0  # nothing left (the running one is already told)
        other_gate.set()
        assert rec.done.wait(WAIT)
        for label in ["mine-running", "mine0", "mine1", "mine2"]:
            assert rec.outcomes[label] == (Outcome.CANCELLED, None)
            assert label not in rec.ran or label == "mine-running"
        assert rec.outcomes["other-running"][0] is Outcome.DONE
        assert rec.outcomes["theirs"][0] is Outcome.DONE
        assert set(rec.completions.values()) == {1}
        cancelled = log.of(RequestCancelled)
        assert sorted(e.request_id for e in cancelled) == sorted([run1.id] + [c.id for c in queued_mine])
        assert {e.reason for e in cancelled} == {"owner"}
        s = d.stats()
        assert (s.cancelled, s.completed, s.running, s.queued_total) == (4, 2, 0, 0)
    finally:
        d.close()


def test_cancel_before_submit_completes_once_and_submit_ignores_it(downloader):
    rec = Recorder(expected=1)
    c = rec.command("early")
    downloader.cancel(c)
    downloader.submit(c)  # ignored: it has completed already
    assert rec.done.wait(WAIT)
    assert rec.outcomes["early"] == (Outcome.CANCELLED, None) and rec.ran == []
    done = rec.command("twice")
    downloader.submit(done)
    with pytest.raises(ValueError, match="submitted already"):
        downloader.submit(done)


def test_submit_without_attach_raises():
    d = Downloader()
    with pytest.raises(RuntimeError, match="attach"):
        d.submit(FetchCommand(lambda c: None, lambda c, o, e: None))
    d.close()


def test_exactly_one_completion_under_cancel_races():
    """Submitters, cancellers, owner-cancellers and priority flippers race the dispatcher."""
    d = Downloader(max_concurrent=3, demand_throttle=0.001, stall_window=None)
    d.attach()
    n, owners = 400, ["o0", "o1", "o2", "o3"]
    lock = threading.Lock()
    completions: Counter = Counter()
    outcomes = {}
    all_done = threading.Event()
    concurrency = [0, 0]
    cmds: List[FetchCommand] = []
    rng = random.Random(4)

    def body(cmd):
        with lock:
            concurrency[0] += 1
            concurrency[1] = max(concurrency[1], concurrency[0])
        try:
            if cmd.id % 3 == 0:  # a third block until cancelled
                assert cmd.cancelled.wait(WAIT)
        finally:
            with lock:
                concurrency[0] -= 1

    def complete(cmd, outcome, error):
        with lock:
            completions[cmd.id] += 1
            outcomes[cmd.id] = (outcome, error)
            if sum(completions.values()) >= n:
                all_done.set()

    for i in range(n):
        cmds.append(
            FetchCommand(
                body,
                complete,
                stream_priority=rng.choice([H, L]),
                request_priority=rng.choice([H, L]),
                owner=owners[i % 4],
                label=f"c{i}",
            )
        )
    start = threading.Barrier(6, timeout=WAIT)
    errors: list = []

    def guard(fn):
        def wrapped():
            try:
                start.wait()
                fn()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        return wrapped

    def submitter():
        for c in cmds:
            d.submit(c)

    def canceller(seed):
        r = random.Random(seed)
        for c in r.sample(cmds, n // 2):
            d.cancel(c)

    def owner_canceller():
        for o in owners[:2]:
            d.cancel_owner(o)

    def flipper():
        r = random.Random(7)
        for _ in range(200):
            d.reprioritize(r.choice(owners), r.choice([H, L]))

    threads = [threading.Thread(target=guard(f)) for f in (submitter, owner_canceller, flipper)]
    threads += [threading.Thread(target=guard(lambda s=s: canceller(s))) for s in (1, 2)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert not errors, errors
    for c in cmds:  # final sweep: the blocked third must end
        if c.id % 3 == 0:
            d.cancel(c)
    try:
        assert all_done.wait(WAIT), f"{sum(completions.values())} of {n} completed"
        assert d.wait_idle(WAIT)
        assert sorted(completions) == sorted(c.id for c in cmds)
        assert set(completions.values()) == {1}
        for c in cmds:
            outcome, error = outcomes[c.id]
            assert error is None and outcome in (Outcome.DONE, Outcome.CANCELLED)
            if c.id % 3 == 0:
                assert outcome is Outcome.CANCELLED
        s = d.stats()
        # a command cancelled before its submit completes at once and is never counted
        assert s.submitted <= n and s.submitted == s.completed + s.cancelled and s.failed == 0
        assert s.running == 0 and s.queued_total == 0 and d.running_count() == 0
        assert concurrency[1] <= 3 and s.peak_running <= 3
    finally:
        d.close()
    assert not fetch_threads()


def test_stats_count_every_outcome_and_peak(downloader):
    rec = Recorder(expected=3)
    boom = RuntimeError("boom")

    def fail(cmd):
        raise boom

    block, started, release = blocker(rec)
    downloader.submit(block)
    assert started.wait(WAIT)
    victim = rec.command("victim")
    downloader.submit(rec.command("bad", body=fail))
    downloader.submit(victim)
    s = downloader.stats()
    assert s.submitted == 3 and s.running == 1 and s.queued == (2, 0, 0, 0)
    downloader.cancel(victim)
    release.set()
    assert rec.done.wait(WAIT)
    assert downloader.wait_idle(WAIT)
    s = downloader.stats()
    assert (s.submitted, s.started, s.completed, s.failed, s.cancelled) == (3, 2, 1, 1, 1)
    assert s.peak_running == 1 and s.stalls == 0 and s.idle


# -- the hang watchdog ---------------------------------------------------------------------


def test_watchdog_reports_a_fetch_that_blocks_without_progress():
    """Real clock, tiny window: the report must arrive (bounded wait)."""
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=0.05)
    d.attach()
    log = EventLog()
    d.subscribe(log, DownloaderStalled)
    try:
        rec = Recorder(expected=3)
        hung, started, gate = gated(rec, "hung")
        d.submit(hung)
        assert started.wait(WAIT)
        d.submit(rec.command("quick", L, L))  # throttle off and a place free: runs at once
        d.submit(hung2 := gated(rec, "hung2")[0])
        # reports repeat every window while the stall lasts: wait for one showing both hung
        def both_hung(e) -> bool:
            return {f.request_id for f in e.in_flight} == {hung.id, hung2.id}

        assert log.wait_for(lambda events: any(both_hung(e) for e in events))
        event = [e for e in log.of(DownloaderStalled) if both_hung(e)][0]
        assert event.stalled_for >= 0.05
        assert all(f.bytes == 0 and f.idle_for >= 0 for f in event.in_flight)
        assert len(event.slots) == 4
        assert "hung" in event.describe()
        assert d.stats().stalls >= 1
        gate.set()
        d.cancel(hung2)
        assert rec.done.wait(WAIT)
    finally:
        d.close()


def test_watchdog_stall_vs_progress_with_a_fake_clock():
    clock = FakeClock()
    d = Downloader(max_concurrent=1, demand_throttle=0, stall_window=0.1, clock=clock)
    d.attach()
    log = EventLog()
    d.subscribe(log, DownloaderStalled)
    try:
        rec = Recorder(expected=1)
        steps = 3
        progressed = threading.Event()

        def body(cmd):
            for _ in range(steps):
                passes = d.stats().passes
                d.note_progress(100, cmd)
                clock.advance(0.09)  # less than a window between two passes, with bytes between
                assert d.wait_until(lambda s: s.passes > passes, WAIT)
            progressed.set()
            assert release.wait(WAIT)

        release = threading.Event()
        cmd = rec.command("alive", body=body)
        d.submit(cmd)
        assert progressed.wait(WAIT)
        assert log.of(DownloaderStalled) == []  # progress kept it advancing
        assert cmd.bytes_received == 300 and d.stats().bytes == 300
        # now the fetch hangs: a window without bytes is a stall
        clock.advance(0.1)
        assert log.wait_for(lambda events: len(events) == 1)
        event = log.of(DownloaderStalled)[0]
        assert event.stalled_for >= 0.1
        assert [(f.request_id, f.bytes) for f in event.in_flight] == [(cmd.id, 300)]
        assert d.stats().stalls == 1
        release.set()
        assert rec.done.wait(WAIT)
    finally:
        d.close()


def test_idle_downloader_never_reports_a_stall_and_does_not_wake():
    clock = FakeClock()
    d = Downloader(max_concurrent=2, demand_throttle=0.01, stall_window=0.01, clock=clock)
    d.attach()
    try:
        rec = Recorder(expected=4)
        for i in range(4):
            d.submit(rec.command(f"quick{i}"))
        assert rec.done.wait(WAIT)
        # nothing pending and the dispatcher parked in its untimed wait
        assert d.wait_until(lambda s: s.idle and s.dispatcher_idle, WAIT)
        log = EventLog()
        d.subscribe(log, DownloaderStalled)
        passes = d.stats().passes
        clock.advance(1e6)  # an eternity of idleness
        # idle: the dispatcher waits without a timeout, so no pass runs at all
        assert not d.wait_until(lambda s: s.passes != passes, 0.3)
        assert log.events == []
        # work arriving after the idle stretch is not a stall, even while it is throttled
        d.submit(low := rec.command("late-low", L, L))
        assert d.wait_until(lambda s: s.throttling, WAIT)
        assert log.events == []
        clock.advance(0.01)
        assert d.wait_until(lambda s: s.completed == 5, WAIT)
        assert low.label in rec.ran
        assert log.events == [] and d.stats().stalls == 0
    finally:
        d.close()


def test_no_thread_left_after_the_last_detach_with_events_and_watchdog():
    d = Downloader(max_concurrent=2, demand_throttle=0.001, stall_window=0.01)
    log = EventLog()
    d.subscribe(log)
    for _ in range(3):
        d.attach()
        rec = Recorder(expected=3)
        for label, s in (("a", H), ("b", L), ("c", L)):
            d.submit(rec.command(label, s))
        assert rec.done.wait(WAIT)
        d.detach()
        assert not fetch_threads()
    d.close()
    assert len(log.of(RequestEnqueued)) == len(log.of(RequestStarted)) == 9


def test_failing_subscriber_never_breaks_the_downloader(downloader, caplog):
    calls = Counter()

    def broken(event):
        calls[type(event).__name__] += 1
        raise RuntimeError("subscriber bug")

    downloader.subscribe(broken)
    log = EventLog()
    downloader.subscribe(log)
    rec = Recorder(expected=3)
    block, started, release = blocker(rec)
    downloader.submit(block)
    assert started.wait(WAIT)
    victim = rec.command("victim")
    downloader.submit(victim)
    downloader.submit(rec.command("ok"))
    downloader.cancel(victim)
    release.set()
    assert rec.done.wait(WAIT)
    assert rec.outcomes["ok"][0] is Outcome.DONE and rec.outcomes["victim"][0] is Outcome.CANCELLED
    assert calls["RequestEnqueued"] == 3 and calls["RequestStarted"] == 2 and calls["RequestCancelled"] == 1
    assert len(log.of(RequestEnqueued)) == 3  # later subscribers still get every event
    assert "subscriber bug" in caplog.text


# -- inline runs: try_run_inline ---------------------------------------------------------


class InlineRecorder(Recorder):
    """A Recorder that also notes the thread each command ran and completed on."""

    def command(self, label, stream=Priority.HIGH, request=Priority.HIGH, body=None) -> FetchCommand:
        def traced(cmd):
            with self.lock:
                self.threads[label] = threading.current_thread()
            if body is not None:
                body(cmd)

        cmd = super().command(label, stream, request, body=traced)
        complete = cmd.on_complete

        def on_complete(cmd, outcome, error):
            with self.lock:
                self.completed_on[label] = threading.current_thread()
            complete(cmd, outcome, error)

        cmd.on_complete = on_complete
        return cmd

    def __init__(self, expected: int) -> None:
        super().__init__(expected)
        self.threads: dict = {}
        self.completed_on: dict = {}


def test_inline_run_counts_toward_max_concurrent_and_full_falls_back_to_the_queue():
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=None)
    d.attach()
    log = EventLog()
    d.subscribe(log)
    try:
        rec = InlineRecorder(expected=4)
        pool1, pool1_started, pool1_gate = gated(rec, "pool1")
        d.submit(pool1)
        assert pool1_started.wait(WAIT)
        pool2, pool2_started, pool2_gate = gated(rec, "pool2")
        seen = {}

        def body(cmd):
            # on the caller's thread, while it runs: it holds the second place
            s = d.stats()
            seen["running"], seen["peak"] = s.running, s.peak_running
            seen["in_flight"] = [c.id for c in d.in_flight()]
            passes = s.passes
            d.submit(pool2)  # no place is free: it must stay queued
            assert d.wait_until(lambda s: s.passes > passes and s.queued == (1, 0, 0, 0), WAIT)
            seen["pool2_started"] = pool2_started.is_set()
            full = rec.command("full")
            seen["full_inline"] = d.try_run_inline(full)  # both places taken: queued, not run
            seen["queued"] = d.stats().queued

        inline = rec.command("inline", body=body)
        assert d.try_run_inline(inline) is True
        me = threading.current_thread()
        assert rec.threads["inline"] is me and rec.completed_on["inline"] is me
        assert rec.outcomes["inline"] == (Outcome.DONE, None) and rec.completions["inline"] == 1
        assert seen["running"] == 2 and seen["peak"] == 2
        assert seen["in_flight"] == [pool1.id, inline.id]
        assert seen["pool2_started"] is False
        assert seen["full_inline"] is False and seen["queued"] == (2, 0, 0, 0)
        # the inline completion freed a place: queued work starts without another trigger
        assert pool2_started.wait(WAIT)
        pool1_gate.set()
        pool2_gate.set()
        assert rec.done.wait(WAIT)
        assert rec.threads["full"].name.startswith("kithara-fetch")  # it ran on the pool
        s = d.stats()
        assert (s.submitted, s.started, s.completed, s.cancelled, s.failed) == (4, 4, 4, 0, 0)
        assert s.peak_running == 2 and d.peak_running == 2
        starts = started_ids(log)
        assert len(starts) == 4 and len(log.of(RequestEnqueued)) == 4
        order = [(type(e).__name__, e.request_id) for e in log.events if e.request_id == inline.id]
        assert order == [("RequestEnqueued", inline.id), ("RequestStarted", inline.id)]
        assert [e.wait_in_queue for e in log.of(RequestStarted) if e.request_id == inline.id] == [0.0]
    finally:
        d.close()


def test_inline_run_never_bypasses_queued_work_it_would_wait_behind():
    clock = FakeClock()
    d = Downloader(max_concurrent=3, demand_throttle=60.0, stall_window=None, yield_to_high=False, clock=clock)
    d.attach()
    try:
        rec = InlineRecorder(expected=4)
        d.submit(rec.command("low-queued", L, H))
        # a place is free, the Low work waits out the pause (the clock never moves)
        assert d.wait_until(lambda s: s.throttling and s.queued == (0, 0, 1, 0), WAIT)
        # Low work of the same slot or below queues behind it, also in a lower slot
        assert d.try_run_inline(rec.command("low-same-slot", L, H)) is False
        assert d.try_run_inline(rec.command("low-lower-slot", L, L)) is False
        assert d.stats().queued == (0, 0, 2, 1)
        # urgent work would be dispatched first anyway: it runs here, on this thread
        assert d.try_run_inline(rec.command("urgent", H, L)) is True
        assert rec.threads["urgent"] is threading.current_thread()
        assert rec.ran == ["urgent"] and d.stats().queued == (0, 0, 2, 1)
        clock.advance(60.0)  # the pause ends: the queued Low work runs on the pool, in order
        assert rec.done.wait(WAIT)
        assert rec.ran == ["urgent", "low-queued", "low-same-slot", "low-lower-slot"]
        assert all(rec.threads[label].name.startswith("kithara-fetch") for label in rec.ran[1:])
    finally:
        d.close()


def test_inline_low_stream_work_yields_to_running_high_stream_work():
    d = Downloader(max_concurrent=3, demand_throttle=0, stall_window=None)
    d.attach()
    try:
        rec = InlineRecorder(expected=3)
        assert d.try_run_inline(rec.command("low-alone", L, H)) is True  # nothing to yield to
        high, high_started, high_gate = gated(rec, "high")
        d.submit(high)
        assert high_started.wait(WAIT)
        low = rec.command("low", L, H)
        assert d.try_run_inline(low) is False  # yield_to_high: it waits for the High work
        assert d.wait_until(lambda s: s.queued == (0, 0, 1, 0) and s.running == 1, WAIT)
        high_gate.set()
        assert rec.done.wait(WAIT)
        assert rec.threads["low"].name.startswith("kithara-fetch")
    finally:
        d.close()


def test_inline_urgent_run_preempts_running_low_stream_work():
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=None)
    d.attach()
    log = EventLog()
    d.subscribe(log, RequestCancelled)
    try:
        rec = InlineRecorder(expected=2)
        low, low_started, _ = gated(rec, "low", L, L)
        d.submit(low)
        assert low_started.wait(WAIT)
        assert d.try_run_inline(rec.command("urgent")) is True
        assert rec.done.wait(WAIT)
        assert rec.outcomes["low"] == (Outcome.CANCELLED, None)
        assert [e.reason for e in log.of(RequestCancelled)] == ["preempted"]
        assert d.stats().preempted == 1
    finally:
        d.close()


@pytest.mark.parametrize("how", ["cancel", "cancel_owner"])
def test_inline_run_exactly_one_completion_under_a_cancel_race(how):
    """A canceller races the caller of try_run_inline: before it claims a place, while it
    runs, or in between. Whatever the interleaving, one completion, CANCELLED."""
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=None)
    d.attach()
    log = EventLog()
    d.subscribe(log)
    rounds = 150
    lock = threading.Lock()
    completions: Counter = Counter()
    outcomes = {}
    aborted: Counter = Counter()
    inline_runs = 0

    def body(cmd):
        assert cmd.cancelled.wait(WAIT)  # the canceller always comes

    def complete(cmd, outcome, error):
        with lock:
            completions[cmd.id] += 1
            outcomes[cmd.id] = (outcome, error)

    try:
        rng = random.Random(8)
        cmds = []
        for i in range(rounds):
            cmd = FetchCommand(body, complete, owner=f"o{i}", label=f"c{i}")
            cmd.abort = lambda cmd=cmd: aborted.update([cmd.id])
            cmds.append(cmd)
            go = threading.Barrier(2, timeout=WAIT)
            delay = rng.randrange(0, 200)  # spins, to spread the interleavings

            def canceller(cmd=cmd, delay=delay):
                go.wait()
                for _ in range(delay):
                    pass
                if how == "cancel":
                    d.cancel(cmd)
                else:
                    d.cancel_owner(cmd.owner)
                    if not cmd.cancelled.is_set():  # not yet submitted: cancel_owner saw nothing
                        d.cancel(cmd)

            t = threading.Thread(target=canceller)
            t.start()
            go.wait()
            if d.try_run_inline(cmd):
                inline_runs += 1
            t.join(WAIT)
            assert not t.is_alive()
            assert completions[cmd.id] == 1, cmd
        assert d.wait_idle(WAIT)
        assert sorted(completions) == sorted(c.id for c in cmds) and set(completions.values()) == {1}
        assert all(outcome == (Outcome.CANCELLED, None) for outcome in outcomes.values())
        s = d.stats()
        assert s.running == 0 and s.queued_total == 0 and s.failed == 0 and s.completed == 0
        # commands cancelled before try_run_inline completed at once and were never counted
        assert s.submitted == s.started == s.cancelled == inline_runs
        assert len(log.of(RequestCancelled)) == inline_runs
        assert 0 < inline_runs  # the race did hit running commands
    finally:
        d.close()


def test_inline_run_cancelled_before_the_call_is_ignored():
    d = Downloader(max_concurrent=1, stall_window=None)
    d.attach()
    try:
        rec = InlineRecorder(expected=1)
        cmd = rec.command("early")
        d.cancel(cmd)
        assert rec.outcomes["early"] == (Outcome.CANCELLED, None)
        assert d.try_run_inline(cmd) is False
        assert rec.ran == [] and rec.completions["early"] == 1 and d.stats().submitted == 0
        done = rec.command("done")
        assert d.try_run_inline(done) is True
        with pytest.raises(ValueError, match="submitted already"):
            d.try_run_inline(done)
    finally:
        d.close()


def test_inline_run_failure_and_interrupt():
    d = Downloader(max_concurrent=1, stall_window=None)
    d.attach()
    try:
        rec = InlineRecorder(expected=2)
        boom = RuntimeError("boom")

        def fail(cmd):
            raise boom

        def interrupt(cmd):
            raise KeyboardInterrupt

        assert d.try_run_inline(rec.command("bad", body=fail)) is True
        assert rec.outcomes["bad"] == (Outcome.FAILED, boom)
        with pytest.raises(KeyboardInterrupt):
            d.try_run_inline(rec.command("ctrl-c", body=interrupt))
        assert rec.outcomes["ctrl-c"] == (Outcome.CANCELLED, None) and rec.completions["ctrl-c"] == 1
        s = d.stats()
        assert (s.failed, s.cancelled, s.running) == (1, 1, 0)
    finally:
        d.close()


def test_inline_run_without_attach_raises():
    d = Downloader()
    with pytest.raises(RuntimeError, match="attach"):
        d.try_run_inline(FetchCommand(lambda c: None, lambda c, o, e: None))
    d.close()


def test_watchdog_sees_an_inline_run_that_hangs():
    clock = FakeClock()
    d = Downloader(max_concurrent=2, demand_throttle=0, stall_window=0.1, clock=clock)
    d.attach()
    log = EventLog()
    d.subscribe(log, DownloaderStalled)
    try:
        assert d.wait_until(lambda s: s.dispatcher_idle, WAIT)
        rec = InlineRecorder(expected=1)

        def body(cmd):
            # the parked dispatcher was woken to watch this run
            assert d.wait_until(lambda s: s.passes > passes and not s.dispatcher_idle, WAIT)
            clock.advance(0.1)  # a window without bytes: a stall
            assert log.wait_for(lambda events: len(events) >= 1)

        passes = d.stats().passes
        hung = rec.command("hung", body=body)
        assert d.try_run_inline(hung) is True
        event = log.of(DownloaderStalled)[0]
        assert [f.request_id for f in event.in_flight] == [hung.id]
        assert d.stats().stalls == 1
    finally:
        d.close()


@pytest.mark.timeout(60)
def test_cancel_flag_wakes_its_waiters_whichever_comes_first():
    """A command's cancellation makes its Event only when someone waits: a waiter must
    still wake when set() comes before, during or after the wait begins."""
    flag = CancelFlag()
    assert not flag.is_set() and flag.wait(0.01) is False  # times out unset
    for _ in range(200):  # both orders of set() and the first wait() occur
        flag = CancelFlag()
        got: List[bool] = []
        waiters = [threading.Thread(target=lambda: got.append(flag.wait(10))) for _ in range(2)]
        for t in waiters:
            t.start()
        flag.set()
        for t in waiters:
            t.join(10)
        assert got == [True, True] and not any(t.is_alive() for t in waiters)
        assert flag.is_set() and flag.wait(0) is True
