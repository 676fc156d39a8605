"""open(url, cache=...): replay from disk, offline replay, only gaps fetched, versions never mixed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import List, Union

import numpy as np
import pytest
import soundfile as sf

import kithara_io
from kithara_io import ConnectionFailedError, Retry, Timeout
from kithara_io.disk import DiskCache
from kithara_io.disk import store
from kithara_io.reading.ranges import RangeSet
from tests.conftest import AUDIO_FILES
from tests.servers.faults import Status
from tests.servers.ranged import RangedServer

pytestmark = pytest.mark.timeout(60)

KiB = 1024
MiB = 1024 * KiB
FAIL_FAST = dict(retry=Retry(attempts=1), timeout=Timeout(connect=2, read=5))


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    return DiskCache(tmp_path / "cache")


def read_all(url: str, cache: Union[str, DiskCache], **options) -> bytes:
    with kithara_io.open(url, cache=cache, **options) as f:
        return f.read()


def present(cache: DiskCache, url: str) -> RangeSet:
    with cache.open_entry(url) as entry:
        return entry.present()


def sent_ranges(server) -> List[tuple]:
    """``(status, first, last)`` of every GET the server answered with body bytes."""
    out = []
    for r in server.requests:
        if r.bytes_sent:
            first = int(r.range[len("bytes=") :].split("-")[0]) if r.range and r.status == 206 else 0
            out.append((r.status, first, first + r.bytes_sent))
    return out


@pytest.mark.parametrize("name", AUDIO_FILES)
def test_a_cached_file_decodes_again_with_one_revalidation_and_no_body_bytes(any_server, media, cache, name):
    url = any_server.url(name)
    data = media[name].read_bytes()
    assert read_all(url, cache) == data
    if any_server.kind != "nginx":
        any_server.reset_log()
    expected, rate = sf.read(media[name], dtype="int16")
    with kithara_io.open(url, cache=cache) as f:
        got, got_rate = sf.read(f, dtype="int16")
        stats = f.stats()
    assert got_rate == rate
    np.testing.assert_array_equal(got, expected)
    assert (stats.requests, stats.bytes_fetched, stats.bytes_from_disk) == (1, 0, len(data)), stats
    if any_server.kind != "nginx":
        assert [r.status for r in any_server.requests] == [304]  # If-None-Match / If-Modified-Since


def test_offline_replay_with_the_server_stopped(media_dir, media, cache, no_leaks):
    server = RangedServer(media_dir)
    url = server.url("tone.flac")
    try:
        assert read_all(url, cache) == media["tone.flac"].read_bytes()
    finally:
        server.stop()
    expected, _ = sf.read(media["tone.flac"], dtype="int16")
    with kithara_io.open(url, cache=cache, **FAIL_FAST) as f:
        got, _ = sf.read(f, dtype="int16")
        stats = f.stats()
        assert f.etag is not None and f.etag == cache.entries()[0].etag
    np.testing.assert_array_equal(got, expected)
    assert stats.requests == 0 and stats.bytes_fetched == 0
    assert not any(e.in_use for e in cache.entries())


def test_offline_a_partial_copy_serves_what_it_has_and_a_gap_fails_loudly(media_dir, media, cache, no_leaks):
    data = media["random.bin"].read_bytes()
    server = RangedServer(media_dir)
    url = server.url("random.bin")
    try:
        with kithara_io.open(url, cache=cache, read_ahead=64 * KiB, max_fetch=64 * KiB, tail=0) as f:
            assert f.read(100 * KiB) == data[: 100 * KiB]
    finally:
        server.stop()
    held = present(cache, url)
    assert held.contains(0, 100 * KiB) and not held.contains(0, len(data))
    gap = held.covered_until(0)
    with kithara_io.open(url, cache=cache, **FAIL_FAST) as f:
        assert f.read(gap) == data[:gap]
        with pytest.raises(ConnectionFailedError) as caught:
            f.read(1)
        assert url in str(caught.value)
        with pytest.raises(ConnectionFailedError):
            f.close()


def test_a_partial_copy_fetches_only_the_gaps(make_ranged_server, media, cache, no_leaks):
    data = media["random.bin"].read_bytes()
    server = make_ranged_server()
    url = server.url("random.bin")
    small = dict(read_ahead=256 * KiB, max_fetch=256 * KiB, min_fetch=64 * KiB)
    with kithara_io.open(url, cache=cache, **small) as f:
        for start in (0, 3 * MiB, 6 * MiB):
            f.seek(start)
            assert f.read(512 * KiB) == data[start : start + 512 * KiB]
    held = present(cache, url)
    assert 1536 * KiB <= held.total < len(data)
    server.reset_log()
    with kithara_io.open(url, cache=cache) as f:
        assert f.read() == data
        stats = f.stats()
    fetched = RangeSet()
    for status, first, end in sent_ranges(server):
        assert status == 206
        for start, stop in held:
            assert end <= start or first >= stop, f"bytes {first}-{end} were on disk already ({held})"
        fetched.add(first, end)
    assert fetched.total == len(data) - held.total == stats.bytes_fetched
    assert stats.bytes_from_disk == held.total
    assert present(cache, url).total == len(data)


def test_a_changed_file_replaces_the_cached_copy_instead_of_mixing(tmp_path, cache, no_leaks):
    root = tmp_path / "site"
    root.mkdir()
    old, new = bytes(range(256)) * 8192, bytes(reversed(range(256))) * 8192  # same length
    (root / "a.bin").write_bytes(old)
    server = RangedServer(root)
    try:
        url = server.url("a.bin")
        with kithara_io.open(url, cache=cache, tail=0) as f:
            assert f.read(1 * MiB) == old[: 1 * MiB]  # a partial copy of the old version
        (root / "a.bin").write_bytes(new)
        server.reset_log()
        assert read_all(url, cache) == new
        assert all(r.status == 206 for r in server.requests)  # no 304: the ETag moved
        assert read_all(url, cache) == new
    finally:
        server.stop()
    with cache.open_entry(url) as entry:
        assert entry.present().total == len(new)
        out = bytearray(len(new))
        entry.read_into(0, memoryview(out))
        assert bytes(out) == new


def test_a_changed_length_and_etag_without_conditional_support(fault_server, cache, media, no_leaks):
    """The fault server ignores If-None-Match: the answer's validators tell the change."""
    old = media["random.bin"].read_bytes()[: 2 * MiB]
    new = old[::-1][: 3 * MiB // 2]
    url = fault_server.add("/b.bin", old)
    assert read_all(url, cache) == old
    fault_server.replace("/b.bin", new)
    assert read_all(url, cache) == new
    assert read_all(url, cache) == new


def test_offline_then_a_changed_server_fails_instead_of_mixing_versions(fault_server, cache, media, no_leaks):
    old = media["random.bin"].read_bytes()[: 2 * MiB]
    url = fault_server.add("/f.bin", old)
    small = dict(FAIL_FAST, tail=0, read_ahead=64 * KiB, min_fetch=64 * KiB, max_fetch=64 * KiB)
    with kithara_io.open(url, cache=cache, **small) as f:
        assert f.read(256 * KiB) == old[: 256 * KiB]
    held = present(cache, url).covered_until(0)
    fault_server.script("/f.bin", [Status(503)])  # the revalidation fails: offline
    fault_server.replace("/f.bin", old[::-1])  # and then the server has another version
    f = kithara_io.open(url, cache=cache, **small)
    assert f.read(held) == old[:held]
    with pytest.raises(kithara_io.ResourceChangedError):
        f.read(64 * KiB)
    with pytest.raises(kithara_io.ResourceChangedError):
        f.close()


def test_a_404_for_a_cached_file_is_an_error_not_a_replay(fault_server, cache, media, no_leaks):
    url = fault_server.add("/c.bin", media["random.bin"].read_bytes()[:MiB])
    read_all(url, cache)
    fault_server.script("/c.bin", [Status(404)])
    with pytest.raises(kithara_io.HTTPStatusError) as caught:
        kithara_io.open(url, cache=cache, **FAIL_FAST)
    assert caught.value.status == 404 and url in str(caught.value)
    assert not any(e.in_use for e in cache.entries())  # the failed open let its entry go


def test_a_server_error_at_revalidation_replays_offline(fault_server, cache, media, no_leaks):
    data = media["random.bin"].read_bytes()[:MiB]
    url = fault_server.add("/d.bin", data)
    read_all(url, cache)
    fault_server.script("/d.bin", [Status(503)])
    with kithara_io.open(url, cache=cache, **FAIL_FAST) as f:
        assert f.read() == data
        assert f.stats().bytes_fetched == 0


def test_signed_urls_share_one_entry_through_a_key_function(ranged_server, tmp_path, media, no_leaks):
    data = media["tone.ogg"].read_bytes()
    base = ranged_server.url("tone.ogg")
    cache = DiskCache(tmp_path / "signed", key=lambda url: url.split("?")[0])
    assert read_all(base + "?sig=one", cache) == data
    with kithara_io.open(base + "?sig=two", cache=cache) as f:
        assert f.read() == data
        assert f.stats().bytes_fetched == 0


def test_bad_cache_argument(ranged_server):
    with pytest.raises(ValueError, match="cache must be"):
        kithara_io.open(ranged_server.url("small.bin"), cache="memory")


def test_two_processes_streaming_one_url_share_the_cache(make_ranged_server, media, cache, no_leaks):
    data = media["random.bin"].read_bytes()
    server = make_ranged_server(bandwidth=40_000_000)
    url = server.url("random.bin")
    script = (
        "import sys, hashlib, kithara_io\n"
        "from kithara_io.disk import DiskCache\n"
        "with kithara_io.open(sys.argv[1], cache=DiskCache(sys.argv[2])) as f:\n"
        "    print(hashlib.sha256(f.read()).hexdigest(), f.stats().bytes_fetched)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, str(cache.path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for _ in range(2)
    ]
    fetched = 0
    for proc in procs:
        out, err = proc.communicate(timeout=45)
        assert proc.returncode == 0, err
        digest, nbytes = out.split()
        assert digest == hashlib.sha256(data).hexdigest()
        fetched += int(nbytes)
    assert len(data) <= fetched <= 2 * len(data)
    assert present(cache, url).total == len(data)
    server.stop()
    with kithara_io.open(url, cache=cache, **FAIL_FAST) as f:  # offline: the union is whole
        assert f.read() == data


def test_streams_evict_least_recently_used_entries_but_never_an_open_one(ranged_server, media, tmp_path):
    names = ["tone.wav", "tone.flac", "tone.ogg"]
    sizes = {name: len(media[name].read_bytes()) for name in names}
    assert max(sizes, key=sizes.get) == "tone.wav"
    cache = DiskCache(tmp_path / "small", max_bytes=sizes["tone.wav"])  # room for one file at a time
    urls = {name: ranged_server.url(name) for name in names}
    with kithara_io.open(urls["tone.wav"], cache=cache) as playing:
        playing.read()
        read_all(urls["tone.flac"], cache)  # over budget: the FLAC goes, the open WAV may not
        assert [e.url for e in cache.entries()] == [urls["tone.wav"]]
    read_all(urls["tone.ogg"], cache)  # over budget again: now the WAV is least recently used
    assert [e.url for e in cache.entries()] == [urls["tone.ogg"]]


def test_a_partial_copy_from_a_server_without_ranges_is_completed(stdlib_server, media, cache, no_leaks):
    data = media["random.bin"].read_bytes()
    url = stdlib_server.url("random.bin")
    with kithara_io.open(url, cache=cache) as f:
        assert f.read(256 * KiB) == data[: 256 * KiB]  # closing cuts the one streaming GET
    held = present(cache, url)
    assert held.covered_until(0) >= 256 * KiB and held.total < len(data)
    with kithara_io.open(url, cache=cache) as f:
        f.seek(len(data) - 1000)
        assert f.read() == data[-1000:]
        f.seek(0)
        assert f.read() == data
    assert present(cache, url).total == len(data)


def test_an_unusable_cache_directory_only_stops_the_caching(ranged_server, media, cache, caplog):
    url = ranged_server.url("tone.wav")
    cache.entry_path(url).write_text("in the way")  # the entry directory cannot be made
    with caplog.at_level("WARNING", logger="kithara_io"):
        assert read_all(url, cache) == media["tone.wav"].read_bytes()
    assert any("not caching" in r.getMessage() and url in r.getMessage() for r in caplog.records)


def test_cache_disk_uses_the_user_cache_directory_or_warns(ranged_server, media, tmp_path, monkeypatch, caplog):
    url = ranged_server.url("small.bin")
    monkeypatch.setattr(store, "_default", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert read_all(url, "disk") == media["small.bin"].read_bytes()
    assert [e.url for e in DiskCache(tmp_path / "xdg" / "kithara-io").entries()] == [url]
    monkeypatch.setattr(store, "_default", None)
    (tmp_path / "blocked").write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
    with caplog.at_level("WARNING", logger="kithara_io"):
        assert read_all(url, "disk") == media["small.bin"].read_bytes()
    assert any("user cache directory" in r.getMessage() for r in caplog.records)


def test_bytes_vanishing_under_a_disk_read_are_a_transient_error(tmp_path):
    """Between the check that a range is held and its read, another process can take the
    entry over (two processes pinning one URL at once: seen once under load in
    test_two_processes_streaming_one_url_share_the_cache). The read must then fail
    transiently (retried, the bytes then come from the network), never as 'fetch failed
    unexpectedly'. The entry's own refusal (ValueError: not all present) is what it raises."""
    from kithara_io.disk import DiskCache, Validators
    from kithara_io.errors import ConnectionFailedError
    from kithara_io.retry import Retry
    from kithara_io.sources.cached import DiskBody

    url = "http://127.0.0.1:9/x.bin"
    with DiskCache(tmp_path).open_entry(url) as entry:
        entry.reset(Validators(1000, '"v1"'))
        entry.write(0, b"x" * 500)
        entry.commit()
        body = DiskBody(entry, url, 0, 1000, 1000)  # as if [0, 1000) had been found held
        with pytest.raises(ConnectionFailedError, match="changed while being read") as info:
            body.readinto(memoryview(bytearray(1000)))
        assert Retry().is_transient(info.value) and isinstance(info.value.cause, ValueError)
