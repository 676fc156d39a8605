"""DiskCache: round trips, versions, corrupt indexes, stray files, LRU eviction, other
processes (concurrent commits, entries held open, SIGKILL at random points) and the CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from kithara_io.cli.main import main
from kithara_io.disk import CacheEntry, DiskCache, EntryInfo, Validators, plan_eviction
from kithara_io.disk.files import INDEX_NAME, INUSE_NAME, TMP_PREFIX
from kithara_io.reading.ranges import RangeSet
from tests.disk_cache_worker import SIZE, reference, version, version_number

REPO = Path(__file__).resolve().parent.parent
URL = "https://example.org/song.flac"
V1 = version(1)


@pytest.fixture
def cache(tmp_path: Path) -> DiskCache:
    return DiskCache(tmp_path / "cache")


def worker(*args: object, **popen: Any) -> subprocess.Popen:
    """``python -m tests.disk_cache_worker ARGS`` with text pipes for stdin, stdout and
    stderr, unless ``popen`` (``subprocess.Popen`` keywords) says otherwise."""
    options: Dict[str, Any] = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.disk_cache_worker", *map(str, args)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        **{**options, **popen},
    )


def expect_line(proc: subprocess.Popen, expected: str) -> None:
    line = proc.stdout.readline()
    assert line.strip() == expected, proc.stderr.read() if not line else line


def read(entry: CacheEntry, pos: int, n: int) -> bytes:
    out = bytearray(n)
    assert entry.read_into(pos, memoryview(out)) == n
    return bytes(out)


def assert_matches(entry: CacheEntry, data: bytes) -> None:
    """Every present byte equals ``data``."""
    for start, end in entry.present():
        assert read(entry, start, end - start) == data[start:end], (start, end)


def data_files(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("data."))


def commit_prefix(cache: DiskCache, url: str, size: int, present: int, last_used: float = 0.0) -> Path:
    """An entry of ``size`` bytes whose first ``present`` are committed, last used at
    ``last_used`` (unless 0); returns its directory."""
    with cache.open_entry(url) as entry:
        entry.reset(Validators(size, "e"))
        entry.write(0, bytes(present))
    if last_used:
        os.utime(entry.directory / INUSE_NAME, (last_used, last_used))
    return entry.directory


def random_ranges(rng: random.Random, count: int, longest: int) -> List[Tuple[int, int]]:
    starts = [rng.randrange(SIZE) for _ in range(count)]
    return [(s, min(SIZE, s + rng.randint(1, longest))) for s in starts]


# -- one process -----------------------------------------------------------------------------


def test_random_writes_survive_a_reopen(cache: DiskCache) -> None:
    data, model = reference(1), RangeSet()
    with cache.open_entry(URL) as entry:
        assert entry.validators() is None and not entry.present()
        entry.reset(V1)
        for i, (start, end) in enumerate(random_ranges(random.Random(7), 62, 4096)):
            entry.write(start, data[start:end])
            model.add(start, end)
            if i % 5 == 4:
                entry.commit()
                assert entry.present() == model
        assert entry.present() != model  # the last two wait for close
    with cache.open_entry(URL) as entry:
        assert entry.validators() == V1
        assert entry.present() == model
        assert_matches(entry, data)
        for start, end in model.gaps(0, SIZE):
            with pytest.raises(ValueError, match="not all in the disk cache"):
                entry.read_into(start, memoryview(bytearray(end - start)))


def test_read_into_refuses_bytes_that_are_not_committed(cache: DiskCache) -> None:
    data = reference(1)
    with cache.open_entry(URL) as entry:
        with pytest.raises(ValueError):
            entry.read_into(0, memoryview(bytearray(1)))  # nothing pinned yet
        entry.reset(V1)
        entry.write(0, data[:100])
        entry.commit()
        entry.write(100, data[100:200])  # written, not committed
        assert read(entry, 0, 100) == data[:100]
        for pos, n in [(50, 100), (100, 1), (-1, 2), (150, 10), (SIZE - 1, 2)]:
            with pytest.raises(ValueError):
                entry.read_into(pos, memoryview(bytearray(n)))
        assert entry.read_into(500, memoryview(bytearray(0))) == 0


def test_write_needs_pinned_validators_and_stays_inside_the_resource(cache: DiskCache) -> None:
    with cache.open_entry(URL) as entry:
        with pytest.raises(ValueError, match="reset"):
            entry.write(0, b"x")
        entry.reset(Validators(10, "e"))
        for pos, data in [(-1, b"x"), (5, b"123456"), (10, b"x")]:
            with pytest.raises(ValueError, match="outside"):
                entry.write(pos, data)
        entry.write(10, b"")
        assert not entry.present()
    assert entry.closed
    with pytest.raises(ValueError, match="closed"):
        entry.write(0, b"x")
    entry.close()  # idempotent


def test_uncommitted_writes_are_not_present_after_a_crash(cache: DiskCache) -> None:
    proc = worker("uncommitted", cache.path, URL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip() == "written", err
    with cache.open_entry(URL) as entry:
        assert entry.present() == RangeSet([(0, 100)])
        assert_matches(entry, reference(1))


def test_reset_drops_the_old_version(cache: DiskCache) -> None:
    data = reference(1)
    with cache.open_entry(URL) as entry:
        entry.reset(V1)
        entry.write(0, data[:1000])
        entry.commit()
        old = data_files(entry.directory)
        v2 = Validators(500, "v2", "Wed, 25 Nov 2026 10:00:00 GMT")
        entry.reset(v2)
        assert entry.validators() == v2 and not entry.present()
        with pytest.raises(ValueError):
            entry.read_into(0, memoryview(bytearray(10)))
        new = data_files(entry.directory)
        assert len(new) == 1 and new != old
        assert os.path.getsize(entry.directory / new[0]) == 500
        entry.write(0, b"x" * 10)
        entry.commit()
        entry.reset(v2)  # the same validators again: the same version, kept
        assert entry.present() == RangeSet([(0, 10)]) and data_files(entry.directory) == new
        entry.reset(v2, new_version=True)  # unless the caller knows better
        assert not entry.present() and data_files(entry.directory) != new
    with cache.open_entry(URL) as entry:
        assert entry.validators() == v2 and not entry.present()


def test_a_weak_etag_turning_strong_keeps_the_version(cache: DiskCache) -> None:
    """Apache tags a file changed within the last second weak, the same tag strong a second
    later: an entry pinned to either is the same version (RFC 9110's weak comparison)."""
    modified = "Wed, 25 Nov 2026 10:00:00 GMT"
    with cache.open_entry(URL) as entry:
        entry.reset(Validators(500, 'W/"x"', modified))
        entry.write(0, b"y" * 100)
        entry.commit()
        entry.reset(Validators(500, '"x"', modified))
        assert entry.present() == RangeSet([(0, 100)])
        entry.reset(Validators(500, 'W/"z"', modified))
        assert not entry.present()


def test_the_key_function_maps_signed_urls_to_one_entry(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, key=lambda url: url.split("?")[0])
    with cache.open_entry(URL + "?sig=1") as entry:
        entry.reset(V1)
        entry.write(0, reference(1)[:10])
    with cache.open_entry(URL + "?sig=2") as entry:
        assert entry.url == URL + "?sig=2"
        assert entry.present() == RangeSet([(0, 10)])
    [info] = cache.entries()
    assert info.key == URL and info.path == cache.entry_path(URL + "?other")
    assert info.path.name == hashlib.sha256(URL.encode()).hexdigest()


def test_the_default_root_is_the_user_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert DiskCache().path == tmp_path / "kithara-io"


def test_threads_write_disjoint_ranges_while_a_reader_reads(cache: DiskCache) -> None:
    data, chunk, writers = reference(1), 1024, 4
    failures: List[BaseException] = []
    done = threading.Event()
    with cache.open_entry(URL) as entry:
        entry.reset(V1)

        def fetch(k: int) -> None:
            for pos in range(k * chunk, SIZE, writers * chunk):
                entry.write(pos, data[pos : pos + chunk])
                if pos % (3 * chunk) == 0:
                    entry.commit()

        def reader() -> None:
            try:
                for _ in range(100_000):  # bounded; ends when the writers are done
                    assert_matches(entry, data)
                    if done.is_set():
                        return
            except BaseException as exc:  # reported by the test thread
                failures.append(exc)

        threads = [threading.Thread(target=fetch, args=(k,)) for k in range(writers)]
        checker = threading.Thread(target=reader)
        for thread in [checker, *threads]:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        done.set()
        checker.join(timeout=30)
        assert not failures
        entry.commit()
        assert entry.present() == RangeSet([(0, SIZE)])
        assert read(entry, 0, SIZE) == data


# -- other users of the same entry -----------------------------------------------------------


def test_commits_merge_what_another_user_committed(cache: DiskCache) -> None:
    data = reference(1)
    with cache.open_entry(URL) as one, cache.open_entry(URL) as two:
        one.reset(V1)
        assert two.refresh() == RangeSet() and two.validators() == V1  # nothing pinned: it follows
        one.write(0, data[:100])
        one.commit()
        two.write(200, data[200:300])
        two.commit()
        assert two.present() == RangeSet([(0, 100), (200, 300)])
        assert one.refresh() == two.present()
        assert_matches(one, data)


def test_resetting_to_validators_another_user_just_pinned_keeps_its_ranges(cache: DiskCache) -> None:
    with cache.open_entry(URL) as one, cache.open_entry(URL) as two:
        one.reset(V1)
        one.write(0, reference(1)[:100])
        one.commit()
        assert two.validators() is None
        two.reset(V1)  # both saw an empty entry and pinned the same version
        assert two.present() == RangeSet([(0, 100)])
        assert_matches(two, reference(1))


def test_a_later_reset_wins_and_stale_ranges_are_not_mixed_in(cache: DiskCache) -> None:
    d1, d2 = reference(1), reference(2)
    with cache.open_entry(URL) as one, cache.open_entry(URL) as two:
        one.reset(V1)
        one.write(0, d1[:1000])
        one.commit()
        two.refresh()
        two.reset(version(2))  # the resource changed
        two.write(2000, d2[2000:3000])
        one.write(1000, d1[1000:2000])  # still version 1
        two.commit()
        one.commit()
        assert one.stale and not two.stale
        assert one.validators() == V1 and one.refresh() == RangeSet([(0, 1000)])
        assert read(one, 0, 1000) == d1[:1000]  # its own version stays readable
        one.reset(version(2))  # and it can follow the new one
        assert not one.stale and one.present() == RangeSet([(2000, 3000)])
    with cache.open_entry(URL) as entry:
        assert entry.validators() == version(2)
        assert entry.present() == RangeSet([(2000, 3000)])
        assert_matches(entry, d2)


def test_two_processes_committing_to_one_url_end_with_the_union(cache: DiskCache) -> None:
    rng = random.Random(3)
    first = random_ranges(rng, 40, 3000)
    second = random_ranges(rng, 40, 3000) + first[:10]  # some identical, some overlapping
    procs = [worker("write", cache.path, URL, ",".join(f"{s}:{e}" for s, e in r)) for r in (first, second)]
    for proc in procs:
        expect_line(proc, "ready")
    for proc in procs:  # both start committing together
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out.strip() == "done", err
    with cache.open_entry(URL) as entry:
        assert entry.validators() == V1
        assert entry.present() == RangeSet(first + second)
        assert_matches(entry, reference(1))


def test_sigkill_at_random_points_leaves_only_correct_bytes(
    cache: DiskCache, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(2026)
    directory = cache.entry_path(URL)
    checked = 0
    for iteration in range(20):
        proc = worker("churn", cache.path, URL, iteration)
        try:
            seen = [time.monotonic() for _ in range(rng.randint(2, 10)) if proc.stdout.readline()]
            assert len(seen) >= 2, proc.stderr.read()
            cycle = (seen[-1] - seen[0]) / (len(seen) - 1)
            time.sleep(rng.random() * 1.5 * cycle)  # a random point in the next cycle or two
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        with caplog.at_level(logging.WARNING, logger="kithara_io"):
            with cache.open_entry(URL) as entry:
                validators = entry.validators()
                assert validators is not None  # pinned before the first cycle was reported
                assert_matches(entry, reference(version_number(validators)))
                checked += entry.present().total
                names = [p.name for p in directory.iterdir()]
                assert not [n for n in names if n.startswith(TMP_PREFIX)]
                assert len(data_files(directory)) == 1
        assert not caplog.records, caplog.text  # never a torn or inconsistent index
    assert checked > 20 * 4096
    assert cache.clear() == 1 and list(cache.path.iterdir()) == []


# -- corrupt indexes and stray files ---------------------------------------------------------


def _edit(directory: Path, change: Callable[[dict], None], resign: bool = True) -> None:
    """Change the index body; re-sign it (a valid checksum) unless told not to."""
    path = directory / INDEX_NAME
    doc = json.loads(path.read_bytes())
    change(doc["body"])
    if resign:
        canonical = json.dumps(doc["body"], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        doc["sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    path.write_text(json.dumps(doc))


CORRUPTIONS: Dict[str, Callable[[Path], None]] = {
    "truncated": lambda d: (d / INDEX_NAME).write_bytes((d / INDEX_NAME).read_bytes()[:40]),
    "empty": lambda d: (d / INDEX_NAME).write_bytes(b""),
    "garbage": lambda d: (d / INDEX_NAME).write_bytes(b"\x00\xffnot json at all"),
    "wrong checksum": lambda d: _edit(d, lambda b: b.update(ranges=[[0, 100]]), resign=False),
    "wrong version": lambda d: _edit(d, lambda b: b.update(format=2)),
    "other key": lambda d: _edit(d, lambda b: b.update(key="https://elsewhere/")),
    "range past the end": lambda d: _edit(d, lambda b: b.update(ranges=[[0, 2000]])),
    "unsorted ranges": lambda d: _edit(d, lambda b: b.update(ranges=[[500, 600], [0, 100]])),
    "path in generation": lambda d: _edit(d, lambda b: b.update(generation="../../etc/x")),
    "data file missing": lambda d: [os.unlink(d / n) for n in data_files(d)],
    "data file truncated": lambda d: [os.truncate(d / n, 10) for n in data_files(d)],
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_index_is_discarded_with_a_warning(
    cache: DiskCache, caplog: pytest.LogCaptureFixture, corruption: str
) -> None:
    directory = commit_prefix(cache, URL, 1000, 500)
    CORRUPTIONS[corruption](directory)
    with caplog.at_level(logging.WARNING, logger="kithara_io"):
        with cache.open_entry(URL) as entry:
            assert entry.validators() is None and not entry.present()
            assert data_files(directory) == []
    assert len(caplog.records) == 1 and str(directory / INDEX_NAME) in caplog.text
    caplog.clear()
    with cache.open_entry(URL) as entry:  # the fresh index is sound
        entry.reset(V1)
    assert not caplog.records


def test_stray_temporary_and_data_files_are_removed_on_open(cache: DiskCache) -> None:
    directory = commit_prefix(cache, URL, 1000, 500)
    [data] = data_files(directory)
    (directory / f"{TMP_PREFIX}12345.deadbeef").write_bytes(b'{"body": {"form')
    (directory / "data.0123456789abcdef").write_bytes(b"a version nobody indexes")
    with cache.open_entry(URL) as entry:
        assert sorted(p.name for p in directory.iterdir()) == sorted([INDEX_NAME, INUSE_NAME, "lock", data])
        assert entry.present() == RangeSet([(0, 500)])


def test_clear_removes_trash_and_the_temporary_files_of_entries_in_use(cache: DiskCache) -> None:
    trash = cache.path / ".trash-abc-1-2"
    (trash / "x").mkdir(parents=True)
    with cache.open_entry(URL) as entry:
        tmp = entry.directory / f"{TMP_PREFIX}1.2"
        tmp.write_bytes(b"")
        assert cache.clear() == 0
        assert not tmp.exists() and not trash.exists() and entry.directory.exists()
    assert cache.clear() == 1 and list(cache.path.iterdir()) == []


# -- eviction --------------------------------------------------------------------------------


def _info(url: str, size: int, last_used: float, in_use: bool = False) -> EntryInfo:
    return EntryInfo(url, url, Path(url), size, size, True, last_used, None, None, in_use)


def test_plan_eviction_is_least_recently_used_first_and_skips_entries_in_use() -> None:
    entries = [_info("new", 50, 3.0), _info("old", 50, 1.0, in_use=True), _info("mid", 50, 2.0)]
    assert [e.url for e in plan_eviction(entries, 100)] == ["mid"]
    assert [e.url for e in plan_eviction(entries, 0)] == ["mid", "new"]  # falls short: "old" is open
    assert plan_eviction(entries, 150) == []
    assert [e.url for e in plan_eviction(entries, 150, keep=1)] == ["mid"]


def test_evict_removes_least_recently_used_entries_until_within_budget(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=10_000)
    for i, url in enumerate("abcd"):
        commit_prefix(cache, url, 4000, 1000 * (i + 1), last_used=1000.0 + i)
    os.utime(cache.entry_path("a") / INUSE_NAME, (2000.0, 2000.0))  # "a" was used last
    assert cache.total_bytes() == 10_000
    cache.max_bytes = 6000
    assert cache.evict() == ["b", "c"]
    assert cache.total_bytes() == 5000
    assert cache.evict(keep=1000) == []
    assert cache.evict(keep=2000) == ["d"]
    assert [e.url for e in cache.entries()] == ["a"]


def test_closing_an_entry_evicts_when_over_budget(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=2500)
    commit_prefix(cache, "a", 1000, 1000, last_used=1000.0)
    commit_prefix(cache, "b", 1000, 1000, last_used=1001.0)
    commit_prefix(cache, "c", 1000, 1000)  # its close finds 3000 bytes
    assert sorted(e.url for e in cache.entries()) == ["b", "c"]


def test_an_entry_open_here_is_never_evicted(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    commit_prefix(cache, "a", 1000, 1000, last_used=1000.0)
    commit_prefix(cache, "b", 1000, 1000, last_used=1001.0)
    cache.max_bytes = 0
    with cache.open_entry("a"):
        assert cache.evict() == ["b"]
        [info] = cache.entries()
        assert info.url == "a" and info.in_use
    assert cache.entries() == []  # evicted by its own close


def test_an_entry_open_in_another_process_is_neither_evicted_nor_cleared(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    commit_prefix(cache, "a", 1000, 1000, last_used=1000.0)
    commit_prefix(cache, "b", 1000, 1000, last_used=1001.0)
    proc = worker("hold", cache.path, "a")
    try:
        expect_line(proc, "ready")
        in_use = {e.url: e.in_use for e in cache.entries()}
        assert in_use == {"a": True, "b": False}
        cache.max_bytes = 0
        assert cache.evict() == ["b"]
        assert cache.clear() == 0
        assert [e.url for e in cache.entries()] == ["a"]
    finally:
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
    assert cache.clear() == 1


# -- command line ----------------------------------------------------------------------------


def test_cli_ls_size_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cache = DiskCache(tmp_path)
    commit_prefix(cache, "https://a/x.flac", 1000, 1000, last_used=2000.0)
    commit_prefix(cache, "https://b/y.flac", 2048, 500, last_used=1000.0)
    where = ["--cache-dir", str(tmp_path)]

    assert main(["cache", "ls", *where]) == 0
    first, second = capsys.readouterr().out.splitlines()  # most recently used first
    day = time.strftime("%Y-%m-%d", time.localtime(2000))
    assert first.split()[:7] == ["1000", "B", "/", "1000", "B", "complete", day]
    assert first.endswith("  https://a/x.flac")
    assert second.split()[:6] == ["500", "B", "/", "2.0", "KiB", "partial"] and second.endswith("https://b/y.flac")

    assert main(["cache", "ls", "--json", *where]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["url"], e["size"], e["bytes_present"], e["complete"], e["in_use"]) for e in listed] == [
        ("https://a/x.flac", 1000, 1000, True, False),
        ("https://b/y.flac", 2048, 500, False, False),
    ]
    assert listed[0]["last_used"] == 2000.0 and listed[0]["etag"] == "e"

    assert main(["cache", "size", *where]) == 0
    assert capsys.readouterr().out.startswith("1.5 KiB (1500 bytes) in 2 entries")

    with cache.open_entry("https://a/x.flac"):
        assert main(["cache", "clear", *where]) == 0
        assert capsys.readouterr().out == "removed 1 entry; 1 in use kept\n"
        assert main(["cache", "ls", *where]) == 0
        assert capsys.readouterr().out.rstrip().endswith("https://a/x.flac  [in use]")
    assert main(["cache", "clear", *where]) == 0
    assert capsys.readouterr().out == "removed 1 entry\n"
    assert main(["cache", "size", *where]) == 0
    assert capsys.readouterr().out.startswith("0 B (0 bytes) in 0 entries")


def test_cli_cache_uses_the_user_cache_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["cache", "size"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(str(tmp_path / "kithara-io"))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["cache"], "required"),
        (["cache", "list"], "invalid choice"),
        (["cache", "size", "--json"], "unrecognized arguments"),
        (["cache", "ls", "--cache-dir", "{file}"], "is not a directory"),
    ],
)
def test_cli_cache_errors_are_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: List[str], fragment: str
) -> None:
    (tmp_path / "file").write_text("x")
    assert main([a.format(file=tmp_path / "file") for a in args]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("kithara-io: error: ") and fragment in err
