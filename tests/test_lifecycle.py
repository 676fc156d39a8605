"""close() releases everything; open() fails loudly; many streams do not leak."""

from __future__ import annotations

import io

import socket
import threading

import numpy as np
import pytest
import soundfile as sf

import kithara_io
from kithara_io import ConnectionFailedError, HTTPStatusError, Retry, StreamError
from kithara_io.sources.http import AbortHandle, HttpSource

FAST_FAIL = dict(retry=Retry(attempts=1), timeout=kithara_io.Timeout(connect=2, read=5))


def fetch_threads():
    return [t for t in threading.enumerate() if t.name.startswith("kithara-fetch")]


def test_close_mid_download_leaves_nothing(make_ranged_server, no_leaks):
    slow = make_ranged_server(bandwidth=2_000_000)  # 8 MiB takes 4 s: fetches are running at close
    f = kithara_io.open(slow.url("random.bin"))
    f.seek(4 * 1024 * 1024)
    assert len(f.read(1000)) == 1000
    f.close()
    assert not fetch_threads()


def test_open_close_loop_does_not_grow_threads_or_fds(file_server, no_leaks):
    for i in range(30):
        with kithara_io.open(file_server.url("tone.wav")) as f:
            f.seek((i * 7919) % f.seek(0, io.SEEK_END))
            f.read(4096)
    assert not fetch_threads()


def test_many_streams_at_once_share_one_downloader(ranged_server, media, no_leaks):
    expected = media["random.bin"].read_bytes()
    streams = [kithara_io.open(ranged_server.url("random.bin")) for _ in range(8)]
    try:
        for i, f in enumerate(streams):
            f.seek(i * 1024 * 1024)
        for i, f in enumerate(streams):
            assert f.read(100_000) == expected[i * 1024 * 1024 : i * 1024 * 1024 + 100_000]
        assert len(fetch_threads()) <= 1 + 5  # dispatcher + max_concurrent
    finally:
        for f in streams:
            f.close()


def test_own_downloader_closes_its_threads(ranged_server, no_leaks):
    d = kithara_io.Downloader(max_concurrent=2)
    try:
        with kithara_io.open(ranged_server.url("tone.flac"), downloader=d) as f:
            data, _ = sf.read(f)
        assert data.shape[0] > 0
    finally:
        d.close()


def test_404_names_url_and_status(ranged_server, no_leaks):
    url = ranged_server.url("missing.flac")
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(url, **FAST_FAIL)
    assert info.value.status == 404
    assert url in str(info.value) and "404" in str(info.value)
    assert isinstance(info.value, StreamError) and isinstance(info.value, OSError)


def test_404_from_nginx_and_stdlib(nginx_server, stdlib_server, no_leaks):
    for server in (nginx_server, stdlib_server):
        with pytest.raises(HTTPStatusError, match="404"):
            kithara_io.open(server.url("nope.wav"), **FAST_FAIL)


def test_connection_refused_names_url(no_leaks):
    with socket.socket() as s:  # a port nobody listens on: bind, never listen
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/x.wav"
        with pytest.raises(ConnectionFailedError) as info:
            kithara_io.open(url, **FAST_FAIL)
    assert url in str(info.value)


def test_missing_local_file_and_bad_arguments(tmp_path):
    with pytest.raises(StreamError, match="missing.wav"):
        kithara_io.open(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="scheme"):
        kithara_io.open("ftp://127.0.0.1/x.wav")
    with pytest.raises(TypeError, match="unknown option"):
        kithara_io.open(tmp_path / "x", read_ahed=1)
    with pytest.raises(ValueError, match="priority"):
        kithara_io.open("http://127.0.0.1:1/x", priority="urgent")


def test_close_from_another_thread_wakes_a_blocked_reader(make_ranged_server, no_leaks):
    slow = make_ranged_server(bandwidth=200_000)
    f = kithara_io.open(slow.url("random.bin"))
    f.seek(6 * 1024 * 1024)
    errors, started = [], threading.Event()

    def reader():
        started.set()
        try:
            f.read(2 * 1024 * 1024)
        except (StreamError, ValueError) as exc:
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(10)
    f.close()
    t.join(10)
    assert not t.is_alive()
    assert errors and "closed" in str(errors[0])


