"""Reads driven by the reader (issue #24): a reader waiting for bytes of a running fetch
takes its body over and receives on its own thread; the fetch stays the Downloader's (one
place, cancelled, preempted, completed once), and its events and stats stay whole."""

from __future__ import annotations

import array
import threading
import time
from collections import defaultdict
from typing import Dict, List

import pytest

import kithara_io
from kithara_io import Downloader
from kithara_io.errors import StreamClosedError
from kithara_io.events import (
    Event,
    Progress,
    RequestCancelled,
    RequestCompleted,
    RequestEnqueued,
    RequestFailed,
    RequestRetrying,
    RequestStarted,
    Seek,
)
from kithara_io.options import Retry, Timeout
from tests.interrupts import interrupt_a_read
from tests.servers.faults import Latency, Stall, Throttle, Truncate

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB


class Recorder:
    """Every event of a stream, with the thread it was published on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: List[Event] = []
        self.threads: Dict[int, set] = defaultdict(set)  # request id -> idents publishing Progress

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)
            if isinstance(event, Progress):
                self.threads[event.request_id].add(threading.get_ident())

    def of(self, kind) -> List[Event]:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]


def read_all(f, step: int, expected: bytes) -> bytes:
    got = bytearray()
    for _ in range(len(expected) // step + 2):
        piece = f.read(step)
        if not piece:
            break
        assert piece == expected[len(got) : len(got) + len(piece)], f"wrong bytes at {len(got)}"
        got += piece
    return bytes(got)


def check_request_events(rec: Recorder, bytes_fetched: int) -> None:
    """Each started request ends exactly once; the Progress of a completed one adds up to
    its RequestCompleted.bytes, and all Progress to the stream's bytes_fetched."""
    started = [e.request_id for e in rec.of(RequestStarted)]
    ends = [e.request_id for e in rec.of((RequestCompleted, RequestCancelled, RequestFailed))]
    assert sorted(started) == sorted(ends) and len(set(ends)) == len(ends)
    progress: Dict[int, int] = defaultdict(int)
    for e in rec.of(Progress):
        progress[e.request_id] += e.bytes
    for e in rec.of(RequestCompleted):
        assert progress[e.request_id] == e.bytes
    assert sum(progress.values()) == bytes_fetched


def test_a_reader_receives_what_it_waits_for_and_the_events_and_stats_add_up(make_ranged_server, media, no_leaks):
    """On a link slower than the reader, the reader catches up with the running fetch and
    takes it over: most bytes arrive on its own thread, counted as before."""
    link = make_ranged_server(bandwidth=40_000_000)
    expected = media["random.bin"].read_bytes()
    rec = Recorder()
    d = Downloader()
    d.subscribe(rec)  # every request of the stream, from the first (the stream's own bus starts at open's end)
    try:
        with kithara_io.open(link.url("random.bin"), downloader=d) as f:
            reader = threading.get_ident()
            assert read_all(f, 256 * KiB, expected) == expected
            stats = f.stats()
    finally:
        d.close()
    assert stats.takeovers >= 1 and 0 < stats.bytes_by_reader <= stats.bytes_fetched
    assert stats.bytes_fetched >= len(expected)
    assert any(reader in idents for idents in rec.threads.values())  # Progress from the reader's thread
    check_request_events(rec, stats.bytes_fetched)


