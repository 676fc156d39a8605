"""What the engine asks the server for: no waste on random reads, growing sequential
fetches, head + tail at open, never a byte twice."""

from __future__ import annotations

import random
import threading

import kithara_io
from kithara_io.engine.downloader import Downloader
from kithara_io.events import FirstByte, Progress, RequestEnqueued, RequestStarted
from kithara_io.reading.planning import AccessPattern
from tests.servers.faults import Truncate

KiB, MiB = 1024, 1024 * 1024


def ranges_of(server, name, size):
    """The byte ranges the server was asked for, suffix ranges (``bytes=-N``) resolved."""
    out = []
    for rec in server.requests:
        if rec.path.endswith(name) and rec.range:
            first, last = rec.range.split("=")[1].split("-")
            out.append((max(0, size - int(last)), size) if first == "" else (int(first), int(last) + 1))
    return out


def test_access_pattern_windows():
    p = AccessPattern()
    p.record(0, 4096, read_behind=MiB)
    assert p.read_ahead(16 * MiB, 64 * KiB) == 64 * KiB  # nothing sequential seen yet
    for pos in range(4096, 1 * MiB, 4096):
        p.record(pos, pos + 4096, read_behind=MiB)
    assert p.read_ahead(16 * MiB, 64 * KiB) == 2 * MiB  # doubles the sequential run
    assert p.read_ahead(1 * MiB, 64 * KiB) == 1 * MiB  # up to the limit
    p.record(MiB - 8192, MiB, read_behind=MiB)  # FLAC re-reads 8 KiB
    assert p.went_back and p.run >= MiB - 4096  # a small step back keeps the run
    p.record(100 * MiB, 100 * MiB + 10, read_behind=MiB)
    assert (p.run, p.went_back) == (0, False)  # a jump starts over
    p.record(100 * MiB - 2 * MiB, 100 * MiB, read_behind=4 * MiB)
    assert not p.went_back  # a long jump back is a random access, not a decoder re-reading
    p.record(200 * MiB, 200 * MiB + 10, read_behind=MiB)
    assert p.read_ahead(16 * MiB, 64 * KiB) == 64 * KiB
    p.record(200 * MiB, 200 * MiB + 200 * KiB, read_behind=MiB)
    assert p.read_ahead(16 * MiB, 64 * KiB) == 2 * (200 * KiB - 10)


