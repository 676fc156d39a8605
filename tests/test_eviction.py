"""The eviction choice (``eviction_order``), against its definition over random layouts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_io.reading.eviction import eviction_order

BS = 16


def _distance(i: int, lo: int, hi: int) -> int:
    start, end = i * BS, (i + 1) * BS
    return lo - end if end <= lo else start - hi


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None)
@given(
    blocks=st.sets(st.integers(0, 40), max_size=30),
    window=st.tuples(st.integers(0, 700), st.integers(0, 200)).map(lambda t: (t[0], t[0] + t[1])),
    claims=st.lists(st.tuples(st.integers(0, 700), st.integers(1, 100)).map(lambda t: (t[0], t[0] + t[1])), max_size=4),
)
def test_offers_every_block_outside_window_and_claims_farthest_first(blocks, window, claims):
    lo, hi = window
    order = eviction_order(blocks, BS, window, claims)
    touches = [
        i
        for i in blocks
        if (lo < (i + 1) * BS and i * BS < hi) or any(s < (i + 1) * BS and i * BS < e for s, e in claims)
    ]
    assert sorted(order) == sorted(set(blocks) - set(touches))  # nothing a reader or a fetch needs
    distances = [_distance(i, lo, hi) for i in order]
    assert distances == sorted(distances, reverse=True)  # the farthest go first
    assert all(d >= 0 for d in distances)


@pytest.mark.timeout(30)
def test_the_far_side_goes_first_and_the_window_and_a_claim_stay():
    # blocks 0..9, the reader's window is block 2, a fetch writes into block 6
    order = eviction_order(range(10), BS, (2 * BS, 3 * BS), [(6 * BS + 3, 6 * BS + 9)])
    assert order == [9, 8, 7, 5, 0, 4, 1, 3]