def test_a_cut_while_the_reader_receives_is_resumed_exactly(fault_server, media, no_leaks):
    """The body breaks under the reader: the failure goes back to the fetch's pool thread,
    whose retry resumes at the cut; every byte is right, the retry is counted once."""
    data = media["random.bin"].read_bytes()[: 4 * MiB]
    url = fault_server.add("/f", data)
    fault_server.script("/f", [(Throttle(8_000_000), Truncate(after_bytes=3 * MiB))])
    rec = Recorder()
    options = dict(tail=0, first_fetch=1 << 30, retry=Retry(attempts=3, backoff=0.01, max_backoff=0.05))
    d = Downloader()
    d.subscribe(rec)
    try:
        with kithara_io.open(url, downloader=d, **options) as f:
            assert read_all(f, 64 * KiB, data) == data
            stats = f.stats()
    finally:
        d.close()
    assert stats.retries == 1 and len(rec.of(RequestRetrying)) == 1
    assert stats.takeovers >= 1 and stats.bytes_by_reader > 0
    assert stats.bytes_fetched == len(data)  # nothing lost or stored twice at the cut
    check_request_events(rec, stats.bytes_fetched)


def test_interrupt_wakes_a_reader_receiving_from_a_stalled_body(fault_server, media, no_leaks):
    """A reader that took a body over and sits in its socket read when the server stalls:
    ``interrupt()`` breaks that read (the fetch is cancelled), the read raises
    InterruptedError, and the stream reads on correctly."""
    data = media["random.bin"].read_bytes()[: 2 * MiB]
    url = fault_server.add("/f", data)
    fault_server.script("/f", [(Throttle(4_000_000), Stall(30, after_bytes=MiB + 256 * KiB))])
    options = dict(tail=0, first_fetch=1 << 30, timeout=Timeout(connect=5, read=30))
    rec = Recorder()
    with kithara_io.open(url, **options) as f:
        f.subscribe(rec)
        head = f.read(256 * KiB)
        assert head == data[: len(head)]
        # Interrupted once the server stalls (the reader, inside read(), is then the one
        # receiving, unless the machine held it off longer than the pool's grace).
        interrupt_a_read(f, lambda: f.read(2 * MiB), lambda: f.stats().bytes_fetched >= MiB, 2.0, wait=20)
        f.seek(len(head))
        assert read_all(f, 256 * KiB, data[len(head) :]) == data[len(head) :]


def test_close_while_a_reader_receives_joins_everything(make_ranged_server, media, no_leaks):
    link = make_ranged_server(bandwidth=2_000_000)
    expected = media["random.bin"].read_bytes()
    outcome: dict = {}
    f = kithara_io.open(link.url("random.bin"))
    f.read(64 * KiB)

    def read_rest() -> None:
        try:
            outcome["data"] = f.read(4 * MiB)
        except StreamClosedError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=read_rest)
    t.start()
    deadline = time.monotonic() + 20  # bounded: until the reader receives
    while f.stats().takeovers == 0 and t.is_alive() and time.monotonic() < deadline:
        t.join(0.01)
    f.close()
    t.join(10)
    assert not t.is_alive()
    assert "error" in outcome or outcome["data"] == expected[64 * KiB : 64 * KiB + 4 * MiB]


@pytest.mark.parametrize("streams", [1, 2])
def test_one_place_never_deadlocks_a_reader_on_its_own_read_ahead(make_ranged_server, media, streams, no_leaks):
    """With one place in the Downloader, a stream's read-ahead fetch holds it while the
    reader needs the next one (or another stream's reader does): the held fetch must go on
    receiving while those readers wait, or nothing moves."""
    link = make_ranged_server(bandwidth=50_000_000)
    expected = media["random.bin"].read_bytes()
    d = Downloader(max_concurrent=1)
    results: Dict[int, bytes] = {}
    try:

        def run(i: int) -> None:
            with kithara_io.open(link.url("random.bin"), downloader=d, max_fetch=1 * MiB) as f:
                results[i] = read_all(f, 1 * MiB, expected)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        assert not any(t.is_alive() for t in threads)
        assert all(results[i] == expected for i in range(streams))
    finally:
        d.close()


# -- the turns themselves (kithara_io.reading.turns), thread against thread ------------------------


def _in_thread(fn) -> tuple:
    result: dict = {}

    def run() -> None:
        result["value"] = fn()

    t = threading.Thread(target=run)
    t.start()
    return t, result