def test_an_abort_before_the_connection_opens_still_breaks_the_request(make_ranged_server, no_leaks):
    """A fresh connection is handed out without a socket; an abort in that window (a fetch
    preempted just as it starts) must still end the request instead of letting it run."""
    slow = make_ranged_server(latency=5)
    source = HttpSource(slow.url("random.bin"))
    handle = AbortHandle()
    handle.abort()
    try:
        with pytest.raises(ConnectionFailedError):
            source.fetch(0, 1000, handle).close()
    finally:
        source.close()


def test_stdlib_server_forward_and_backward_seeks(stdlib_server, media):
    """No Range support: one streaming body; forward seeks wait, backward ones hit the cache."""
    expected, _ = sf.read(media["tone.wav"], dtype="int16")
    with kithara_io.open(stdlib_server.url("tone.wav")) as f, sf.SoundFile(f) as snd:
        for frame in (150_000, 1000, 90_000):
            snd.seek(frame)
            np.testing.assert_array_equal(snd.read(512, dtype="int16"), expected[frame : frame + 512])


def test_memory_stays_within_cache_budget(ranged_server, media):
    """Streaming 8 MiB through a 2 MiB budget: bounded memory, correct bytes, seeks back work."""
    expected = media["random.bin"].read_bytes()
    KiB = 1024
    opts = dict(cache_budget=2048 * KiB, max_fetch=256 * KiB, read_ahead=512 * KiB, read_behind=256 * KiB)
    with kithara_io.open(ranged_server.url("random.bin"), **opts) as f:
        peak = 0
        for pos in range(0, len(expected), 256 * KiB):
            assert f.read(256 * KiB) == expected[pos : pos + 256 * KiB]
            peak = max(peak, f.stats().bytes_cached)
        assert peak <= opts["cache_budget"] + 1024 * KiB  # budget + one block being filled
        f.seek(0)  # long evicted: fetched again
        assert f.read(100_000) == expected[:100_000]


def test_a_connection_close_answer_closes_its_socket_when_done(media, monkeypatch):
    """After the first answer, range GETs go through the origin's pool of http.client
    connections (libcurl's, for small ranges, has its own test in test_curl.py). An answer
    with ``Connection: close`` must not leave its socket open once its body is closed."""
    from kithara_io.net import curl
    from tests.conftest import open_resources

    monkeypatch.setattr(curl, "usable", False)
    from tests.servers.faults import FaultServer, NoContentLength

    data = media["random.bin"].read_bytes()[: 64 * 1024]
    server = FaultServer()
    source = HttpSource(server.add("/f", data))

    def read_all(body, start: int, end: int) -> None:
        out = memoryview(bytearray(end - start))
        while body.position < end:
            assert body.readinto(out[body.position - start :]) > 0
        assert bytes(out) == data[start:end]

    try:
        for start, end in ((0, 1000), (1000, 5000)):  # requests (pins), then the direct path
            body = source.fetch(start, end)
            read_all(body, start, end)
            body.close()
        before = open_resources()  # two idle keep-alive connections
        server.script("/f", [NoContentLength()])  # the next answer ends its connection
        body = source.fetch(5000, 9000)
        read_all(body, 5000, 9000)
        body.close()
        after = open_resources()
        assert not after - before and sum((before - after).values()) == 1, (before, after)
    finally:
        source.close()
        server.stop()


def test_a_late_abort_does_not_break_a_pooled_connection(make_ranged_server, media):
    """An epoch cancel can abort a fetch just after its body was read and its connection went
    back to the pool: the next request must still reuse that connection."""
    from tests.conftest import open_resources

    server = make_ranged_server()
    data = media["random.bin"].read_bytes()
    source = HttpSource(server.url("random.bin"))

    def fetch(start: int, end: int, handle=None) -> None:
        body = source.fetch(start, end, handle)
        out = memoryview(bytearray(end - start))
        while body.position < end:
            assert body.readinto(out[body.position - start :]) > 0
        body.close()
        assert bytes(out) == data[start:end]

    try:
        fetch(0, 1000)  # through requests: pins the resource
        late = AbortHandle()
        fetch(1000, 5000, late)  # the pool's path; its connection goes back to the pool
        before = open_resources()
        late.abort()
        fetch(5000, 9000)
        assert open_resources() == before  # the same connection served it
    finally:
        source.close()
