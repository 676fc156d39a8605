"""A body without a length that is not a radio station is a file whose length comes at its end
(issue #23): ``seekable()`` True from open to close, ``size`` None until the end arrives, a
seek from the end and reads ahead wait for the bytes (bounded by the timeouts), memory stays
within ``cache_budget`` (dropped bytes are requested again), and another version of the file is
never mixed in. The real clients (soundfile, PyAV) run against nginx serving chunked in
test_stream_audio.py, test_decoders.py, test_stream_file.py and test_lifecycle.py."""

from __future__ import annotations

import io
import random
import threading
import time

import pytest
import soundfile as sf

import kithara_io
from kithara_io import ConnectionFailedError, ResourceChangedError, Retry, StreamClosedError, StreamError, Timeout
from kithara_io.events import ReaderWaiting
from tests.interrupts import check_interrupt_wakes_a_waiting_read
from tests.servers.faults import ChangedETag, Chunked, IgnoreRange, NoContentLength, StallForever

KiB = 1024
MiB = 1024 * KiB
QUICK = Retry(attempts=2, backoff=0.01, jitter=0.0)
READ_TIMEOUT = 0.4
BUDGET = dict(cache_budget=1 * MiB, max_fetch=256 * KiB, min_fetch=64 * KiB)
# No tail probe: open sends one request, so a script's first fault is the answer the stream reads.
ONE = dict(timeout=Timeout(read=READ_TIMEOUT), retry=QUICK, tail=0)


def payload(n: int, seed: int = 23) -> bytes:
    return random.Random(seed).randbytes(n)


def serve(srv, path: str, data: bytes, first=(), framing=Chunked(), **validators) -> str:
    """``data`` at ``path`` as a server without ranges or a length sends it; ``first``:
    faults of the first answer the stream reads. That is the second request: the answer
    to the first, ranged, one might hold just the range and is asked again without Range
    (tests/test_ambiguous_answers.py)."""
    url = srv.add(path, data, **validators)
    srv.always(path, (IgnoreRange(), framing))
    if first:
        srv.script(path, [(IgnoreRange(), framing), (IgnoreRange(), framing, *first)])
    return url


@pytest.mark.parametrize("framing", [Chunked(), NoContentLength()])
def test_seek_end_waits_for_the_end_and_seekable_never_changes(fault_server, framing, no_leaks):
    data = payload(600 * KiB)
    # The first answer stops after 200 KiB: its end never comes; the stream asks again.
    url = serve(fault_server, "/f.bin", data, first=[StallForever(200 * KiB)], framing=framing)
    with kithara_io.open(url, **ONE) as f:
        assert f.seekable() and f.size is None
        assert f.read(1000) == data[:1000]
        assert f.seekable() and f.size is None  # the first answer cannot have ended
        assert f.seek(0, io.SEEK_END) == len(data)
        assert f.seekable() and f.size == len(data) and f.tell() == len(data)
        assert f.seek(-100, io.SEEK_END) == len(data) - 100 and f.read() == data[-100:]
        f.seek(0)
        assert f.read() == data
        assert f.stats().requests == 2 and f.etag == dict(fault_server.requests[0].response_headers)["ETag"]
    assert fault_server.count("/f.bin") == 3  # the first, ranged one only asked again (see serve)


@pytest.mark.parametrize("call", ["seek_end", "read_ahead"])
def test_a_stall_fails_a_waiting_call_within_the_timeouts(fault_server, call, no_leaks):
    data = payload(600 * KiB)
    url = fault_server.add("/stall.bin", data)
    fault_server.always("/stall.bin", (IgnoreRange(), Chunked(), StallForever(200 * KiB)))
    f = kithara_io.open(url, **ONE)
    began = time.monotonic()
    with pytest.raises(StreamError) as info:
        if call == "seek_end":
            f.seek(0, io.SEEK_END)
        else:
            f.seek(300 * KiB)
            f.read(10)
    waited = time.monotonic() - began
    # One read timeout per request: the first and QUICK.attempts new ones (a little slack for load).
    assert READ_TIMEOUT <= waited < (QUICK.attempts + 1) * READ_TIMEOUT + 3.0
    assert isinstance(info.value, ConnectionFailedError) and url in str(info.value)
    assert fault_server.count("/stall.bin") == QUICK.attempts + 2  # + the ranged one asked again (see serve)
    with pytest.raises(ConnectionFailedError):
        f.close()