def test_a_pool_thread_waits_while_its_reader_reads_and_goes_on_when_it_blocks():
    """While a reader is in a read that may take the body (enter), the pool thread gets no
    turn; once that reader waits for a fetch it cannot take (block), it gets one at once,
    whatever the grace: the fetch that holds a place is never held up by its reader."""
    from kithara_io.reading.turns import Turns

    turns = Turns(grace=60.0)
    turn = turns.open(1, state=None)
    since = turns.enter()
    pool, result = _in_thread(lambda: turns.pool_turn(turn))
    pool.join(0.2)
    assert pool.is_alive()  # the reader is reading: the pool thread waits
    turns.block()
    pool.join(5)
    assert not pool.is_alive() and result["value"] is True
    turns.pool_done(turn)
    turns.unblock()
    assert turns.take(1, since) is not None  # the reader takes it back between pieces
    turns.leave()


def test_after_a_reader_leaves_the_pool_thread_waits_only_as_long_as_the_reader_stayed():
    """The grace after a read is at most as long as the reader was in it: a reader in a
    tight loop (in read() nearly all the time) keeps the bodies, one that reads a little
    between long stretches of other work (a decoder decoding) leaves the pool threads to
    read ahead meanwhile."""
    from kithara_io.reading.turns import Turns

    turns = Turns(grace=60.0)
    turn = turns.open(1, state=None)
    turns.enter()
    turns.leave()  # in read() for microseconds: no grace worth the name
    started = time.monotonic()
    assert turns.pool_turn(turn)
    assert time.monotonic() - started < 5
    turns.pool_done(turn)

    stay = threading.Event()
    turns.enter()
    stay.wait(0.3)  # in read() for 0.3 s (nothing sets it: a measured stay, not a race)
    turns.leave()
    started = time.monotonic()
    assert turns.pool_turn(turn)
    assert 0.2 <= time.monotonic() - started < 5  # about as long as it stayed, not 60 s
    turns.pool_done(turn, final=True)


def test_the_pool_thread_closes_a_body_only_after_the_reader_gave_it_back():
    """The pool thread must not close a body a reader is receiving from (it would read
    from a closed response): close() waits for give_back()."""
    from kithara_io.reading.turns import Turns

    turns = Turns(grace=0.0)
    turn = turns.open(7, state=None)
    since = turns.enter()
    assert turns.take(7, since) is turn
    closer, _ = _in_thread(lambda: turns.close(7, turn))
    closer.join(0.2)
    assert closer.is_alive()  # the reader still holds the body
    turns.give_back(turn)
    closer.join(5)
    assert not closer.is_alive()
    assert turns.take(7, since) is None  # closed: nobody takes it any more
    turns.leave()


def test_interrupt_makes_a_reader_waiting_for_a_body_give_up():
    from kithara_io.reading.turns import Turns

    turns = Turns(grace=0.0)
    turn = turns.open(3, state=None)
    assert turns.pool_turn(turn)  # the pool thread is receiving a piece
    since = turns.enter()
    reader, result = _in_thread(lambda: turns.take(3, since))
    reader.join(0.2)
    assert reader.is_alive()
    turns.interrupt()
    reader.join(5)
    assert not reader.is_alive() and result["value"] is None
    assert turns.take(3, since) is None  # an interrupt since enter(): no take-over in this read
    turns.pool_done(turn)
    turns.leave()


