"""Issue #4 end to end: real streams on one Downloader, over the in-process ranged server.

These need the stream-side hooks (``Stream.priority``, ``Stream.subscribe``, reading/remote.py
publishing its events and calling ``Downloader.note_progress``); they skip until those are
wired. Everything is synchronised through events and bounded waits, never sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Dict, List

import pytest

import kithara_io
from kithara_io.engine.downloader import Downloader
from kithara_io.events import (
    DownloaderStalled,
    Event,
    FirstByte,
    Progress,
    ReaderResumed,
    ReaderWaiting,
    RequestCompleted,
    RequestEnqueued,
    RequestStarted,
    Seek,
)
from kithara_io.reading.planning import Priority

MiB = 1024 * 1024
WAIT = 20.0

HOOKS = hasattr(kithara_io.Stream, "priority") and hasattr(kithara_io.Stream, "subscribe")
pytestmark = pytest.mark.skipif(not HOOKS, reason="Stream.priority / Stream.subscribe not wired yet (issue #4)")


class Log:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: List[Event] = []

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def of(self, kind) -> list:
        with self.cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, predicate, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.events), timeout)


def a_request_seen_whole(events: List[Event]) -> bool:
    """Some request's RequestEnqueued and RequestCompleted were both seen."""
    enqueued = {e.request_id for e in events if isinstance(e, RequestEnqueued)}
    return any(isinstance(e, RequestCompleted) and e.request_id in enqueued for e in events)


def fetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("kithara-fetch")]


def test_changing_stream_priority_moves_its_queued_fetches(make_ranged_server, no_leaks):
    slow = make_ranged_server(bandwidth=400_000)  # one shared slow link: fetches queue up
    d = Downloader(max_concurrent=1, stall_window=None)
    try:
        a = kithara_io.open(slow.url("random.bin"), downloader=d, priority="low")
        b = kithara_io.open(slow.url("tone.wav"), downloader=d, priority="high")
        try:
            assert a.priority is Priority.LOW and b.priority is Priority.HIGH
            a.priority = "high"
            b.priority = Priority.LOW
            assert a.priority is Priority.HIGH and b.priority is Priority.LOW
            for index, slot in enumerate(d.queued()):
                for cmd in slot:
                    if cmd.url == a.name:
                        assert index < 2, (index, cmd)
                    elif cmd.url == b.name:
                        assert index >= 2, (index, cmd)
            for cmd in d.in_flight():  # running ones are not preempted, only relabelled
                expected = Priority.HIGH if cmd.url == a.name else Priority.LOW
                assert cmd.stream_priority is expected
        finally:
            a.close()
            b.close()
        s = d.stats()
        assert s.running == 0 and s.queued_total == 0
    finally:
        d.close()
    assert not fetch_threads()


def test_stream_events_tell_the_story_of_a_seek(ranged_server, media, no_leaks):
    expected = media["random.bin"].read_bytes()
    log = Log()
    # a small read-ahead: nothing near 4 MiB is fetched before the seek, so the read waits
    with kithara_io.open(ranged_server.url("random.bin"), read_ahead=64 * 1024) as f:
        unsubscribe = f.subscribe(log)
        f.seek(4 * MiB)
        assert f.read(300_000) == expected[4 * MiB : 4 * MiB + 300_000]
        # the fetch that served the read was submitted after subscribe(): wait for its end
        assert log.wait_for(a_request_seen_whole)
        unsubscribe()
    assert any(e.to_pos == 4 * MiB for e in log.of(Seek))
    waits, resumes = log.of(ReaderWaiting), log.of(ReaderResumed)
    assert waits and resumes and waits[0].position == resumes[0].position == 4 * MiB
    assert resumes[0].waited >= 0
    per_request: Dict[int, List[Event]] = defaultdict(list)
    for e in log.events:
        if hasattr(e, "request_id"):
            per_request[e.request_id].append(e)
    # requests submitted after subscribe(), and finished (earlier ones were seen mid-way)
    completed = [
        rid
        for rid, evs in per_request.items()
        if isinstance(evs[0], RequestEnqueued) and isinstance(evs[-1], RequestCompleted)
    ]
    assert completed
    for rid in completed:
        kinds = [type(e) for e in per_request[rid]]
        assert kinds[0] is RequestEnqueued and kinds[1] is RequestStarted and FirstByte in kinds
        assert kinds.index(FirstByte) < kinds.index(Progress) if Progress in kinds else True
        done = per_request[rid][-1]
        progress = sum(e.bytes for e in per_request[rid] if isinstance(e, Progress))
        assert progress == done.bytes and done.duration >= 0
        assert all(e.url == ranged_server.url("random.bin") for e in per_request[rid] if hasattr(e, "url"))


