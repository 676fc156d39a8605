"""The Downloader with real threads and scripted commands (no sockets, no sleeps)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import List, Optional

import pytest

from kithara_io.downloader import Downloader, FetchCommand, Outcome
from kithara_io.planning import Priority

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