def test_interrupt_stops_a_read_that_runs_its_own_fetch(fault_server, media, no_leaks):
    """A read that runs its fetch itself (inline) on a slow link, often while a read-ahead
    body fills the link (then nothing else claims the read's bytes when its fetch ends):
    ``interrupt()`` cancels the read's fetch, and the read raises InterruptedError at once,
    instead of asking for the bytes again and receiving them itself for seconds (a ``get``
    stopped with Ctrl-C went on until its 1 MiB had arrived). Which fetch runs where depends
    on timing; ``tests/test_cache.py`` checks the rule itself."""
    data = media["random.bin"].read_bytes()[: 3 * MiB]
    url = fault_server.add("/f", data)
    fault_server.always("/f", Throttle(100_000))  # the read's 960 KiB would take ~10 s
    downloader = Downloader()
    try:
        with kithara_io.open(url, downloader=downloader) as f:  # read at once, as `get` does
            # Interrupted once the read's own fetch brought bytes.
            interrupt_a_read(f, lambda: f.readinto(bytearray(MiB)), lambda: f.stats().bytes_fetched >= 256 * KiB, 2.0)
            f.seek(0)
            assert f.read(64 * KiB) == data[: 64 * KiB]  # the stream stays usable
    finally:
        downloader.close()


def test_a_pending_interrupt_stops_the_next_read_before_it_runs_its_own_fetch(make_ranged_server, media, no_leaks):
    """``interrupt()`` with nobody waiting: the next read that has to wait raises, once. A
    read that would run its fetch itself counts as waiting: it raises instead of receiving
    the bytes (on a stalled server it could not be woken), and the read after it works."""
    link = make_ranged_server()
    expected = media["random.bin"].read_bytes()
    downloader = Downloader()
    try:
        # A read-ahead window of one request: the read's fetch is the only one, run inline.
        with kithara_io.open(link.url("random.bin"), tail=0, read_ahead=64 * KiB, downloader=downloader) as f:
            assert f.read(1000) == expected[:1000]
            assert downloader.wait_idle(10)
            f.interrupt()
            f.seek(4 * MiB)
            with pytest.raises(InterruptedError):
                f.read(64 * KiB)  # one request's worth: its fetch would run on this thread
            assert f.tell() == 4 * MiB
            assert f.read(64 * KiB) == expected[4 * MiB : 4 * MiB + 64 * KiB]
    finally:
        downloader.close()


def test_a_readers_own_fetch_starts_before_the_read_ahead_planned_with_it(make_ranged_server, media, no_leaks):
    """With one place (``max_concurrent=1``), a read that misses plans its own fetch and
    read-ahead beyond it in one pass: its own fetch takes the place first (run by the
    reader), the read-ahead waits in the queue. Submitted first, the read-ahead took the
    place and the reader's fetch waited behind it."""
    link = make_ranged_server()
    expected = media["random.bin"].read_bytes()
    downloader = Downloader(max_concurrent=1)
    ranges: Dict[int, tuple] = {}
    started: List[int] = []
    downloader.subscribe(lambda e: ranges.__setitem__(e.request_id, e.range), RequestEnqueued)
    downloader.subscribe(lambda e: started.append(e.request_id), RequestStarted)
    try:
        # max_fetch: on this fast link one measured request would cover the read and the
        # read-ahead window at once (nothing left to plan beside it).
        with kithara_io.open(link.url("random.bin"), tail=0, max_fetch=MiB, downloader=downloader) as f:
            assert downloader.wait_idle(10)
            before = len(started)
            assert f.read(MiB) == expected[:MiB]
            assert downloader.wait_idle(10)
    finally:
        downloader.close()
    after = [ranges[i] for i in started[before:]]
    # The read's (to 1 MiB, or a little past it once the link is measured), then read-ahead.
    assert len(after) >= 2 and after[0][0] == 64 * KiB and after[0][1] >= MiB, after
    assert all(r[0] >= after[0][1] for r in after[1:]), after


