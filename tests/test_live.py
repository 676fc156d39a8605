"""Live streams (issue #14) against the test radio server: unknown length, pipe-like file
behaviour, ICY metadata, reconnects, backpressure, close bounds, finite bodies without a
length (files: see also test_live_file.py), station playlists."""

from __future__ import annotations

import io
import threading
import time
from typing import List

import pytest

import kithara_io
from kithara_io import ConnectionFailedError, HTTPStatusError, Retry, StreamClosedError, StreamError
from kithara_io.events import MetadataChanged, ReaderWaiting, RequestRetrying, StreamGap
from kithara_io.reading.remote import RemoteReader
from kithara_io.sources.live.stream import LiveReader
from tests.live_media import mp3_payload
from tests.servers.icy import IcyServer, Station, head_listeners, station_bytes
from tests.test_no_cyclic_garbage import left_to_the_collector

KiB = 1024
MiB = 1024 * KiB
QUICK = Retry(attempts=3, backoff=0.01, jitter=0.0)


@pytest.fixture(scope="module")
def icy_server():
    with IcyServer() as server:
        yield server


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return mp3_payload(8.0)


_mounts = iter(range(1, 10_000))


def mount(server: IcyServer, station: Station, suffix: str = ".mp3") -> tuple:
    path = f"/m{next(_mounts)}{suffix}"
    return path, server.add(path, station)


