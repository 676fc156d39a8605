"""``Stream.read_ranges``: many ranges in one call, equal to slicing the file, nearby ones
merged into one request, far ones fetched at once, failures as a read's."""

from __future__ import annotations

import os
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kithara_io
from kithara_io.reading.range_reads import (
    batch_limits,
    batches,
    blocks_touched,
    coalesce,
    split,
)
from tests.servers.faults import StallForever, Status

MiB = 1 << 20
DATA = os.urandom(6 * MiB + 12345)
FAST = {
    "retry": kithara_io.Retry(attempts=1, backoff=0.01),
    "tail": 0,
    "first_fetch": 16,
    "read_ahead": 1,
    "read_behind": 0,
}


def _gets(server, path="/f.bin"):
    return [r for r in server.requests if r.method == "GET" and r.path == path]


# -- pure planning ----------------------------------------------------------------------------


def test_coalesce_merges_within_the_gap_and_drops_empty_ranges():
    assert coalesce([(10, 20), (0, 5), (5, 5), (25, 30), (100, 110)], max_gap=5) == [(0, 30), (100, 110)]
    assert coalesce([(0, 10), (2, 3)], max_gap=0) == [(0, 10)]
    assert coalesce([(0, 10), (11, 12)], max_gap=0) == [(0, 10), (11, 12)]


def test_split_and_batches_bound_the_blocks_of_a_batch():
    assert split([(0, 10)], 4) == [(0, 4), (4, 8), (8, 10)]
    assert split([(0, 9)], 3) == [(0, 3), (3, 6), (6, 9)]
    pieces = split([(0, 10 * MiB), (20 * MiB, 20 * MiB + 1)], 2 * MiB)
    groups = batches(pieces, max_blocks=4)
    assert [p for g in groups for p in g] == pieces
    assert all(sum(blocks_touched(p) for p in g) <= 4 for g in groups)
    assert batches(pieces, None) == [pieces]
    max_piece, max_blocks = batch_limits(kithara_io.StreamOptions())
    assert (max_piece, max_blocks) == (8 * MiB, 16)  # 64 MiB budget: 16 blocks a batch
    assert batch_limits(kithara_io.StreamOptions(cache_budget=None)) == (8 * MiB, None)


# -- against a server -------------------------------------------------------------------------


@pytest.mark.timeout(60)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-len(DATA) - 10, len(DATA) + 10)),
            st.one_of(st.none(), st.integers(-len(DATA) - 10, len(DATA) + 10)),
        ),
        max_size=30,
    ),
    st.sampled_from([0, 4096, MiB]),
)
def test_random_ranges_equal_slices(fault_server, ranges, max_gap):
    """Any ranges (overlapping, nested, from the end, past it, empty, unsorted), any gap:
    each result is the local slice; the cursor does not move."""
    url = fault_server.add("/f.bin", DATA)
    with kithara_io.open(url, cache_budget=4 * MiB, max_fetch=MiB, **FAST) as f:
        f.seek(123)
        assert f.read_ranges(ranges, max_gap=max_gap) == [DATA[s:e] for s, e in ranges]
        assert f.tell() == 123
        assert f.read(10) == DATA[123:133]


