"""Two processes opening one URL on an empty disk cache entry at once (issue #23): the index
never loses committed ranges of the version the server still serves.

Two ``CacheEntry`` objects on one directory stand for two processes: each takes its own
``filelock`` (an flock on its own open file), so they exclude each other as processes do.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, List, Optional

import pytest

from kithara_io.disk import CacheEntry, DiskCache
from kithara_io.disk import entry as entry_module
from kithara_io.reading.ranges import RangeSet
from kithara_io.sources.base import Body
from kithara_io.sources.cached import DiskCachedSource
from kithara_io.sources.http import HttpSource
from tests.disk_cache_worker import reference, version
from tests.test_disk_cache import assert_matches, data_files

URL = "https://example.org/song.flac"
V1 = version(1)
KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    return DiskCache(tmp_path / "cache")


def on_disk(cache: DiskCache, url: str) -> RangeSet:
    """What the index holds now, as a fresh opener sees it."""
    with cache.open_entry(url) as entry:
        return entry.present()


# -- the storage layer -----------------------------------------------------------------------


def test_a_reset_after_a_refresh_joined_the_same_version_keeps_its_ranges(cache: DiskCache) -> None:
    """The issue's sequence, one step after the other: A saw no validators, a refresh then
    attached A to B's generation, and A's reset comes with the validators B pinned."""
    data = reference(1)
    with cache.open_entry(URL) as a, cache.open_entry(URL) as b:
        assert a.validators() is None  # what A's tail probe saw before deciding to reset
        b.reset(V1)
        b.write(0, data[:1000])
        b.commit()
        assert a.refresh() == RangeSet([(0, 1000)])  # A's first fetch follows B
        a.reset(V1)
        assert a.present() == RangeSet([(0, 1000)])
        a.write(2000, data[2000:3000])
        a.commit()
        b.write(4000, data[4000:5000])  # B keeps caching: not stale
        b.commit()
        assert not a.stale and not b.stale
        assert len(data_files(a.directory)) == 1
    assert on_disk(cache, URL) == RangeSet([(0, 1000), (2000, 3000), (4000, 5000)])


def test_a_reset_to_the_version_already_pinned_keeps_what_is_written(cache: DiskCache) -> None:
    data = reference(1)
    with cache.open_entry(URL) as a:
        a.reset(V1)
        a.write(0, data[:100])
        a.commit()
        a.write(100, data[100:200])  # written, not yet committed
        a.reset(V1)
        assert a.present() == RangeSet([(0, 100)])
        a.commit()
        assert a.present() == RangeSet([(0, 200)])
        assert_matches(a, data)


def test_new_version_starts_afresh_even_with_equal_validators(cache: DiskCache) -> None:
    """A resource without ETag or date rewritten whole (an HLS playlist of the same length)."""
    with cache.open_entry(URL) as a, cache.open_entry(URL) as b:
        a.reset(V1)
        a.write(0, reference(1)[:100])
        a.commit()
        old = data_files(a.directory)
        b.reset(V1, new_version=True)
        assert not b.present() and data_files(b.directory) != old
        a.write(100, reference(1)[100:200])
        a.commit()
        assert a.stale
    assert on_disk(cache, URL) == RangeSet()


# -- the same race through DiskCachedSource ---------------------------------------------------


def drain(body: Body) -> bytes:
    out = bytearray()
    buf = memoryview(bytearray(64 * KiB))
    try:
        for _ in range(10_000):  # bounded: 640 MiB
            n = body.readinto(buf)
            if not n:
                break
            out += buf[:n]
    finally:
        body.close()
    return bytes(out)


def cached_source(entry: CacheEntry) -> DiskCachedSource:
    return DiskCachedSource(HttpSource(entry.url), entry)


def test_a_tail_probe_racing_the_first_fetch_joins_the_other_process(
    ranged_server, media, cache, monkeypatch, no_leaks
) -> None:
    """The exact interleaving of the issue. B pinned and committed the head. A's first fetch
    finds nothing and refreshes; that refresh is held inside the entry's filelock (as if
    waiting for B's commit) until A's tail probe has answered and, having seen no validators
    yet, called ``reset``. The refresh then attaches A to B's generation and the reset runs
    after it. Before the fix the reset started a new, empty generation: B's head was gone and
    B's later commits were dropped (stale)."""
    data = media["random.bin"].read_bytes()
    url = ranged_server.url("random.bin")
    b = cached_source(cache.open_entry(url))
    entry_a = cache.open_entry(url)
    a = cached_source(entry_a)
    try:
        assert drain(b.fetch(0, 64 * KiB)) == data[: 64 * KiB]

        fetcher: List[threading.Thread] = []
        paused, reset_called = threading.Event(), threading.Event()
        real_read_trusted = entry_module.read_trusted

        def read_trusted(directory: Path, key: str):  # refresh's read, under the filelock
            if fetcher and threading.current_thread() is fetcher[0] and not paused.is_set():
                paused.set()
                assert reset_called.wait(30), "the tail probe never reset the entry"
            return real_read_trusted(directory, key)

        monkeypatch.setattr(entry_module, "read_trusted", read_trusted)
        real_reset: Callable[..., None] = entry_a.reset

        def reset(*args, **kwargs) -> None:
            reset_called.set()
            real_reset(*args, **kwargs)

        monkeypatch.setattr(entry_a, "reset", reset)
        got: List[Optional[bytes]] = [None]
        failures: List[BaseException] = []

        def first_fetch() -> None:
            try:
                got[0] = drain(a.fetch(MiB, MiB + 64 * KiB))
            except BaseException as exc:  # reported by the test thread
                failures.append(exc)

        fetcher.append(threading.Thread(target=first_fetch))
        fetcher[0].start()
        assert paused.wait(30)
        tail = a.fetch_suffix(64 * KiB)
        assert tail is not None and reset_called.is_set()
        assert drain(tail) == data[-64 * KiB :]
        fetcher[0].join(30)
        assert not fetcher[0].is_alive() and not failures, failures
        assert got[0] == data[MiB : MiB + 64 * KiB]

        assert a.holds(0)  # A reads B's head from disk
        assert drain(b.fetch(2 * MiB, 2 * MiB + 64 * KiB)) == data[2 * MiB : 2 * MiB + 64 * KiB]
        expected = RangeSet([(0, 64 * KiB), (MiB, MiB + 64 * KiB), (2 * MiB, 2 * MiB + 64 * KiB)])
        expected.add(len(data) - 64 * KiB, len(data))
        with cache.open_entry(url) as entry:
            assert entry.present() == expected
            assert_matches(entry, data)
            assert len(data_files(entry.directory)) == 1
    finally:
        a.close()
        b.close()