def test_a_read_that_waits_is_fetched_in_one_request(make_ranged_server, media, no_leaks):
    """``read(1 MiB)`` right after open, which holds the first 64 KiB: the rest of the read
    comes in one request (sized to the read), not in requests growing from 64 KiB, each a
    round trip the reader waits for. Read-ahead may go out beside it, beyond the read."""
    link = make_ranged_server()
    expected = media["random.bin"].read_bytes()
    downloader = Downloader()
    ranges: List[tuple] = []
    downloader.subscribe(lambda e: ranges.append(e.range), RequestEnqueued)
    try:
        with kithara_io.open(link.url("random.bin"), tail=0, downloader=downloader) as f:
            assert f.read(MiB) == expected[:MiB]
    finally:
        downloader.close()
    assert ranges[0] == (0, 64 * KiB), ranges  # open()'s
    covering = [r for r in ranges if r[0] == 64 * KiB]
    assert len(covering) == 1 and covering[0][1] >= MiB, ranges
    assert not [r for r in ranges if 64 * KiB < r[0] < MiB], ranges


def test_reads_of_a_whole_resource_take_the_short_way_and_still_count_and_tell(make_ranged_server, media, no_leaks):
    """Once every byte is held, reads (read, readinto, at any place) are served in one
    hold of the cache: the same bytes, counted as hits, a Seek event for a read that does
    not continue the last one, and no request."""
    link = make_ranged_server()
    expected = media["random.bin"].read_bytes()
    with kithara_io.open(link.url("random.bin")) as f:
        assert read_all(f, 256 * KiB, expected) == expected
        before = f.stats()
        seeks: List[Seek] = []
        f.events.subscribe(seeks.append, Seek)
        f.seek(1000)
        assert f.read(5000) == expected[1000:6000]
        buf = bytearray(7000)
        assert f.readinto(buf) == 7000 and bytes(buf) == expected[6000:13000]  # continues: no Seek
        f.seek(len(expected) - 10)
        assert f.read(100) == expected[-10:]
        after = f.stats()
    assert [(s.from_pos, s.to_pos, s.hit) for s in seeks] == [(len(expected), 1000, True), (13000, len(expected) - 10, True)]
    assert after.cache_hits - before.cache_hits == 3
    assert after.bytes_served - before.bytes_served == 5000 + 7000 + 10
    assert after.requests == before.requests


def test_short_reads_of_present_bytes_take_the_short_way_and_keep_read_ahead_going(make_ranged_server, media, no_leaks):
    """Before the resource is whole, a short read of present bytes (a decoder's) is served
    in one hold of the stream and one of the cache: the same bytes (into any buffer), a
    hit each, a Seek for a read that does not continue the last one; and as the cursor
    moves on, read-ahead still goes out ahead of it."""
    link = make_ranged_server()
    expected = media["random.bin"].read_bytes()
    downloader = Downloader()
    try:
        options = dict(read_ahead=512 * KiB, max_fetch=256 * KiB, tail=0, downloader=downloader)
        with kithara_io.open(link.url("random.bin"), **options) as f:
            assert f.read(64 * KiB) == expected[: 64 * KiB]
            assert downloader.wait_idle(10)
            held = next(e for s, e in f.buffered() if s == 0)
            assert 64 * KiB < held < len(expected), f.buffered()
            before = f.stats()
            seeks: List[Seek] = []
            f.events.subscribe(seeks.append, Seek)
            buf, pos, reads = bytearray(8192), 64 * KiB, 0
            while pos + len(buf) <= held:  # bounded: the held bytes, 8 KiB a time
                assert f.readinto(buf) == len(buf) and buf == expected[pos : pos + len(buf)], pos
                pos, reads = pos + len(buf), reads + 1
            f.seek(1000)
            samples = array.array("h", bytes(8192))  # not a byte buffer: cast, same bytes
            assert f.readinto(samples) == 8192 and samples.tobytes() == expected[1000:9192]
            after = f.stats()
            assert downloader.wait_idle(10)
            farther = next(e for s, e in f.buffered() if s == 0)
    finally:
        downloader.close()
    assert [(s.from_pos, s.to_pos, s.hit) for s in seeks] == [(pos, 1000, True)]
    assert after.cache_hits - before.cache_hits == reads + 1
    assert after.bytes_served - before.bytes_served == reads * 8192 + 8192
    assert farther > held  # the reads moved the window: read-ahead went on


