"""The pure decisions of the engine, exhaustively and without threads."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_io.reading.planning import (
    FetchPlan,
    Priority,
    fetch_length,
    first_missing,
    is_urgent,
    keep_running,
    run_before,
    next_fetch,
    slot_index,
    tail_fetch,
)
from kithara_io.reading.ranges import RangeSet

KB = 1024


def test_slot_order_is_stream_then_request_priority():
    order = sorted(itertools.product(Priority, Priority), key=lambda p: slot_index(*p))
    assert order == [
        (Priority.HIGH, Priority.HIGH),
        (Priority.HIGH, Priority.LOW),
        (Priority.LOW, Priority.HIGH),
        (Priority.LOW, Priority.LOW),
    ]
    assert [slot_index(*p) for p in order] == [0, 1, 2, 3]
    assert [is_urgent(s) for s in range(4)] == [True, True, False, False]


@pytest.mark.parametrize("value", ["high", "HIGH", "High", Priority.HIGH])
def test_priority_parse(value):
    assert Priority.parse(value) is Priority.HIGH


def test_priority_parse_rejects_nonsense():
    with pytest.raises(ValueError, match="high' or 'low"):
        Priority.parse("urgent")


def plan(present=(), claimed=(), **kw):
    args = dict(cursor=0, size=1000 * KB, read_ahead=256 * KB, read_behind=64 * KB, min_fetch=16 * KB, max_fetch=128 * KB)
    args.update(kw)
    return next_fetch(RangeSet(list(present)), RangeSet(list(claimed)), **args)


def test_first_fetch_at_cursor_is_small_and_high():
    assert plan(cursor=500 * KB) == FetchPlan(500 * KB, 516 * KB, Priority.HIGH)


def test_skips_present_and_claimed_bytes():
    got = plan(present=[(0, 10 * KB)], claimed=[(10 * KB, 20 * KB)])
    assert got.start == 20 * KB and got.priority is Priority.HIGH


def test_stops_at_next_present_range():
    got = plan(present=[(0, 100 * KB), (110 * KB, 200 * KB)], cursor=50 * KB)
    assert (got.start, got.end) == (100 * KB, 110 * KB)


def test_sequential_reader_grows_fetch_size():
    assert plan(present=[(0, 64 * KB)]).length == 64 * KB
    assert plan(present=[(0, 100 * KB)], read_ahead=1000 * KB).length == 100 * KB
    assert plan(present=[(0, 400 * KB)], read_ahead=1000 * KB).length == 128 * KB  # max_fetch


def test_nothing_ahead_fills_behind_with_low_priority():
    got = plan(present=[(100 * KB, 1000 * KB)], cursor=120 * KB, read_behind=64 * KB)
    assert got == FetchPlan(56 * KB, 100 * KB, Priority.LOW)


def test_read_ahead_window_bounds_fetching():
    assert plan(present=[(0, 300 * KB)], cursor=0, read_ahead=256 * KB, read_behind=0) is None


def test_complete_file_needs_nothing():
    assert plan(present=[(0, 1000 * KB)], cursor=999 * KB) is None


def test_cursor_past_end_is_clamped():
    assert plan(present=[(0, 1000 * KB)], cursor=5000 * KB) is None


def test_fetch_length_bounds():
    present, none = RangeSet([(0, 50)]), RangeSet()
    assert fetch_length(present, none, 50, 10, 100) == 50
    assert fetch_length(present, none, 50, 60, 100) == 60
    assert fetch_length(present, none, 50, 10, 20) == 20
    assert fetch_length(present, none, 70, 10, 100) == 10  # no run before a gap start


def test_fetch_length_counts_bytes_being_fetched():
    """Pipelined sequential fetches grow although the previous one has not arrived yet."""
    present, claimed = RangeSet([(0, 64)]), RangeSet([(64, 192), (300, 310)])
    assert run_before(present, claimed, 192) == 192
    assert fetch_length(present, claimed, 192, 16, 1000) == 192
    assert run_before(present, claimed, 310) == 10
    assert run_before(present, claimed, 0) == 0


def test_pipelined_plans_double():
    present, claimed, sizes = RangeSet(), RangeSet([(0, 64 * KB)]), []
    for _ in range(5):
        got = next_fetch(present, claimed, cursor=0, size=100_000 * KB, read_ahead=100_000 * KB,
                         read_behind=0, min_fetch=64 * KB, max_fetch=1024 * KB)
        claimed.add(got.start, got.end)
        sizes.append(got.length // KB)
    assert sizes == [64, 128, 256, 512, 1024]


def test_first_missing_hops_present_and_claimed():
    assert first_missing(RangeSet([(0, 5), (10, 15)]), RangeSet([(5, 10)]), 0) == 15


def test_tail_fetch():
    assert tail_fetch(RangeSet(), RangeSet(), size=1000, tail=64) == FetchPlan(936, 1000, Priority.HIGH)
    assert tail_fetch(RangeSet([(950, 1000)]), RangeSet(), size=1000, tail=64) == FetchPlan(936, 950, Priority.HIGH)
    assert tail_fetch(RangeSet([(0, 1000)]), RangeSet(), size=1000, tail=64) is None
    assert tail_fetch(RangeSet(), RangeSet(), size=10, tail=64) == FetchPlan(0, 10, Priority.HIGH)


@pytest.mark.parametrize(
    "pos, end, target, soon, keep",
    [
        (0, 100, 50, 60, True),  # reaches the target soon
        (0, 100, 50, 10, False),  # far from the target, lots left
        (0, 100, 200, 10, False),  # does not cover the target
        (90, 100, 500, 10, True),  # nearly done anyway
        (0, 100, 0, 0, True),  # exactly at the target
        (0, 100, 100, 1000, True),  # not covering, but finishes within "soon"
    ],
)
def test_keep_running(pos, end, target, soon, keep):
    assert keep_running(pos, end, target, soon) is keep


intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(intervals, intervals, st.integers(0, 260), st.integers(1, 300), st.integers(0, 300), st.integers(1, 50))
def test_never_plans_present_or_claimed_bytes(present, claimed, cursor, read_ahead, read_behind, min_fetch):
    size = 240
    p = RangeSet([(s, min(size, s + n)) for s, n in present])
    c = RangeSet([(s, min(size, s + n)) for s, n in claimed])
    got = next_fetch(p, c, cursor=cursor, size=size, read_ahead=read_ahead, read_behind=read_behind,
                     min_fetch=min_fetch, max_fetch=max(min_fetch, 64))
    if got is None:
        # nothing missing in the windows
        ahead = range(min(cursor, size), min(size, min(cursor, size) + read_ahead))
        behind = range(max(0, min(cursor, size) - read_behind), min(cursor, size))
        for b in list(ahead) + list(behind):
            assert p.contains(b, b + 1) or c.contains(b, b + 1)
        return
    assert 0 <= got.start < got.end <= size
    for b in range(got.start, got.end):
        assert not p.contains(b, b + 1) and not c.contains(b, b + 1)
    if got.priority is Priority.HIGH:
        assert got.start >= min(cursor, size)
        # the first gap at or after the cursor
        assert all(p.contains(b, b + 1) or c.contains(b, b + 1) for b in range(min(cursor, size), got.start))
    else:
        assert got.end <= cursor


def test_a_continuing_run_asks_for_at_least_the_amortizing_length():
    present, none = RangeSet([(0, 50)]), RangeSet()
    assert fetch_length(present, none, 50, 10, 1000, amortize=400) == 400
    assert fetch_length(present, none, 50, 10, 300, amortize=400) == 300  # still capped
    assert fetch_length(present, none, 70, 10, 1000, amortize=400) == 10  # a fresh seek: small


def test_a_fetch_a_reader_waits_for_covers_its_read():
    """A reader blocked on bytes up to ``need_end`` gets them in one request: growing from
    the run before (64 bytes here) would only add round trips to its wait."""
    present, none = RangeSet([(0, 64)]), RangeSet()
    assert fetch_length(present, none, 64, 16, 10_000) == 64  # alone: the run before
    assert fetch_length(present, none, 64, 16, 10_000, need_end=1000) == 936
    assert fetch_length(present, none, 64, 16, 500, need_end=1000) == 500  # still capped
    assert fetch_length(present, none, 64, 16, 10_000, amortize=2000, need_end=1000) == 2000  # the larger
    assert fetch_length(present, none, 64, 16, 10_000, need_end=10) == 64  # behind the start: no say
    got = next_fetch(present, none, cursor=0, size=10_000, read_ahead=10_000, read_behind=0, min_fetch=16,
                     max_fetch=10_000, need_end=1000)
    assert (got.start, got.end) == (64, 1000)


def test_a_read_that_starts_in_cached_bytes_asks_for_the_rest_of_its_min_fetch():
    """``min_fetch`` counts from where the reader reads, not from the gap: a 64 KiB random
    read whose first 30 KiB an earlier read brought asks for its last 34 KiB, not for
    64 KiB more (which reached past the read, and was handed to the pool). A reader that
    jumped does not grow its fetch from bytes others brought before the gap."""
    kib = 1024

    def span(present, need_end=0, grow=True, min_fetch=64 * kib, max_fetch=1024 * kib):
        got = plan(present=present, cursor=100 * kib, min_fetch=min_fetch, max_fetch=max_fetch, need_end=need_end,
                   grow=grow)
        return got.start // kib, got.end // kib

    assert span([(100 * kib, 130 * kib)], 164 * kib, grow=False) == (130, 164)
    assert span([(100 * kib, 104 * kib)], 108 * kib, grow=False) == (104, 164)  # a decoder's 8 KiB: the rest of 64
    assert span([(0, 130 * kib)], 164 * kib) == (130, 260)  # a reader reading on: the run before
    assert span([(0, 130 * kib)], 164 * kib, grow=False) == (130, 164)  # one that jumped: no growth
    assert span([(0, 130 * kib)]) == (130, 260)  # read-ahead (no reader waits): as before
    long_read = span([(100 * kib, 104 * kib)], 900 * kib, grow=False, min_fetch=16 * kib, max_fetch=32 * kib)
    assert long_read == (104, 136)  # max_fetch still bounds a long read


def test_the_slack_a_reader_runs_itself_counts_what_whole_requests_delivered():
    """A 64 KiB body that comes with its headers counts as 1 ms of transfer (65 MB/s); the
    whole request's bytes over its time (0.2 ms: 328 MB/s) say the link did better, and
    the reader runs a fetch reaching 60 KB past its read itself instead of waiting ~1 ms for
    a pool thread. Behind a far first byte the transfer's rate is the larger."""
    from kithara_io.reading.planning import LinkEstimate

    loopback = LinkEstimate()
    loopback.record(ttfb=0.000_15, nbytes=65_536, duration=0.000_2)
    assert loopback.bandwidth == pytest.approx(65_536 / 0.001)
    assert loopback.run_here_slack() == int(65_536 / 0.000_2 * 0.0005)
    far = LinkEstimate()
    far.record(ttfb=0.010, nbytes=65_536, duration=0.012)
    assert far.run_here_slack() == int(65_536 / 0.002 * 0.0005)