def read_exactly(f, n: int) -> bytes:
    """``n`` bytes by as many reads as it takes (a live read returns what is there)."""
    out = bytearray()
    for _ in range(100_000):
        if len(out) >= n:
            break
        chunk = f.read(min(16 * KiB, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def read_to_end(f, limit: int = 64 * MiB) -> bytes:
    out = bytearray()
    while len(out) <= limit:
        chunk = f.read(64 * KiB)
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError("no end")


@pytest.mark.parametrize("framing", ["close", "chunked", "icy"])
def test_station_opens_at_once_and_reads_like_a_pipe(icy_server, mp3, framing, no_leaks):
    station = Station(payload=mp3, framing=framing, rate=400_000, burst=8 * KiB, clock_start=12_345, metaint=4000)
    path, url = mount(icy_server, station)
    started = time.monotonic()
    f = kithara_io.open(url)
    opened = time.monotonic() - started
    with f:
        assert opened < 1.0
        assert f.size is None and not f.seekable() and f.tell() == 0
        assert f.seek(0) == 0 and f.seek(0, io.SEEK_CUR) == 0
        with pytest.raises(io.UnsupportedOperation):
            f.seek(1)
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0, io.SEEK_END)
        data = read_exactly(f, 100_000)
        assert f.tell() == 100_000
        assert f.seek(100_000) == 100_000
        with pytest.raises(io.UnsupportedOperation):
            f.seek(0)
    listeners = head_listeners(icy_server.listeners(path))
    # ICY 200 OK: http.client refuses the first answer, a raw request follows.
    assert len(listeners) == (2 if framing == "icy" else 1)
    assert all(x.request_headers.get("Icy-MetaData") == "1" for x in listeners)
    # Metadata stripped: exactly the station's audio bytes from where this listener joined.
    assert data == station_bytes(mp3, listeners[-1].joined_at, 100_000)


def test_titles_arrive_as_events_and_in_metadata(icy_server, mp3, no_leaks):
    station = Station(
        payload=mp3, metaint=8000, title_every=20_000, titles=["One", "Two's", "Three"],
        stream_url="http://song.invalid/x", clock_start=5_000,
    )
    path, url = mount(icy_server, station)
    seen: List[MetadataChanged] = []
    total = 150_000
    with kithara_io.open(url, on_event=seen.append) as f:
        assert f.metadata == {
            "name": "Kithara Test FM", "genre": "Test", "description": "Sweeps and noise",
            "bitrate": 160, "station_url": "http://radio.invalid/",
        }
        sent = None
        while f.tell() < total:
            assert f.read(min(3000, total - f.tell()))
            sent = head_listeners(icy_server.listeners(path))[0].titles
            due = [title for offset, title in sent if offset <= f.tell()]
            assert f.metadata.get("title") == (due[-1] if due else None)
        assert f.metadata["url"] == "http://song.invalid/x"
    changes = [(e.position, e.metadata["title"]) for e in seen if isinstance(e, MetadataChanged)]
    sent = [(offset, title) for offset, title in head_listeners(icy_server.listeners(path))[0].titles if offset <= total]
    assert len(sent) >= 6 and changes[: len(sent)] == sent


@pytest.mark.parametrize("how, framing", [("reset", "close"), ("close", "close"), ("reset", "chunked"), ("reset", "icy")])
def test_dropped_connection_reconnects_with_a_gap_event(icy_server, mp3, how, framing, no_leaks):
    station = Station(payload=mp3, drops=2, drop_after=50_000, drop_how=how, framing=framing, rate=2_000_000)
    path, url = mount(icy_server, station)
    events: list = []
    with kithara_io.open(url, retry=QUICK, on_event=events.append) as f:
        data = read_exactly(f, 180_000)
        assert f.stats().requests >= 3
    listeners = icy_server.listeners(path)
    played = [x for x in listeners if x.dropped] + [listeners[-1]]  # the last: the reconnection that plays on
    assert len(played) == 3
    assert [e.position for e in events if isinstance(e, StreamGap)] == [50_000, 100_000]
    expected = (
        station_bytes(mp3, played[0].joined_at, 50_000)
        + station_bytes(mp3, played[1].joined_at, 50_000)
        + station_bytes(mp3, played[2].joined_at, 80_000)
    )
    assert data == expected


def test_reconnection_gives_up_after_the_attempts(icy_server, mp3, no_leaks):
    station = Station(payload=mp3, drops=1, drop_after=30_000, fail_status=503)
    path, url = mount(icy_server, station)
    f = kithara_io.open(url, retry=QUICK)
    got = bytearray()
    with pytest.raises(ConnectionFailedError) as info:
        for _ in range(1000):
            got += f.read(4096)
    assert url in str(info.value) and "reconnect" in str(info.value)
    assert isinstance(info.value.cause, HTTPStatusError) and info.value.cause.status == 503
    assert bytes(got) == station_bytes(mp3, 0, len(got)) and len(got) <= 30_000
    assert [x.status for x in head_listeners(icy_server.listeners(path))].count(503) == QUICK.attempts
    with pytest.raises(ConnectionFailedError):
        f.close()


def test_reconnection_stops_at_a_permanent_error(icy_server, mp3, no_leaks):
    station = Station(payload=mp3, drops=1, drop_after=30_000, fail_status=404)
    path, url = mount(icy_server, station)
    f = kithara_io.open(url, retry=QUICK)
    with pytest.raises(HTTPStatusError):
        read_to_end(f)
    assert [x.status for x in head_listeners(icy_server.listeners(path))].count(404) == 1
    with pytest.raises(HTTPStatusError):
        f.close()


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_finite_body_without_length_is_a_file_from_open(icy_server, framing, no_leaks):
    payload = bytes(range(256)) * 1200  # 307200 B
    station = Station(
        payload=payload, framing=framing, metaint=None, icy_headers={}, limit=len(payload),
        content_type="application/octet-stream", rate=300_000,  # the end comes a second after open
    )
    path, url = mount(icy_server, station, ".bin")
    with kithara_io.open(url) as f:
        assert f.seekable()  # from open: its answer never changes
        data = f.read()
        payload = station_bytes(payload, head_listeners(icy_server.listeners(path))[-1].joined_at, len(payload))
        assert data == payload
        assert f.seekable() and f.size == len(payload)
        f.seek(1000)
        assert f.read(10) == payload[1000:1010]
        f.seek(-5, io.SEEK_END)
        assert f.read() == payload[-5:]
        assert f.read() == b""
    # The answer to the first (ranged) request might have been just the range: asked again
    # without Range (tests/test_ambiguous_answers.py); a station (icy-*) is asked once.
    assert len(head_listeners(icy_server.listeners(path))) == 2


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_finite_body_larger_than_the_budget_is_requested_again_for_dropped_bytes(icy_server, framing, no_leaks):
    payload = bytes(range(256)) * 4096 * 3  # 3 MiB
    station = Station(payload=payload, framing=framing, metaint=None, icy_headers={}, limit=len(payload),
                      content_type="application/octet-stream")
    path, url = mount(icy_server, station, ".bin")
    with kithara_io.open(url, cache_budget=2 * MiB, max_fetch=1 * MiB, min_fetch=64 * KiB) as f:
        assert f.seekable()
        assert read_to_end(f) == payload
        assert f.seekable() and f.size == len(payload)
        assert f.stats().bytes_cached <= 2 * MiB + 64 * KiB
        f.seek(0)  # dropped: the URL is asked again and read up to here
        assert f.read(100_000) == payload[:100_000]
        assert f.seekable() and f.stats().bytes_cached <= 2 * MiB + 64 * KiB
    # The first (ranged) answer is asked again without Range (it might have been just the
    # range: tests/test_ambiguous_answers.py), then once more for the dropped bytes.
    assert len(head_listeners(icy_server.listeners(path))) == 3


def test_backpressure_pauses_the_download(icy_server, mp3, no_leaks):
    budget = 2 * MiB
    station = Station(payload=mp3, metaint=16000)  # as fast as the client takes
    path, url = mount(icy_server, station)
    with kithara_io.open(url, cache_budget=budget, max_fetch=1 * MiB, min_fetch=64 * KiB) as f:
        assert f.read(1)
        deadline = time.monotonic() + 10
        while f.stats().bytes_cached < budget - 64 * KiB:  # the buffer fills, bounded wait
            assert time.monotonic() < deadline, "buffer never filled"
            time.sleep(0.01)
        first = head_listeners(icy_server.listeners(path))[0].audio_sent
        time.sleep(0.5)  # unpaced, the server would push hundreds of MB meanwhile
        later = head_listeners(icy_server.listeners(path))[0].audio_sent
        assert f.stats().bytes_cached <= budget + 64 * KiB
        # What the kernel's socket buffers can hold beyond the budget, nothing more.
        assert later < budget + 16 * MiB, (first, later)
        print("backpressure: server sent", first, later)
        data = read_exactly(f, 6 * MiB)
    assert data == station_bytes(mp3, 1, 6 * MiB)


def test_close_returns_fast_and_wakes_a_waiting_read(icy_server, mp3, no_leaks):
    station = Station(payload=mp3, rate=2_000, burst=100)  # a trickle: the read waits
    path, url = mount(icy_server, station)
    f = kithara_io.open(url)
    outcome: list = []

    def reader() -> None:
        try:
            while True:
                f.read(64 * KiB)
        except StreamClosedError as exc:
            outcome.append(exc)
        except ValueError as exc:  # closed between two reads
            outcome.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    started = time.monotonic()
    f.close()
    took = time.monotonic() - started
    t.join(5)
    assert took < 1.0 and not t.is_alive() and outcome


def test_interrupt_wakes_a_waiting_read_and_the_stream_goes_on(icy_server, mp3, no_leaks):
    # 100 bytes at once, then 100 bytes a second: the second read waits.
    station = Station(payload=mp3, rate=100, burst=0, chunk=100, metaint=None)
    path, url = mount(icy_server, station)
    waiting = threading.Event()
    with kithara_io.open(url, on_event=lambda e: waiting.set() if isinstance(e, ReaderWaiting) else None) as f:
        first = read_exactly(f, 100)
        outcome: list = []
        t = threading.Thread(target=lambda: outcome.append(_read_or_error(f)))
        t.start()
        assert waiting.wait(5)
        f.interrupt()  # the read raises now, or at its wait if it has not reached it yet
        t.join(5)
        assert isinstance(outcome[0], InterruptedError)
        rest = read_exactly(f, 100)  # the stream goes on: nothing was lost
    joined = head_listeners(icy_server.listeners(path))[0].joined_at
    assert first + rest == station_bytes(mp3, joined, 200)


def _read_or_error(f):
    try:
        return f.read(50_000)
    except InterruptedError as exc:
        return exc


def test_close_during_reconnect_backoff(icy_server, mp3, no_leaks):
    station = Station(payload=mp3, drops=1, drop_after=10_000)
    path, url = mount(icy_server, station)
    backing_off = threading.Event()

    def on_event(event) -> None:
        if isinstance(event, RequestRetrying):
            backing_off.set()

    f = kithara_io.open(url, retry=Retry(backoff=30.0, max_backoff=30.0), on_event=on_event)
    assert read_exactly(f, 10_000)
    assert backing_off.wait(5)
    started = time.monotonic()
    f.close()
    assert time.monotonic() - started < 1.0


def test_station_playlists_resolve_to_the_first_stream_that_answers(icy_server, mp3, no_leaks):
    path, url = mount(icy_server, Station(payload=mp3, clock_start=777))
    dead = "http://127.0.0.1:9/nothing.mp3"  # discard port: refused
    pls = icy_server.add_playlist(
        "/listen.pls", f"[playlist]\nNumberOfEntries=2\nFile1={dead}\nFile2={path}\nTitle2=Test\nVersion=2\n"
    )
    m3u = icy_server.add_playlist("/listen.m3u", f"#EXTM3U\n#EXTINF:-1,Test\n{url}\n")
    for playlist in (pls, m3u):
        with kithara_io.open(playlist, retry=Retry(attempts=1)) as f:
            assert f.size is None and f.metadata["name"] == "Kithara Test FM"
            assert read_exactly(f, 5000) == station_bytes(mp3, 777, 5000)


def test_playlist_without_a_working_stream_fails_naming_it(icy_server, no_leaks):
    pls = icy_server.add_playlist("/dead.pls", "[playlist]\nFile1=http://127.0.0.1:9/a\nNumberOfEntries=1\n")
    with pytest.raises(StreamError) as info:
        kithara_io.open(pls, retry=Retry(attempts=1))
    assert pls in str(info.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("framing", ["close", "icy"])
def test_a_closed_station_leaves_no_cyclic_garbage(icy_server, mp3, framing, no_leaks):
    """Freed as it is dropped (see test_no_cyclic_garbage.py): the reader that asked first
    and found no length kept that as its error, whose traceback referred back to it."""

    def listen() -> None:
        for _ in range(2):
            station = Station(payload=mp3, framing=framing, rate=400_000, burst=8 * KiB, clock_start=12_345, metaint=4000)
            _, url = mount(icy_server, station)
            with kithara_io.open(url) as f:
                assert len(read_exactly(f, 50_000)) == 50_000

    assert left_to_the_collector(listen, (RemoteReader, LiveReader)) == []
