"""``kithara_io.aopen``: awaitable reads over the threaded engine. The loop never blocks
(lag probe while 8 streams read a throttled server), the default executor is never used,
and a cancelled read cancels the wait, not the stream."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import kithara_io
from kithara_io.events import RequestCompleted, Seek
from tests.servers.faults import Latency, Stall, StallForever

MiB = 1 << 20
DATA = os.urandom(3 * MiB + 777)
FAST = {
    "retry": kithara_io.Retry(attempts=1, backoff=0.01),
    "tail": 0,
    "first_fetch": 16,
    "read_ahead": 1,
    "read_behind": 0,
}


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def lag_probe(stop: asyncio.Event, lags: list) -> None:
    """Schedules itself every 1 ms; records each wake-up as (when, how late), in
    ``time.monotonic`` seconds."""
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.001)
        now = time.monotonic()
        lags.append((now, now - before - 0.001))


class ProcessStalls:
    """A plain thread that sleeps 1 ms at a time and records each wake-up as (when, how late).
    A stall of the whole process (a full garbage collection holding the GIL, the machine
    descheduled) makes it late too; a call blocking the loop's thread does not, since a thread
    blocked in a call releases the GIL. ``explain(when, lag)`` is how much of a loop wake-up's
    lateness this thread shared."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._stalls: list = []
        self._thread = threading.Thread(target=self._run, name="stall-probe", daemon=True)

    def __enter__(self) -> "ProcessStalls":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.monotonic()
            time.sleep(0.001)
            now = time.monotonic()
            if now - before > 0.002:
                self._stalls.append((before + 0.001, now))  # late from when it was due

    def explain(self, when: float, lag: float) -> float:
        start = when - lag
        return sum(max(0.0, min(end, when) - max(begin, start)) for begin, end in self._stalls)