def test_random_reads_fetch_only_what_is_read(make_ranged_server, media):
    server = make_ranged_server()
    rng = random.Random(7)
    data = media["random.bin"].read_bytes()
    with kithara_io.open(server.url("random.bin")) as f:
        positions = sorted({rng.randrange(0, len(data) - 64 * KiB) // (256 * KiB) * 256 * KiB for _ in range(20)})
        rng.shuffle(positions)
        for pos in positions:
            f.seek(pos)
            assert f.read(16 * KiB) == data[pos : pos + 16 * KiB]
        stats = f.stats()
    fetched = ranges_of(server, "random.bin", len(data))
    assert len(fetched) <= len(positions) + 2, (positions, fetched)  # + head and tail at open
    assert stats.cancels <= 2
    assert sum(e - s for s, e in fetched) <= (len(positions) + 2) * 64 * KiB, str(fetched)


def test_a_jump_next_to_cached_bytes_fetches_only_what_is_read(make_ranged_server, media):
    """A random read that starts where cached bytes end is no sequential run: on a measured
    (fast) link it still gets ``min_fetch``, not the large requests of a reader reading on."""
    server = make_ranged_server()
    data = media["random.bin"].read_bytes()
    with kithara_io.open(server.url("random.bin"), tail=64 * KiB) as f:
        for pos in (512 * KiB, 128 * KiB, 64 * KiB, 576 * KiB):  # the last two start where cached bytes end
            f.seek(pos)
            assert f.read(16 * KiB) == data[pos : pos + 16 * KiB]
    fetched = ranges_of(server, "random.bin", len(data))
    assert sum(e - s for s, e in fetched) <= 6 * 64 * KiB, sorted(fetched)  # head, tail and 4 x min_fetch


def test_sequential_read_grows_fetches_and_never_refetches(make_ranged_server, media):
    server = make_ranged_server()
    data = media["random.bin"].read_bytes()
    with kithara_io.open(server.url("random.bin"), max_fetch=2 * MiB) as f:
        assert f.read() == data
        stats = f.stats()
    fetched = ranges_of(server, "random.bin", len(data))
    assert len(fetched) <= 12, fetched  # 64K, 128K, ... 2M, 2M, 2M: not 128 x 64 KiB
    covered = sorted(fetched)
    for (s1, e1), (s2, e2) in zip(covered, covered[1:]):
        assert e1 <= s2, f"bytes fetched twice: {(s1, e1)} and {(s2, e2)}"
    assert stats.bytes_fetched == len(data)


def _events_on_a_16_mb_link(make_ranged_server, media, types, read) -> list:
    """``read(f, data, listen)`` over a 16 MB/s link (8 MiB in ~0.5 s, first bytes in ~1 ms)
    with requests of up to 2 MiB; the stream's events of ``types`` from when it calls
    ``listen()`` to when every fetch is over (each body that had the link to itself let it go)."""
    server = make_ranged_server(bandwidth=16_000_000)
    data = media["random.bin"].read_bytes()
    log, lock = [], threading.Lock()

    def record(event):
        with lock:
            log.append(event)

    downloader = Downloader()
    try:
        with kithara_io.open(server.url("random.bin"), max_fetch=2 * MiB, tail=0, downloader=downloader) as f:
            read(f, data, lambda: f.events.subscribe(record, *types))
            assert downloader.wait_idle(10)
            assert f._reader._streaming == 0
    finally:
        downloader.close()
    with lock:
        return list(log)


def test_read_ahead_requests_follow_each_other_on_a_measured_link(make_ranged_server, media, no_leaks):
    """Once the link is measured, a sequential reader's next read-ahead request goes out when
    the body before it has about one first-byte time of transfer left (at least min_fetch):
    the two bodies never share the link for long while the reader waits for the first, so
    bytes arrive in the order they are read (issue #24: decode while reading on a link)."""

    def read_in_order(f, data, listen) -> None:
        listen()
        assert f.read(64 * KiB) == data[: 64 * KiB]
        got = bytearray(data[: 64 * KiB])
        for _ in range(len(data) // (64 * KiB)):  # bounded: a decoder's reads, in order
            piece = f.read(64 * KiB)
            if not piece:
                break
            got += piece
        assert bytes(got) == data

    events = _events_on_a_16_mb_link(make_ranged_server, media, (RequestEnqueued, Progress), read_in_order)
    ranges, received, left_at_next = {}, {}, []
    for event in events:
        if isinstance(event, Progress):
            received[event.request_id] = event.total
        elif event.range is not None:
            before = [r for r, (s, e) in ranges.items() if e == event.range[0]]
            if before and event.range[1] - event.range[0] > 128 * KiB:
                # A read-ahead request (a reader waiting at the end of a body may still get
                # a small one for its own bytes at once), and the one whose body ends where
                # this one starts.
                s, e = ranges[before[0]]
                left_at_next.append(e - s - received.get(before[0], 0))
            ranges[event.request_id] = event.range
    assert len(left_at_next) >= 3, ranges  # 8 MiB in requests of up to 2 MiB
    # The first requests go while the link is not measured yet (or measured from one burst);
    # then each waits for ~16 MB/s x the first-byte time (~110 KiB here). Without the rule,
    # the next request went at once, 1-2 MiB before the one it follows ended.
    assert max(left_at_next[-3:]) <= 256 * KiB, left_at_next


def test_read_ahead_follows_a_body_its_reader_runs_in_order_too(make_ranged_server, media, no_leaks):
    """A read that misses runs its own fetch on the reader's thread; on a measured link the
    read-ahead planned beyond it waits until that body nears its end, as behind a pool
    thread's, instead of going out at once and halving the bandwidth the reader waits on.
    Seen in the events: the read-ahead request is enqueued after the reader's request has
    its first byte (before, it was enqueued as the reader's request got its place)."""

    def jump_and_read_on(f, data, listen) -> None:
        assert f.read(MiB) == data[:MiB]  # the link is measured
        f.seek(4 * MiB)  # a jump: the read runs its own fetch, and so does the next one
        assert f.read(MiB) == data[4 * MiB : 5 * MiB]
        listen()
        assert f.read(2 * MiB) == data[5 * MiB : 7 * MiB]

    events = _events_on_a_16_mb_link(make_ranged_server, media, (RequestEnqueued, FirstByte), jump_and_read_on)
    ranges = {e.request_id: e.range for e in events if isinstance(e, RequestEnqueued)}
    own = next(i for i, r in ranges.items() if r is not None and r[0] == 5 * MiB)
    ahead = next(i for i, r in ranges.items() if r is not None and r[0] == ranges[own][1])
    order = [(type(e), e.request_id) for e in events]
    assert order.index((FirstByte, own)) < order.index((RequestEnqueued, ahead)), order


def test_a_body_is_received_in_pieces_no_longer_than_the_readers_lead(make_ranged_server, media, no_leaks):
    """A piece is committed whole, so a reader that catches up with one waits for all of it
    even for the few bytes it needs: a pool thread's pieces are no longer than the reader's
    lead over the body (at least ~1 ms of transfer, 16 KiB here). A reader reading at the
    link's edge gets small pieces; with nobody reading, pieces are ~50 ms of transfer
    (800 KB at 16 MB/s). On a 100 MB/s link this halved a decoder's waits (9.7 -> 4.7 ms)."""
    server = make_ranged_server(bandwidth=16_000_000)
    data = media["random.bin"].read_bytes()

    def pieces_while(read):
        pieces, lock = {}, threading.Lock()

        def record(event):
            with lock:
                pieces.setdefault(event.request_id, []).append(event.bytes)

        downloader = Downloader()
        try:
            options = dict(max_fetch=2 * MiB, tail=0, read_ahead=2 * MiB, downloader=downloader)
            with kithara_io.open(server.url("random.bin"), **options) as f:
                f.events.subscribe(record, Progress)
                read(f, downloader)
        finally:
            downloader.close()
        with lock:
            return [p for p in pieces.values() if len(p) > 1]

    def at_the_edge(f, downloader):  # a decoder's reads, as fast as the link brings them
        got = bytearray()
        for _ in range(len(data) // (64 * KiB) + 1):  # bounded
            piece = f.read(64 * KiB)
            if not piece:
                break
            got += piece
        assert got == data

    def idle(f, downloader):  # one read of 1 MiB, then none while read-ahead fills 2 MiB
        assert f.read(MiB) == data[:MiB]
        assert downloader.wait_idle(10)

    near = pieces_while(at_the_edge)
    # Most pieces: a reader descheduled on a busy machine falls behind, and its lead (so a
    # piece) may then be longer; without the limit every piece would be ~800 KB.
    sizes = sorted(x for p in near for x in p)
    assert sizes and sizes[len(sizes) * 19 // 20] <= 128 * KiB, sizes
    far = pieces_while(idle)
    assert far and max(max(p) for p in far) > 256 * KiB, far


def test_open_fetches_head_and_tail(make_ranged_server, media):
    server = make_ranged_server()
    with kithara_io.open(server.url("random.bin"), tail=64 * KiB) as f:
        size = f.size
        f.seek(size - 100)
        data = media["random.bin"].read_bytes()
        assert f.read() == data[-100:]
    fetched = ranges_of(server, "random.bin", len(data))
    assert sorted(fetched) == [(0, 64 * KiB), (size - 64 * KiB, size)], fetched  # sent together


def test_a_tail_request_cut_short_is_completed_when_it_ends(fault_server, no_leaks):
    """The suffix request sent at open breaks off after 8 KiB: the rest of the tail is
    fetched as soon as it ends, before any reader asks for it (the probe's claim is given
    back before the tail is planned again)."""
    data = bytes(range(256)) * (4 * MiB // 256)
    url = fault_server.add("/t.bin", data)
    fault_server.script("/t.bin", [Truncate(after_bytes=8 * KiB), Truncate(after_bytes=8 * KiB)])  # head and tail
    tail = (len(data) - 64 * KiB, len(data))
    rest_asked = threading.Event()  # a request for the rest of the tail (by offset)
    downloader = Downloader()
    downloader.events.subscribe(
        lambda e: e.range is not None and tail[0] < e.range[0] and rest_asked.set(), RequestEnqueued
    )
    try:
        with kithara_io.open(url, downloader=downloader, tail=64 * KiB, read_ahead=64 * KiB, max_fetch=64 * KiB) as f:
            assert f.read(4096) == data[:4096]
            assert rest_asked.wait(10), f.buffered()
            assert downloader.wait_idle(10)
            assert any(s <= tail[0] and tail[1] <= e for s, e in f.buffered()), f.buffered()
            f.seek(tail[0])
            assert f.read() == data[tail[0] :]
    finally:
        downloader.close()
    assert fault_server.pending("/t.bin") == 0


def test_slow_link_hands_over_bytes_before_the_fetch_ends(make_ranged_server, media):
    """On a slow link a reader gets its first bytes while the rest of the fetch still flows:
    socket reads are sized to the link, not to the fetch."""
    server = make_ranged_server(bandwidth=100_000, chunk_size=4096)  # 64 KiB take ~0.65 s
    data = media["random.bin"].read_bytes()
    with kithara_io.open(server.url("random.bin"), min_fetch=64 * KiB) as f:
        f.seek(MiB)
        assert f.read(4096) == data[MiB : MiB + 4096]
        covered = [(s, e) for s, e in f.buffered() if s <= MiB < e]
        assert covered and covered[0][1] < MiB + 64 * KiB, f.buffered()


def test_a_reader_runs_the_fetch_it_waits_for_itself(make_ranged_server, media):
    """The fetch of a random read that asks for exactly the read runs on the reading thread
    (no hand-off to the Downloader's threads); one that reaches far past the read goes to
    the pool, so that the reader wakes on its own bytes, not on the end of the fetch."""
    server = make_ranged_server()
    data = media["random.bin"].read_bytes()
    downloader = Downloader()

    def fetches_of_read(f, pos, n):
        assert downloader.wait_idle(10)  # what open() fetched is done
        ranges, threads = {}, {}
        f.subscribe(lambda e: ranges.__setitem__(e.request_id, e.range), RequestEnqueued)
        f.subscribe(lambda e: threads.__setitem__(e.request_id, threading.current_thread()), RequestStarted)
        f.seek(pos)
        assert f.read(n) == data[pos : pos + n]
        assert downloader.wait_idle(10)
        return [(ranges[i], threads[i]) for i in threads]

    try:
        with kithara_io.open(server.url("random.bin"), downloader=downloader) as f:
            started = fetches_of_read(f, 3 * MiB, 64 * KiB)
        assert started == [((3 * MiB, 3 * MiB + 64 * KiB), threading.current_thread())]
        # open() fetched the head, [64 KiB, 4 MiB + 64 KiB) ahead of it and the tail
        with kithara_io.open(server.url("random.bin"), downloader=downloader, min_fetch=4 * MiB) as f:
            started = fetches_of_read(f, 5 * MiB, 4 * KiB)
        assert [r for r, _ in started] == [(5 * MiB, len(data) - 64 * KiB)]
        assert started[0][1] is not threading.current_thread()
        assert started[0][1].name.startswith("kithara-fetch")
    finally:
        downloader.close()


def test_a_read_whose_gap_starts_inside_it_runs_its_fetch_itself(nginx_server, media, no_leaks):
    """A random read that starts in bytes an earlier read brought and ends in a gap runs the
    gap's fetch on its own thread: the fetch is the rest of its ``min_fetch`` from where it
    reads. (It was ``min_fetch`` from the gap's start, ~60 KB past the read, which on
    loopback, where every 64 KiB body counts as a 65 MB/s link, went to the pool: the reader
    waited ~1 ms for a pool thread.)"""
    data = media["random.bin"].read_bytes()
    downloader = Downloader()
    try:
        with kithara_io.open(nginx_server.url("random.bin"), downloader=downloader) as f:
            assert downloader.wait_idle(10)
            for pos in (3 * MiB, 5 * MiB, 7 * MiB):  # a random reader: nothing read ahead
                f.seek(pos)
                assert f.read(64 * KiB) == data[pos : pos + 64 * KiB]
            assert downloader.wait_idle(10)
            threads = {}
            f.subscribe(lambda e: threads.__setitem__(e.request_id, threading.current_thread()), RequestStarted)
            for pos in (3 * MiB + 4 * KiB, 5 * MiB + 4 * KiB, 7 * MiB + 4 * KiB):
                f.seek(pos)
                assert f.read(64 * KiB) == data[pos : pos + 64 * KiB]
            assert downloader.wait_idle(10)
        assert len(threads) == 3 and set(threads.values()) == {threading.current_thread()}, threads
    finally:
        downloader.close()