def test_short_reads_at_the_end_and_into_empty_buffers_return_nothing(make_ranged_server, media, no_leaks):
    """The short ways (whole, and present bytes) at the very end of the resource, at a block
    boundary, and into an empty buffer: 0 bytes, no error (there is no block to look at)."""
    link = make_ranged_server()
    expected = media["random.bin"].read_bytes()  # 8 MiB: the end is a block boundary
    with kithara_io.open(link.url("random.bin"), read_ahead=MiB, max_fetch=MiB, tail=0) as f:
        assert f.read(64 * KiB) == expected[: 64 * KiB]  # partly held
        assert f.readinto(bytearray()) == 0 and f.tell() == 64 * KiB
        f.seek(MiB)  # a block boundary, maybe not held yet: the long way or the short one
        assert f.readinto(bytearray()) == 0
        f.seek(0)
        assert read_all(f, 256 * KiB, expected) == expected  # now whole
        for pos in (len(expected), len(expected) + 5, MiB):
            f.seek(pos)
            assert f.readinto(bytearray()) == 0
        f.seek(len(expected))
        before, seeks = f.stats(), []
        f.events.subscribe(seeks.append, Seek)
        assert f.readinto(bytearray(8192)) == 0 and f.read(10) == b""
        f.seek(100)
        assert f.readinto(bytearray()) == 0
        after = f.stats()
    assert seeks == [] and after.cache_hits == before.cache_hits  # nothing read: not a hit


def test_a_body_left_behind_by_a_jump_is_received_while_the_reader_reads_elsewhere(fault_server, no_leaks):
    """A read-ahead body that answers late, after its reader jumped and kept reading far
    away, back to back, each read running its own fetch: the body is received meanwhile
    (a reader receiving its own body takes no other). It waited for the reader to stay away
    from read(), which a tight loop never does, holding its Downloader place and its
    connection for as long as the reader read elsewhere."""
    data = bytes(range(251)) * (32 * MiB // 251)
    url = fault_server.add("/a.bin", data)
    # Request 1 is open()'s, 2 the read-ahead after the first reads (small, so the jump
    # leaves it running: nearly done anyway), which answers 0.1 s late.
    fault_server.script("/a.bin", [None, Latency(0.1)])
    started, ended = threading.Event(), threading.Event()  # the read-ahead's request
    ahead = (64 * KiB, 128 * KiB)
    ids = []
    outcome = []

    def watch(event) -> None:
        if isinstance(event, RequestEnqueued) and event.range == ahead:
            ids.append(event.request_id)
        elif event.request_id in ids:
            if isinstance(event, RequestStarted):
                started.set()
            else:
                outcome.append(type(event))
                ended.set()

    downloader = Downloader()
    try:
        options = dict(tail=0, first_fetch=64 * KiB, read_ahead=128 * KiB, max_fetch=64 * KiB, min_fetch=64 * KiB)
        with kithara_io.open(url, downloader=downloader, **options) as f:
            assert downloader.wait_idle(10)
            f.subscribe(watch, RequestEnqueued, RequestStarted, RequestCompleted, RequestCancelled, RequestFailed)
            for pos in (0, 16 * KiB):  # hits, the second continuing the first: read-ahead goes out
                assert f.read(16 * KiB) == data[pos : pos + 16 * KiB]
            assert started.wait(10)  # running (a queued one would be cancelled by the jump)
            pos = MiB
            for _ in range(380):  # each read a miss of ~1-5 ms: the late answer comes within them
                if ended.is_set():
                    break
                f.seek(pos)
                assert f.read(64 * KiB) == data[pos : pos + 64 * KiB]  # its own fetch, run here
                pos += 80 * KiB
            else:
                pytest.fail("the read-ahead body waited for the reader to stop reading elsewhere")
            assert outcome == [RequestCompleted]
            assert downloader.wait_idle(10)
    finally:
        downloader.close()