def percentile(values, p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def test_read_seek_tell_iterate_and_close(fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)

    async def main():
        async with await kithara_io.aopen(url) as f:
            assert f.size == len(DATA) and f.tell() == 0
            assert await f.read(10) == DATA[:10]
            assert await f.seek(-100, io.SEEK_END) == len(DATA) - 100
            buffer = bytearray(150)
            assert await f.readinto(buffer) == 100 and buffer[:100] == DATA[-100:]
            assert await f.read(10) == b""
            await f.seek(5)
            assert await f.seek(5, io.SEEK_CUR) == 10
            assert b"".join([chunk async for chunk in f]) == DATA[10:]
            await f.seek(MiB)
            assert b"".join([c async for c in f.iter_chunks(100_000)]) == DATA[MiB:]
            await f.seek(0)
            assert await f.read() == DATA
            assert await f.read_ranges([(5, 10), (-3, None)]) == [DATA[5:10], DATA[-3:]]
            with pytest.raises(OSError):
                await f.seek(-1)
            assert f.stats().bytes_served >= len(DATA)
        assert f.closed
        with pytest.raises(ValueError):
            await f.read(1)
        await f.close()  # idempotent

    run(main())


def test_events_arrive_on_the_loop_thread(fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)

    async def main():
        seen, arrived = [], asyncio.Event()
        loop_thread = threading.get_ident()

        def on_event(event) -> None:
            seen.append(threading.get_ident())
            arrived.set()

        async with await kithara_io.aopen(url, **FAST) as f:
            f.subscribe(on_event, RequestCompleted)
            await f.seek(2 * MiB)
            await f.read(1000)
            await asyncio.wait_for(arrived.wait(), 10)
        assert set(seen) == {loop_thread}

    run(main())


@pytest.mark.timeout(60)
def test_the_loop_stays_responsive_while_8_streams_read_a_throttled_server(make_ranged_server, media, no_leaks):
    """8 streams read 1 MiB each from one 8 MB/s link (about 1 s); a probe that schedules
    itself every 1 ms sees its lag (max, p99) stay small. The default executor is a single
    thread here and still answers at once: the streams do not use it."""
    srv = make_ranged_server(bandwidth=8e6)
    url = srv.url("random.bin")
    local = media["random.bin"].read_bytes()

    async def reader(i: int) -> bytes:
        async with await kithara_io.aopen(url, tail=0) as f:
            await f.seek(i * MiB)
            out = bytearray()
            while len(out) < MiB:
                piece = await f.read(min(64 << 10, MiB - len(out)))
                assert piece
                out += piece
            return bytes(out)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        stop, lags = asyncio.Event(), []
        probe = asyncio.create_task(lag_probe(stop, lags))
        started = time.monotonic()
        readers = asyncio.gather(*(reader(i) for i in range(8)))
        await asyncio.sleep(0.05)
        ping = time.monotonic()
        assert await loop.run_in_executor(None, lambda: 42) == 42
        executor_wait = time.monotonic() - ping
        results = await readers
        elapsed = time.monotonic() - started
        stop.set()
        await probe
        return results, lags, elapsed, executor_wait

    with ProcessStalls() as stalls:
        results, samples, elapsed, executor_wait = run(main(), timeout=50)
    assert results == [local[i * MiB : (i + 1) * MiB] for i in range(8)]
    assert elapsed > 0.5  # the link was the limit: the probe ran while reads waited
    assert len(samples) > 200
    lags = [lag for _, lag in samples]
    # What the loop alone suffered: a stall of the whole process (once in CI a 333 ms one,
    # with p99 2 ms) is not the loop being blocked, and it delays the thread probe as well.
    own = [lag - stalls.explain(when, lag) for when, lag in samples]
    worst, p99 = max(own), percentile(own, 0.99)
    print(f"loop lag over {len(lags)} probes in {elapsed:.2f} s: p50 {percentile(lags, 0.5) * 1e3:.2f} ms, "
          f"p99 {percentile(lags, 0.99) * 1e3:.2f} ms, max {max(lags) * 1e3:.2f} ms; the loop's own: "
          f"p99 {p99 * 1e3:.2f} ms, max {worst * 1e3:.2f} ms; default executor: {executor_wait * 1e3:.1f} ms")
    # Measured p99 2-5 ms, max 12-30 ms on a 2-core machine shared with other jobs; the
    # bounds leave room for a loaded CI machine. Reads on the loop itself give a p99 and
    # max of 200-900 ms here (bench/aio_lag.py, "blocking").
    assert p99 < 0.03, p99
    assert worst < 0.25, worst
    assert executor_wait < 0.25


def test_a_cancelled_read_leaves_the_stream_usable_at_the_same_position(fault_server, no_leaks):
    """The read waits on a server that stalls for 5 s; cancelling it wakes it at once: the
    position is unchanged, a read elsewhere is served at once (not after the stall), and the
    same bytes read again are those of the fetch that went on (only the wait was cancelled)."""
    url = fault_server.add("/f.bin", DATA)

    async def main():
        async with await kithara_io.aopen(url, **FAST) as f:
            await f.read(10)
            await asyncio.to_thread(fault_server.wait_idle)
            fault_server.reset_log()
            fault_server.script("/f.bin", [Stall(5)])
            await f.seek(2 * MiB)
            task = asyncio.create_task(f.read(5000))
            assert await asyncio.to_thread(fault_server.wait_requests, 1, "/f.bin", 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert f.tell() == 2 * MiB
            await f.seek(3 * MiB)
            assert await asyncio.wait_for(f.read(100), 3) == DATA[3 * MiB : 3 * MiB + 100]
            await f.seek(2 * MiB)
            assert await asyncio.wait_for(f.read(5000), 20) == DATA[2 * MiB : 2 * MiB + 5000]
            assert f.tell() == 2 * MiB + 5000
        assert [r.range for r in fault_server.requests if r.range.startswith("bytes=2")][:1] == [
            f"bytes={2 * MiB}-{2 * MiB + (64 << 10) - 1}"
        ]

    run(main())


def test_an_interrupt_left_by_a_cancelled_read_that_did_not_wait_is_not_raised_later(fault_server, no_leaks):
    """A read cancelled while it runs but before it waits (held in a Seek subscriber here)
    finds its bytes present and returns: the stream's one-shot interrupt stays pending. The
    next read that waits must not raise InterruptedError for it."""
    url = fault_server.add("/f.bin", DATA)
    hold, held = threading.Event(), threading.Event()

    def on_seek(event: Seek) -> None:  # runs on the stream's worker thread
        if event.to_pos == 100:
            held.set()
            hold.wait(10)

    async def main():
        async with await kithara_io.aopen(url, **{**FAST, "first_fetch": 64 << 10}) as f:
            f.stream.subscribe(on_seek, Seek)
            await f.seek(100)  # bytes held since open: the read will not wait
            task = asyncio.create_task(f.read(10))
            assert await asyncio.to_thread(held.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task  # over at once (interrupt() called), while the read is held
            hold.set()
            assert f.tell() == 100
            await f.seek(2 * MiB)  # not held: this read waits
            assert await f.read(1000) == DATA[2 * MiB : 2 * MiB + 1000]

    run(main())


def test_cancelling_a_queued_call_never_runs_it(fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)

    async def main():
        async with await kithara_io.aopen(url, **FAST) as f:
            first = asyncio.create_task(f.read(100))
            second = asyncio.create_task(f.read(100))  # waits for the first (the call order)
            await asyncio.sleep(0)
            second.cancel()
            assert await first == DATA[:100]
            with pytest.raises(asyncio.CancelledError):
                await second
            assert f.tell() == 100
            assert await f.read(100) == DATA[100:200]

    run(main())


def test_close_wakes_a_waiting_read_and_errors_name_the_url(fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)

    async def main():
        f = await kithara_io.aopen(url, **FAST)
        fault_server.script("/f.bin", [StallForever()])
        await f.seek(MiB)
        task = asyncio.create_task(f.read(10))
        assert await asyncio.to_thread(fault_server.wait_requests, 2, "/f.bin", 10)
        await f.close()
        with pytest.raises(kithara_io.StreamClosedError):
            await task
        with pytest.raises(kithara_io.HTTPStatusError, match="404") as caught:
            await kithara_io.aopen(fault_server.url("/missing"), **FAST)
        assert fault_server.url("/missing") in str(caught.value)

    run(main())


def test_cancelling_aopen_closes_the_stream_once_open(fault_server, no_leaks):
    """aopen cancelled while the server delays its answer: the open finishes on the worker,
    the stream is closed and the worker ends (no_leaks)."""
    url = fault_server.add("/f.bin", DATA)
    fault_server.script("/f.bin", [Latency(0.5)])

    async def main():
        task = asyncio.create_task(kithara_io.aopen(url, **FAST))
        assert await asyncio.to_thread(fault_server.wait_requests, 1, "/f.bin", 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(fault_server.wait_idle, 10)

    run(main())
    for thread in threading.enumerate():
        if thread.name.startswith("kithara-aio"):
            thread.join(10)


def test_a_local_file(tmp_path, no_leaks):
    path = tmp_path / "local.bin"
    path.write_bytes(DATA[:300_000])

    async def main():
        async with await kithara_io.aopen(str(path)) as f:
            assert f.size == 300_000
            await f.seek(-10, io.SEEK_END)
            assert await f.read() == DATA[299_990:300_000]
            assert await f.read_ranges([(0, 5), (-5, None)]) == [DATA[:5], DATA[299_995:300_000]]

    run(main())