def test_nearby_ranges_are_one_request_far_ones_one_each(fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)
    near = [(i * 40_000 + 5 * MiB // 2, i * 40_000 + 5 * MiB // 2 + 500) for i in range(50)]  # gaps < 1 MiB
    far = [(100, 200), (6 * MiB, 6 * MiB + 10)]  # more than 1 MiB from the others
    ranges = near[::-1] + far
    with kithara_io.open(url, **FAST) as f:
        fault_server.wait_idle()
        fault_server.reset_log()
        assert f.read_ranges(ranges) == [DATA[s:e] for s, e in ranges]
        gets = sorted(r.range for r in _gets(fault_server))
        assert gets == ["bytes=100-199", f"bytes={near[0][0]}-{near[-1][1] - 1}", f"bytes={6 * MiB}-{6 * MiB + 9}"]
        fault_server.reset_log()
        assert f.read_ranges(ranges) == [DATA[s:e] for s, e in ranges]  # held: no request
        assert _gets(fault_server) == []
        assert f.stats().bytes_served >= 2 * sum(e - s for s, e in ranges)
    fault_server.reset_log()
    with kithara_io.open(url, **FAST) as f:
        fault_server.wait_idle()
        fault_server.reset_log()
        assert f.read_ranges(near, max_gap=0) == [DATA[s:e] for s, e in near]
        assert len(_gets(fault_server)) == len(near)  # max_gap=0: no byte nobody asked for


def test_far_ranges_are_in_flight_at_once(fault_server, no_leaks):
    """Both far ranges' requests reach the server while neither has answered: the second
    is not sent after the first (which never answers)."""
    url = fault_server.add("/f.bin", DATA)
    f = kithara_io.open(url, **FAST)
    fault_server.wait_idle()
    fault_server.reset_log()
    fault_server.script("/f.bin", [StallForever(), StallForever()])
    failure = []

    def read() -> None:
        try:
            f.read_ranges([(0, 1000), (4 * MiB, 4 * MiB + 1000)])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert fault_server.wait_requests(2, "/f.bin", timeout=10)
        gets = _gets(fault_server)
        assert sorted(r.range for r in gets) == ["bytes=16-999", f"bytes={4 * MiB}-{4 * MiB + 999}"]
        assert not any(r.done for r in gets)
    finally:
        f.close()  # wakes the waiting read_ranges
        reader.join(10)
    assert not reader.is_alive()
    assert isinstance(failure[0], kithara_io.StreamClosedError)


def test_a_failing_server_raises_a_stream_error_naming_the_url(fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)
    f = kithara_io.open(url, **FAST)
    fault_server.wait_idle()
    fault_server.always("/f.bin", Status(500))
    with pytest.raises(kithara_io.StreamError, match="500") as caught:
        f.read_ranges([(10, 20), (3 * MiB, 3 * MiB + 5)])
    assert url in str(caught.value)
    with pytest.raises(kithara_io.StreamError):
        f.close()


def test_bad_ranges_and_other_streams(tmp_path, fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)
    with kithara_io.open(url, **FAST) as f:
        with pytest.raises(TypeError, match="pair"):
            f.read_ranges([(1, 2, 3)])
        with pytest.raises(TypeError, match="pair"):
            f.read_ranges([("1", 2)])
        with pytest.raises(ValueError, match="max_gap"):
            f.read_ranges([(1, 2)], max_gap=-1)
        assert f.read_ranges([]) == []
        n = len(DATA)
        past = [(n + 5, n + 10), (n - 3, n + 100), (n, None), (-n - 100, 3)]
        assert f.read_ranges(past) == [DATA[s:e] for s, e in past] == [b"", DATA[-3:], b"", DATA[:3]]
    path = tmp_path / "local.bin"
    path.write_bytes(DATA[:5000])
    with kithara_io.open(str(path)) as f:  # a local file: plain positional reads
        assert f.read_ranges([(4990, 6000), (-3, None), (0, 2)]) == [DATA[4990:5000], DATA[4997:5000], DATA[:2]]


def test_ranges_larger_than_the_budget_are_read_in_batches_within_it(fault_server, no_leaks):
    """Ranges over the cache budget: equal bytes, the cache never holds more than the budget,
    and each byte is fetched once (no eviction of bytes a range still waits for)."""
    url = fault_server.add("/f.bin", DATA)
    held = []
    with kithara_io.open(url, cache_budget=4 * MiB, max_fetch=MiB, **FAST) as f:
        fault_server.wait_idle()
        fault_server.reset_log()
        f.subscribe(lambda e: held.append(f.stats().bytes_cached))
        ranges = [(0, len(DATA)), (100, 200), (5 * MiB, 5 * MiB + 1)]
        assert f.read_ranges(ranges) == [DATA[s:e] for s, e in ranges]
    assert 0 < max(held) <= 4 * MiB
    # The read cursor's bytes (0-15, from open) are evicted too, and its read-ahead fetches
    # them again (the engine's, not read_ranges'): every other byte comes once.
    ours = [r for r in _gets(fault_server) if r.range != "bytes=0-65535"]
    assert sum(r.bytes_sent for r in ours) == len(DATA) - 16


def test_cat_ranges_reads_the_blocks_of_a_url_through_one_stream(fault_server, no_leaks):
    """fsspec's cat_ranges: the blocks of one URL are read by one stream's read_ranges, so
    10 far ranges cost one first request and one request each (a stream per block: a first
    request of 16 bytes per block besides)."""
    from kithara_io.fs import KitharaFileSystem

    url = fault_server.add("/f.bin", DATA)
    starts = [100 + i * 600_000 + i * 7 for i in range(10)]
    ends = [s + 1000 + i for i, s in enumerate(starts)]
    fs = KitharaFileSystem(skip_instance_cache=True, retry=kithara_io.Retry(attempts=1))
    assert fs.cat_ranges([url] * 10, starts, ends) == [DATA[s:e] for s, e in zip(starts, ends)]
    gets = _gets(fault_server)
    wanted = ["bytes=0-15"] + [f"bytes={s}-{e - 1}" for s, e in zip(starts, ends)]
    assert sorted(r.range for r in gets) == sorted(wanted)


@pytest.mark.timeout(60)
def test_read_ranges_beside_a_reader_in_another_thread(fault_server, no_leaks):
    """A thread reads the file sequentially (its far seeks cancel fetches: epoch cancel)
    while another asks for ranges all over it: both get the file's bytes."""
    url = fault_server.add("/f.bin", DATA)
    rng = random.Random(29)
    ranges = [(s, s + rng.randrange(1, 200_000)) for s in (rng.randrange(len(DATA)) for _ in range(60))]
    with kithara_io.open(url, cache_budget=8 * MiB, max_fetch=MiB) as f:
        got = {}

        def sequential() -> None:
            for start in (0, 4 * MiB, MiB, 5 * MiB):
                f.seek(start)
                got[start] = f.read(MiB // 2)

        reader = threading.Thread(target=sequential)
        reader.start()
        for _ in range(3):
            assert f.read_ranges(ranges) == [DATA[s:e] for s, e in ranges]
        reader.join(30)
        assert not reader.is_alive()
    assert got == {s: DATA[s : s + MiB // 2] for s in (0, 4 * MiB, MiB, 5 * MiB)}


def test_a_server_without_ranges_is_read_through(stdlib_server, media, no_leaks):
    """http.server ignores Range: the body streams once and the ranges are read from it."""
    local = media["random.bin"].read_bytes()
    ranges = [(5 * MiB, 5 * MiB + 10), (100, 200), (-50, None)]
    with kithara_io.open(stdlib_server.url("random.bin"), cache_budget=None) as f:
        assert f.supports_ranges is False
        assert f.read_ranges(ranges) == [local[s:e] for s, e in ranges]