def test_fetches_report_progress_so_a_slow_download_is_no_stall(make_ranged_server, media, no_leaks):
    slow = make_ranged_server(bandwidth=1_000_000)  # 2 MiB take about 2 s, bytes all along
    d = Downloader(max_concurrent=2, stall_window=1.0)
    stalls = Log()
    d.subscribe(stalls, DownloaderStalled)
    try:
        with kithara_io.open(slow.url("random.bin"), downloader=d) as f:
            assert f.read(2 * MiB) == media["random.bin"].read_bytes()[: 2 * MiB]
        assert d.stats().bytes >= 2 * MiB  # note_progress is wired
        assert stalls.events == [] and d.stats().stalls == 0
    finally:
        d.close()


def test_local_files_accept_priority_and_subscribers(media, no_leaks):
    with kithara_io.open(media["small.bin"]) as f:
        f.priority = "low"
        unsubscribe = f.subscribe(lambda e: None)
        assert f.read() == media["small.bin"].read_bytes()
        unsubscribe()


def test_a_high_stream_keeps_its_pace_while_four_low_streams_preload(make_ranged_server, media, no_leaks):
    """Issue #4: on one slow shared link, four preloading Low streams cost the High stream at
    most 1.3x in time to first byte and in throughput, and still complete afterwards."""
    link = make_ranged_server(bandwidth=4_000_000, latency=0.05, chunk_size=8 * 1024)
    url = link.url("random.bin")
    expected = media["random.bin"].read_bytes()
    high_bytes, low_bytes, piece = 2 * MiB, 1536 * 1024, 128 * 1024

    def high_run(d: Downloader):
        began = time.perf_counter()
        with kithara_io.open(url, downloader=d, priority="high") as f:
            head = f.read(piece)
            first_byte = time.perf_counter() - began
            rest = f.read(high_bytes - piece)
            duration = time.perf_counter() - began - first_byte
        assert head + rest == expected[:high_bytes]
        return first_byte, len(rest) / duration

    alone = Downloader(stall_window=None)
    try:
        ttfb_alone, rate_alone = high_run(alone)
    finally:
        alone.close()

    shared = Downloader(stall_window=None)
    preloading = threading.Barrier(5, timeout=WAIT)
    results: Dict[int, bytes] = {}

    def preload(index: int) -> None:
        with kithara_io.open(url, downloader=shared, priority="low") as f:
            chunks = [f.read(piece)]
            preloading.wait()  # every Low stream is under way before the High one starts
            while sum(map(len, chunks)) < low_bytes:
                chunks.append(f.read(piece))
            results[index] = b"".join(chunks)

    threads = [threading.Thread(target=preload, args=(i,), name=f"preload-{i}") for i in range(4)]
    try:
        for t in threads:
            t.start()
        preloading.wait()
        ttfb_loaded, rate_loaded = high_run(shared)
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
        preempted = shared.stats().preempted
    finally:
        shared.close()
    assert all(results[i] == expected[:low_bytes] for i in range(4))
    report = (
        f"TTFB {ttfb_alone * 1e3:.0f} -> {ttfb_loaded * 1e3:.0f} ms, "
        f"throughput {rate_alone / 1e6:.2f} -> {rate_loaded / 1e6:.2f} MB/s, {preempted} preempted"
    )
    print(report)
    assert preempted > 0, report  # the Low streams were running when the High one came
    assert ttfb_loaded <= 1.3 * ttfb_alone, report
    assert rate_loaded >= rate_alone / 1.3, report


def test_a_low_stream_preempted_while_opening_still_opens(make_ranged_server, media, no_leaks):
    slow = make_ranged_server(latency=0.3)  # the Low stream's first requests are still waiting
    d = Downloader(stall_window=None, demand_throttle=0)
    opened: Dict[str, bytes] = {}

    def open_low() -> None:
        with kithara_io.open(slow.url("random.bin"), downloader=d, priority="low") as f:
            opened["low"] = f.read(MiB)

    low = threading.Thread(target=open_low)
    try:
        low.start()
        assert d.wait_until(lambda s: s.running == 2, WAIT)  # its head and tail requests are out
        with kithara_io.open(slow.url("tone.wav"), downloader=d) as high:
            assert high.read(1000) == media["tone.wav"].read_bytes()[:1000]
        low.join(WAIT)
        assert not low.is_alive()
        assert d.stats().preempted >= 1
    finally:
        d.close()
    assert opened["low"] == media["random.bin"].read_bytes()[:MiB]