def test_a_file_larger_than_the_budget_reads_again_what_it_dropped(nginx_chunked_server, media, no_leaks):
    data = media["random.bin"].read_bytes()  # 8 MiB
    with kithara_io.open(nginx_chunked_server.url("random.bin"), **BUDGET) as f:
        assert f.read(1 << 40) == data  # the length unknown: memory follows what arrives
        assert f.seek(-1000, io.SEEK_END) == len(data) - 1000 and f.read() == data[-1000:]
        assert f.stats().bytes_cached <= 1 * MiB + 64 * KiB and f.stats().requests == 1
        f.seek(0)  # dropped while the tail came: requested again, read forward
        assert f.read(5000) == data[:5000]
        f.seek(3 * MiB)
        assert f.read(5000) == data[3 * MiB : 3 * MiB + 5000]
        f.seek(100)  # behind again
        assert f.read() == data[100:]
        assert f.stats().bytes_cached <= 1 * MiB + 64 * KiB and f.stats().requests == 3


def test_a_file_within_the_budget_is_fetched_once(nginx_chunked_server, media, no_leaks):
    expected, rate = sf.read(media["tone.flac"], dtype="int16")
    with kithara_io.open(nginx_chunked_server.url("tone.flac")) as f:
        with sf.SoundFile(f) as remote:  # seeks to the end at open
            assert remote.frames == len(expected)
            for target in (len(expected) // 2, 0, len(expected) - 3000, 1000):
                assert remote.seek(target) == target
                assert (remote.read(2048, dtype="int16") == expected[target : target + 2048]).all()
        assert f.stats().requests == 1 and f.size == media["tone.flac"].stat().st_size


@pytest.mark.parametrize("change", ["etag", "bytes", "length"])
def test_another_version_is_never_mixed_in(fault_server, change, no_leaks):
    data = payload(3 * MiB)
    if change == "etag":  # the new answer's ETag differs
        url = serve(fault_server, "/v.bin", data, first=[StallForever(200 * KiB)])
        fault_server.always("/v.bin", (IgnoreRange(), Chunked(), ChangedETag()))
    elif change == "bytes":  # no validators; the bytes still held differ
        url = serve(fault_server, "/v.bin", data, first=[StallForever(200 * KiB)], etag=None, last_modified=None)
    else:  # no validators; the new answer is shorter
        url = serve(fault_server, "/v.bin", data, etag=None, last_modified=None)
    f = kithara_io.open(url, **ONE, **BUDGET)
    if change == "length":
        assert f.seek(0, io.SEEK_END) == len(data)  # the head is dropped meanwhile
        fault_server.replace("/v.bin", data[:-1000])
        f.seek(0)
        call = f.read
    else:
        assert f.read(1000) == data[:1000]
        if change == "bytes":
            fault_server.replace("/v.bin", payload(len(data), seed=24))
        call = lambda: f.seek(0, io.SEEK_END)  # noqa: E731
    with pytest.raises(ResourceChangedError) as info:
        call()
    assert url in str(info.value) and "changed" in str(info.value)
    for later in (lambda: f.read(1), f.close):  # stored: every later call raises it
        with pytest.raises(ResourceChangedError):
            later()
    assert fault_server.count("/v.bin") == 3  # the first, ranged one only asked again (see serve)


def in_thread(call):
    """Run ``call`` in a thread; its result or exception lands in the returned dict."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_interrupt_and_close_end_a_wait_for_the_end(fault_server, no_leaks):
    data = payload(600 * KiB)
    url = serve(fault_server, "/i.bin", data, first=[StallForever(200 * KiB)])
    waiting = threading.Event()
    on_event = lambda e: waiting.set() if isinstance(e, ReaderWaiting) else None  # noqa: E731
    f = kithara_io.open(url, timeout=Timeout(read=30), tail=0, on_event=on_event)  # the stall holds
    check_interrupt_wakes_a_waiting_read(f, data[:4096], 400 * KiB, waiting.is_set)
    for end in ("interrupt", "close"):
        waiting.clear()
        thread, outcome = in_thread(lambda: f.seek(0, io.SEEK_END))
        assert waiting.wait(10)
        began = time.monotonic()
        f.interrupt() if end == "interrupt" else f.close()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - began < 1.0
        expected = InterruptedError if end == "interrupt" else StreamClosedError
        assert isinstance(outcome.get("error"), expected), outcome
        if end == "interrupt":
            assert f.seekable() and f.size is None  # usable, nothing changed
    assert f.closed and fault_server.count("/i.bin") == 2  # the first, ranged one only asked again (see serve)
