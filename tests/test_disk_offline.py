"""Offline replay of a partial disk-cache entry (issue #23): reads that cross a gap boundary.

The entry holds some runs of a file; the server is then gone (every connection refused) or
answers 503. A read of held bytes gets them; a read that reaches a gap (starting in held
bytes, starting in the gap, or spanning it) raises ``ConnectionFailedError`` once the retry
policy has given up on the gap's one fetch: never a short read (soundfile would take it for
the end of the file), never a hang, never a new request for the gap as soon as the last one
failed. Every read runs on a thread bounded by ``READ_BOUND``, so a read that hangs fails its
test (after closing the stream, which wakes it) instead of blocking the suite.

A stream whose read reached a gap has failed (``stream.error``, raised again by ``close()``,
as every permanent failure): each straddling read below opens its own stream.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest

import kithara_io
from kithara_io import ConnectionFailedError, HTTPStatusError, Retry, Timeout
from kithara_io.disk import DiskCache
from kithara_io.reading.cache import SparseCache
from kithara_io.events import RequestEnqueued, RequestFailed, RequestRetrying
from tests.servers.faults import FaultServer, Reset, Status

pytestmark = pytest.mark.timeout(60)

KiB = 1024
SIZE = 1024 * KiB
RETRY = Retry(attempts=3, backoff=0.05, max_backoff=0.2, jitter=0)
TIMEOUT = Timeout(connect=2, read=2, open=5)
BACKOFFS = sum(RETRY.delay(n) for n in range(1, RETRY.attempts))  # one fetch's waits: 0.15 s
READ_BOUND = BACKOFFS + TIMEOUT.read  # a read reaching a gap raises within this
# Small fetches, one at a time and no tail probe: the entry's runs are what the test reads.
SMALL = dict(tail=0, read_ahead=16 * KiB, min_fetch=16 * KiB, max_fetch=16 * KiB, first_fetch=16 * KiB, max_outstanding=1)
FILLED = [(0, 96 * KiB), (256 * KiB, 384 * KiB), (640 * KiB, 704 * KiB)]  # read while online


def data_of(size: int) -> bytes:
    return bytes((i * 7919 + i // 4099) % 251 for i in range(size))


DATA = data_of(SIZE)


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    """Entries named by the URL's path: the copy made from the fault server is the one the
    URL on a dead port replays."""
    return DiskCache(tmp_path / "cache", key=lambda url: urlsplit(url).path)


@pytest.fixture
def partial(fault_server: FaultServer, cache: DiskCache) -> List[Tuple[int, int]]:
    """Fill the entry of /f.bin with the ``FILLED`` runs (and what read-ahead adds); return
    its gaps, at least two inside the file and one at its end."""
    url = fault_server.add("/f.bin", DATA)
    with kithara_io.open(url, cache=cache, **SMALL) as f:
        for start, end in FILLED:
            f.seek(start)
            assert f.read(end - start) == DATA[start:end]
    with cache.open_entry(url) as entry:
        held = entry.present()
    gaps, pos = [], 0
    while pos < SIZE:
        run_end = held.covered_until(pos)
        nxt = held.next_start(run_end)
        gap_end = SIZE if nxt is None else nxt
        if run_end < gap_end:
            gaps.append((run_end, gap_end))
        pos = gap_end
    assert len(gaps) >= 3 and gaps[0][0] > 0 and gaps[-1][1] == SIZE, gaps
    assert all(end - start > 8 * KiB for start, end in gaps), gaps
    return gaps


@pytest.fixture(params=["refused", "503"])
def offline(request, fault_server: FaultServer, partial) -> Iterator[Tuple[str, Callable[[], Optional[int]]]]:
    """``(url, requests_sent)`` of a server that is gone (a port bound but never listening:
    every connection is refused) or that answers 503 to everything; ``requests_sent()``
    counts what reached the 503 server so far (None for the dead port: nothing reaches it)."""
    if request.param == "503":
        fault_server.always("/f.bin", Status(503))
        yield fault_server.url("/f.bin"), lambda: fault_server.count("/f.bin")
        return
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{dead.getsockname()[1]}/f.bin", lambda: None


def straddling_reads(gaps: List[Tuple[int, int]]) -> Iterator[Tuple[str, int, int]]:
    """``(what, pos, n)``: every read that crosses a boundary of a gap."""
    for start, end in gaps:
        yield f"into the gap at {start}", start - 1000, 5000
        if end < SIZE:
            yield f"out of the gap ending at {end}", end - 1000, 5000
            yield f"across the gap {start}-{end}", start - 1000, end - start + 2000


def read_bounded(f, pos: int, n: int) -> Dict[str, object]:
    """``f.seek(pos); f.read(n)`` on a thread: ``{"data": ...}`` or ``{"error": ...}``, and
    ``"seconds"``. A read still blocked after ``READ_BOUND`` + 5 s fails the test, after
    ``f.close()`` woke it."""
    outcome: Dict[str, object] = {}

    def read() -> None:
        started = time.monotonic()
        try:
            f.seek(pos)
            outcome["data"] = f.read(n)
        except Exception as exc:  # noqa: BLE001 - the outcome is checked by the caller
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=read, name="bounded-read")
    reader.start()
    reader.join(READ_BOUND + 5)
    if reader.is_alive():
        try:
            f.close()
        except Exception:  # noqa: BLE001 - its failure is not what is reported here
            pass
        reader.join(10)
        pytest.fail(f"read({n}) at {pos} did not return within {READ_BOUND + 5:g} s")
    return outcome


def attempts_counter(f) -> Callable[[], int]:
    """Network attempts of ``f`` that failed, as its events tell: each retry, and each fetch
    given up. (A refused connection reaches no server log.)"""
    seen: List[object] = []
    lock = threading.Lock()

    def on_event(event) -> None:
        with lock:
            seen.append(event)

    f.subscribe(on_event, RequestRetrying, RequestFailed)

    def count() -> int:
        with lock:
            return len(seen)

    return count


def test_offline_held_bytes_read_back_equal_to_the_file(offline, partial, cache, no_leaks):
    url, _ = offline
    gaps = partial
    with kithara_io.open(url, cache=cache, retry=RETRY, timeout=TIMEOUT, **SMALL) as f:
        failed = attempts_counter(f)
        pos = 0
        for start, end in gaps:
            if pos < start:
                got = read_bounded(f, pos, start - pos)
                assert got.get("data") == DATA[pos:start], (pos, start, got.get("error"))
            pos = end
        assert f.error is None
    assert failed() <= RETRY.attempts * len(gaps)  # read-ahead may try a gap, once


def test_offline_a_read_crossing_a_gap_boundary_raises_promptly(offline, partial, cache, no_leaks):
    url, requests_sent = offline
    gaps = partial
    for what, pos, n in straddling_reads(gaps):
        gap = next((s, e) for s, e in gaps if pos < e and s < pos + n)
        before = requests_sent()
        f = kithara_io.open(url, cache=cache, retry=RETRY, timeout=TIMEOUT, **SMALL)
        failed = attempts_counter(f)
        if pos < gap[0]:  # the held bytes before the gap read as they are, up to it
            head = read_bounded(f, pos, gap[0] - pos)
            assert head.get("data") == DATA[pos : gap[0]], (what, head.get("error"))
        got = read_bounded(f, pos, n)
        error = got.get("error")
        assert isinstance(error, ConnectionFailedError), (what, error, len(got.get("data") or b""))
        assert url in str(error) and "disk cache" in str(error), error
        assert got["seconds"] < READ_BOUND, (what, got["seconds"])
        with pytest.raises(ConnectionFailedError):
            f.close()  # the stream has failed: close() says so, as for every failure
        # One fetch of the gap, with its retries; not one request after another.
        assert failed() <= RETRY.attempts, (what, failed())
        if before is not None:  # the 503 server: its log is the ground truth
            sent = requests_sent() - before
            assert sent <= 1 + RETRY.attempts, (what, sent)  # the revalidation at open, then the gap's fetch


@pytest.mark.parametrize("fault", [Status(503), Reset(after_bytes=0)], ids=["503", "reset"])
def test_without_a_disk_cache_a_failing_gap_ends_with_the_retries(fault_server, fault, no_leaks):
    """The same read on a stream without a disk cache: the gap's fetch fails as its retry
    policy says, the read raises, and nothing is asked again."""
    url = fault_server.add("/g.bin", DATA)
    f = kithara_io.open(url, retry=RETRY, timeout=TIMEOUT, **SMALL)
    assert read_bounded(f, 0, 64 * KiB).get("data") == DATA[: 64 * KiB]
    held_end = f.buffered()[0][1]
    fault_server.always("/g.bin", fault)
    before = fault_server.count("/g.bin")
    got = read_bounded(f, held_end - 1000, 5000)
    assert isinstance(got.get("error"), (HTTPStatusError, ConnectionFailedError)), got
    assert got["seconds"] < READ_BOUND
    with pytest.raises((HTTPStatusError, ConnectionFailedError)):
        f.close()
    assert fault_server.count("/g.bin") - before <= RETRY.attempts


def test_offline_a_failed_gap_fetch_is_recorded_before_its_gap_is_free(offline, partial, cache, monkeypatch, no_leaks):
    """The gap's fetch fails on a pool thread while a read waits for it. The moment its claim
    is released (held open here for up to ``WINDOW``, as a busy machine may), the read must
    not send the gap's fetch again: the failure is recorded first, and the read raises."""
    window = 1.0
    url, _ = offline
    gap = partial[0]
    in_gap = lambda event: event.range is not None and gap[0] <= event.range[0] < gap[1]  # noqa: E731
    fetches: List[RequestEnqueued] = []
    first_fetch, second_fetch = threading.Event(), threading.Event()

    def on_enqueued(event: RequestEnqueued) -> None:
        if in_gap(event):
            fetches.append(event)
            (second_fetch if first_fetch.is_set() else first_fetch).set()

    release = SparseCache.release
    held_once = threading.Event()

    def slow_release(cache_self: SparseCache, fetch_id: int) -> None:
        claim = cache_self.claim_progress(fetch_id)
        release(cache_self, fetch_id)
        failed_in_gap = claim is not None and gap[0] <= claim[0] < min(claim[1], gap[1])
        if failed_in_gap and not held_once.is_set():
            held_once.set()
            second_fetch.wait(window)  # the gap is free: does the read fetch it again?

    monkeypatch.setattr(SparseCache, "release", slow_release)
    f = kithara_io.open(url, cache=cache, retry=RETRY, timeout=TIMEOUT, **SMALL)
    f.subscribe(on_enqueued, RequestEnqueued)
    failed = attempts_counter(f)
    head = read_bounded(f, gap[0] - 1000, 1000)  # held; its read-ahead fetches the gap
    assert head.get("data") == DATA[gap[0] - 1000 : gap[0]], head.get("error")
    assert first_fetch.wait(READ_BOUND), "the read-ahead did not fetch the gap"
    got = read_bounded(f, gap[0] - 1000, 5000)  # waits on that fetch, which fails
    assert isinstance(got.get("error"), ConnectionFailedError), got
    with pytest.raises(ConnectionFailedError):
        f.close()
    assert held_once.is_set()
    assert len(fetches) == 1 and failed() <= RETRY.attempts, (fetches, failed())
