"""RangeSet against a model: a plain Python set of byte positions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_io.reading.ranges import RangeSet

SPACE = 64
interval = st.tuples(st.integers(0, SPACE), st.integers(0, SPACE))
ops = st.lists(st.tuples(st.sampled_from(["add", "remove"]), interval), max_size=30)


def apply(ops_list):
    ranges, model = RangeSet(), set()
    for op, (a, b) in ops_list:
        getattr(ranges, op)(a, b)
        if op == "add":
            model |= set(range(a, b))
        else:
            model -= set(range(a, b))
    return ranges, model


@settings(max_examples=300, deadline=None)
@given(ops)
def test_matches_set_model(ops_list):
    ranges, model = apply(ops_list)
    covered = {p for s, e in ranges for p in range(s, e)}
    assert covered == model
    assert ranges.total == len(model)
    intervals = list(ranges)
    for (s1, e1), (s2, e2) in zip(intervals, intervals[1:]):
        assert s1 < e1 < s2 < e2, "intervals must be sorted, disjoint and non-adjacent"


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, SPACE), st.integers(0, SPACE))
def test_queries_match_model(ops_list, a, b):
    ranges, model = apply(ops_list)
    until = a
    while until in model:
        until += 1
    assert ranges.covered_until(a) == until
    assert ranges.contains(a, b) == all(p in model for p in range(a, b))
    gap_bytes = {p for s, e in ranges.gaps(a, b) for p in range(s, e)}
    assert gap_bytes == {p for p in range(a, b) if p not in model}
    starts = [s for s, _ in ranges if s > a]
    assert ranges.next_start(a) == (starts[0] if starts else None)
    found = ranges.interval_at(a)
    if a in model:
        assert found is not None and found[0] <= a < found[1]
    else:
        assert found is None


def test_copy_is_independent():
    ranges = RangeSet([(0, 10)])
    clone = ranges.copy()
    clone.add(20, 30)
    assert list(ranges) == [(0, 10)] and list(clone) == [(0, 10), (20, 30)]


def test_touching_intervals_merge():
    ranges = RangeSet([(0, 5), (10, 15)])
    ranges.add(5, 10)
    assert list(ranges) == [(0, 15)]