def test_amortizing_length_follows_the_measured_link():
    from kithara_io.reading.planning import LinkEstimate

    link = LinkEstimate()
    assert link.amortizing_bytes() == 0  # a guess is not a measurement
    link.record(ttfb=0.001, nbytes=10_000_000, duration=0.011)  # 1 GB/s, 1 ms to first byte
    assert link.measured and link.bandwidth == pytest.approx(1e9)
    assert link.amortizing_bytes() == pytest.approx(20e6)  # 20 first-byte times of transfer
    slow = LinkEstimate()
    slow.record(ttfb=0.2, nbytes=100_000, duration=0.6)  # 250 kB/s behind a 200 ms first byte
    assert slow.amortizing_bytes() == pytest.approx(250e3 * 0.05)  # at most 50 ms of transfer


def test_the_bandwidth_is_the_transfers_after_the_first_byte():
    """A small body behind a long first byte: its transfer time, not the first byte's wait,
    says how fast the link is (a 64 KiB answer 10 ms away is not a 6.5 MB/s link); a body
    that came with its headers says only that the link is at least 64 MB/s (64 KiB in 1 ms)."""
    from kithara_io.reading.planning import LinkEstimate

    far = LinkEstimate()
    far.record(ttfb=0.010, nbytes=65_536, duration=0.012)  # 2 ms of transfer after the first byte
    assert far.bandwidth == pytest.approx(65_536 / 0.002)
    at_once = LinkEstimate()
    at_once.record(ttfb=0.010, nbytes=65_536, duration=0.010_01)
    assert at_once.bandwidth == pytest.approx(65_536 / 0.001)


def test_read_ahead_goes_in_order_only_on_a_measured_link_one_body_fills():
    """``in_order``: a body gets the link to itself (the next read-ahead request waits for
    its last first-byte time of transfer) once the link is measured, below the rate where
    the client's CPU, not the link, bounds a body, and only if it is longer than that."""
    from kithara_io.reading.planning import LinkEstimate

    link = LinkEstimate()
    assert not link.in_order(8 << 20, 64 << 10)  # not measured yet: parallel as before
    link.record(ttfb=0.01, nbytes=10_000_000, duration=0.11)  # 100 MB/s, 10 ms to first byte
    assert link.soon_bytes(64 << 10) == 1_000_000
    assert link.in_order(8 << 20, 64 << 10)
    assert not link.in_order(1_000_000, 64 << 10)  # all of it arrives within a first-byte time
    fast = LinkEstimate()
    fast.record(ttfb=0.0003, nbytes=100_000_000, duration=0.0503)  # 2 GB/s: loopback
    assert not fast.in_order(8 << 20, 64 << 10)
