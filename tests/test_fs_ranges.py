"""KitharaFileSystem's byte ranges and fsspec's keywords: cat_file of a body without a
length, cat_ranges with numpy arrays and max_gap, exists(strict=), open(size=...) and
fsspec's caching filesystems (blockcache::, simplecache::, filecache::) over kithara::."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec")

import kithara_io  # noqa: E402
from kithara_io.fs import KitharaFileSystem  # noqa: E402
from tests.servers.faults import Chunked, IgnoreRange, NoContentLength  # noqa: E402

SLICES = [(None, None), (0, 10), (1, 10), (5000, None), (-10, None), (-5000, -10), (None, -10), (None, 77),
          (10, 5), (70_000, 10**9), (10**9, None)]


def _fs(**options) -> KitharaFileSystem:
    return KitharaFileSystem(skip_instance_cache=True, retry=kithara_io.Retry(attempts=1), **options)


# -- cat_file of a 200 without a length -------------------------------------------------------


@pytest.mark.parametrize("framing", [Chunked(), NoContentLength()], ids=["chunked", "close-delimited"])
def test_cat_file_of_a_body_without_a_length(fault_server, framing, no_leaks):
    """A server without ranges that sends no length (nginx with sub_filter or gzip, PHP,
    Flask streaming): cat_file and cat give the bytes open().read() gives, for every slice."""
    data = os.urandom(150_000)
    url = fault_server.add("/page.bin", data)
    fault_server.always("/page.bin", (IgnoreRange(), framing))
    fs = _fs()
    with fs.open(url) as f:
        assert f.read() == data
    assert fs.cat(url) == data
    for start, end in SLICES:
        assert fs.cat_file(url, start, end) == data[start:end], (start, end)
    starts, ends = zip(*SLICES)
    assert fs.cat_ranges([url] * len(SLICES), list(starts), list(ends)) == [data[s:e] for s, e in SLICES]


@pytest.mark.timeout(30)
def test_a_range_of_a_body_without_a_length_needs_only_its_bytes(fault_server, no_leaks):
    """The body stops after 100 kB and never ends: ranges before that point are read
    without waiting for the end (which would hang until the test's timeout)."""
    from tests.servers.faults import StallForever

    data = os.urandom(300_000)
    url = fault_server.add("/slow.bin", data)
    fault_server.always("/slow.bin", (IgnoreRange(), Chunked(), StallForever(after_bytes=100_000)))
    fs = _fs()
    assert fs.cat_file(url, 0, 50_000) == data[:50_000]
    assert fs.cat_file(url, 1000, 60_000) == data[1000:60_000]
    assert fs.cat_ranges([url, url], [10, 70_000], [20, 99_000]) == [data[10:20], data[70_000:99_000]]


# -- cat_ranges: numpy, negative starts, max_gap -------------------------------------------------


def test_cat_ranges_takes_numpy_arrays_and_integers(media, nginx_server, no_leaks):
    """Dask and pandas pass numpy arrays and numpy integers: same bytes as with lists."""
    local = media["random.bin"].read_bytes()
    url = nginx_server.url("random.bin")
    fs = _fs()
    starts = np.array([1, 5, 100_000, -1000, 0], dtype=np.int64)
    ends = np.array([10, 15, 250_000, -10, 1], dtype=np.int64)
    expected = [local[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    assert fs.cat_ranges([url] * 5, starts, ends) == expected
    assert fs.cat_ranges([url] * 5, starts.tolist(), ends.tolist()) == expected
    assert fs.cat_ranges((url,) * 5, starts.astype(np.int32), ends.astype(np.int32)) == expected
    assert fs.cat_ranges([url, url], np.int64(-100), None) == [local[-100:]] * 2
    assert fs.cat_ranges([url] * 2, [np.int16(3), None], np.array([7, 9])) == [local[3:7], local[:9]]
    assert fs.cat_file(url, np.int8(1), np.int8(10)) == local[1:10]
    assert fs.cat(url, start=np.uint16(7), end=np.int64(-3)) == local[7:-3]
    with pytest.raises(ValueError, match="3 starts for 2 paths"):
        fs.cat_ranges([url, url], np.array([1, 2, 3]), 5)
    with pytest.raises(TypeError, match="starts"):
        fs.cat_ranges([url], [1.5], [3])


@pytest.mark.timeout(60)
def test_max_gap_merges_nearby_ranges_into_one_request(make_ranged_server, media, no_leaks):
    """100 ranges of 1000 bytes every 50 kB: one request per range without max_gap; with
    max_gap=64000 (what fsspec's parquet reader passes) a handful, and the same bytes."""
    srv = make_ranged_server()
    url = srv.url("random.bin")
    local = media["random.bin"].read_bytes()
    starts = [i * 50_000 for i in range(100)]
    ends = [s + 1000 for s in starts]
    expected = [local[s:e] for s, e in zip(starts, ends)]
    fs = _fs()
    srv.reset_log()
    assert fs.cat_ranges([url] * 100, starts, ends) == expected
    separate = [r for r in srv.requests if r.method == "GET"]
    srv.reset_log()
    assert fs.cat_ranges([url] * 100, np.array(starts), np.array(ends), max_gap=64_000) == expected
    merged = [r for r in srv.requests if r.method == "GET"]
    assert len(separate) >= 100
    assert len(merged) <= 2, [r.range for r in merged]
    # only the gaps between the ranges are read besides them: no read-ahead past the last
    assert sum(r.bytes_sent for r in merged) <= ends[-1] + 1


@pytest.mark.parametrize("name", ["tone.wav", "random.bin"])  # under and over 1 MiB (HLS sniffing)
def test_a_range_costs_its_bytes_and_a_probe(make_ranged_server, media, name, no_leaks):
    """cat_file of a range: a 16-byte first request (the length) and the range as one
    request, no read-ahead; info: the probe alone."""
    srv = make_ranged_server()
    url = srv.url(name)
    local = media[name].read_bytes()
    fs = _fs()
    srv.reset_log()
    assert fs.cat_file(url, 300_000, 400_000) == local[300_000:400_000]
    assert [(r.range, r.bytes_sent) for r in srv.requests] == [("bytes=0-15", 16), ("bytes=300000-399999", 100_000)]
    srv.reset_log()
    assert fs.info(url)["size"] == len(local)
    assert [(r.range, r.bytes_sent) for r in srv.requests] == [("bytes=0-15", 16)]


def test_touching_ranges_are_one_request_by_default(make_ranged_server, media, no_leaks):
    """max_gap=None merges ranges that touch or overlap (fsspec's merge_offset_ranges
    default, 0): never a byte nobody asked for."""
    srv = make_ranged_server()
    url = srv.url("random.bin")
    local = media["random.bin"].read_bytes()
    starts = [300_000 + i * 1000 for i in range(50)] + [300_500]
    ends = [s + 1000 for s in starts[:-1]] + [302_000]
    srv.reset_log()
    assert _fs().cat_ranges([url] * 51, starts, ends) == [local[s:e] for s, e in zip(starts, ends)]
    gets = [r for r in srv.requests if r.method == "GET"]
    assert [r.range for r in gets] == ["bytes=0-15", "bytes=300000-349999"]


def test_ranges_of_mixed_lengths_fetch_each_byte_once(make_ranged_server, media, no_leaks):
    """Ranges of 1 kB to 2 MB, some touching or inside others: the bytes sent are those of
    the ranges (each once) and the 16-byte first requests; each block is one request."""
    srv = make_ranged_server()
    url = srv.url("random.bin")
    local = media["random.bin"].read_bytes()
    starts = [1000, 2_000_000, 4_000_000, 4_000_500, 5_000_000, 6_000_000, 100_000, 2_500_000]
    ends = [2000, 4_000_000, 4_000_500, 5_000_000, 5_001_000, 6_001_000, 101_000, 2_501_000]
    srv.reset_log()
    assert _fs().cat_ranges([url] * len(starts), starts, ends) == [local[s:e] for s, e in zip(starts, ends)]
    blocks = sorted(r.range for r in srv.requests if r.range != "bytes=0-15")
    assert blocks == ["bytes=1000-1999", "bytes=100000-100999", "bytes=2000000-5000999", "bytes=6000000-6000999"]
    probes = [r for r in srv.requests if r.range == "bytes=0-15"]
    assert sum(r.bytes_sent for r in srv.requests) == 3 * 1000 + 3_001_000 + 16 * len(probes)


def test_merged_blocks_stay_within_max_fetch(make_ranged_server, media, no_leaks):
    """A merged block is at most ``max_fetch`` long (the user's, when set): touching ranges
    over 800 kB are several requests of at most 256 KiB, read concurrently."""
    srv = make_ranged_server()
    url = srv.url("random.bin")
    local = media["random.bin"].read_bytes()
    starts = list(range(0, 800_000, 20_000))
    ends = [s + 20_000 for s in starts]
    srv.reset_log()
    assert _fs(max_fetch=256 << 10).cat_ranges([url] * 40, starts, ends) == [local[s:e] for s, e in zip(starts, ends)]
    sizes = [r.bytes_sent for r in srv.requests if r.method == "GET" and r.range != "bytes=0-15"]
    assert 4 <= len(sizes) <= 8 and max(sizes) <= 256 << 10, sizes
    assert sum(sizes) == 800_000


@pytest.mark.timeout(60)
def test_merged_ranges_in_any_order_split_back_exactly(media, nginx_server, no_leaks):
    """Random ranges of two URLs, unsorted, overlapping, nested, repeated, empty and from
    the end, for several max_gap values: each result equals the local slice."""
    names = ["random.bin", "tone.wav"]
    local = {nginx_server.url(n): media[n].read_bytes() for n in names}
    rng = random.Random(2312)
    paths, starts, ends = [], [], []
    for _ in range(120):
        url = rng.choice(list(local))
        size = len(local[url])
        start = rng.choice([rng.randrange(size), rng.randrange(0, 200_000), -rng.randrange(1, 50_000), None])
        near = None if start is None else start + rng.randrange(0, 30_000)
        end = rng.choice([near, rng.randrange(size + 100)])
        paths.append(url)
        starts.append(start)
        ends.append(end)
    paths.append(paths[0])  # a range given twice
    starts.append(starts[0])
    ends.append(ends[0])
    expected = [local[p][s:e] for p, s, e in zip(paths, starts, ends)]
    fs = _fs()
    for max_gap in (None, 0, 5000, 1 << 20):
        assert fs.cat_ranges(paths, starts, ends, max_gap=max_gap) == expected, max_gap
    with pytest.raises(ValueError, match="max_gap"):
        fs.cat_ranges(paths, starts, ends, max_gap=-1)


def test_a_failed_block_fails_each_of_its_ranges(media, nginx_server, no_leaks):
    fs = _fs()
    good, bad = nginx_server.url("small.bin"), nginx_server.url("missing.bin")
    out = fs.cat_ranges([bad, good, bad], [0, 0, 20], [10, 10, 30], max_gap=100)
    assert out[1] == media["small.bin"].read_bytes()[:10]
    assert all(isinstance(out[i], FileNotFoundError) and bad in str(out[i]) for i in (0, 2))


# -- fsspec's keywords -------------------------------------------------------------------------


def test_exists_strict_and_lenient(tmp_path, fault_server, no_leaks):
    from kithara_io.errors import HTTPStatusError
    from tests.servers.faults import Status

    url = fault_server.add("/locked.bin", b"x" * 100)
    fault_server.always("/locked.bin", Status(401))
    missing = fault_server.url("/nothing.bin")
    fs = _fs()
    assert not fs.exists(missing, strict=True) and not fs.exists(missing, strict=False)
    with pytest.raises(HTTPStatusError) as failure:
        fs.exists(url, strict=True)
    assert failure.value.status == 401 and url in str(failure.value)
    with pytest.raises(HTTPStatusError):
        fs.exists(url)  # kithara's default: strict, a 401 is not "missing"
    assert fs.exists(url, strict=False) is False  # fsspec http's default
    assert fs.exists(fault_server.add("/here.bin", b"y"), strict=True)


def test_open_accepts_fsspec_keywords(media, nginx_server, no_leaks):
    """HTTPFileSystem._open's keywords: size, block_size, cache_type, cache_options and
    autocommit are accepted; the result is the stream, its bytes equal."""
    local = media["small.bin"].read_bytes()
    url = nginx_server.url("small.bin")
    fs = _fs()
    with fs.open(url, "rb", size=len(local), block_size=4096, cache_type="readahead",
                 cache_options={"x": 1}, autocommit=True) as f:
        assert isinstance(f, kithara_io.Stream) and f.read() == local
    # HTTPFileSystem's own file options, given to the filesystem (as storage options)
    with fsspec.open("kithara::" + url, "rb", block_size=0, cache_type="bytes", cache_options={}) as g:
        assert isinstance(g, kithara_io.Stream) and g.read() == local
    assert fs.info(url, size=3)["size"] == len(local)


# -- fsspec's caching filesystems over kithara:: ---------------------------------------------------


@pytest.mark.parametrize("protocol", ["blockcache", "simplecache", "filecache"])
def test_fsspec_caches_chain_over_kithara(protocol, make_ranged_server, media, tmp_path, no_leaks):
    """``blockcache::kithara::URL`` and the whole-file caches read the file's bytes; a second
    read is served from their local copy, without a request."""
    srv = make_ranged_server()
    url = srv.url("tone.wav")
    local = media["tone.wav"].read_bytes()
    options = {protocol: {"cache_storage": str(tmp_path / "store")}}
    with fsspec.open(f"{protocol}::kithara::{url}", "rb", **options) as f:
        f.seek(1000)
        assert f.read(5000) == local[1000:6000]
        f.seek(-44, os.SEEK_END)
        assert f.read() == local[-44:]
        f.seek(0)
        assert f.read() == local
    srv.reset_log()
    with fsspec.open(f"{protocol}::kithara::{url}", "rb", **options) as f:
        assert f.read() == local
    assert [r for r in srv.requests if r.method == "GET"] == []
    cached = fsspec.filesystem(protocol, fs=_fs(), cache_storage=str(tmp_path / "second"), skip_instance_cache=True)
    with cached.open(url, "rb") as f:
        assert f.read() == local
    assert cached.cat_file(url, 5, 500) == local[5:500]


def test_blockcache_fetches_only_the_blocks_read(make_ranged_server, media, tmp_path, no_leaks):
    """blockcache asks the kithara file for whole blocks of its block size: reading two
    bytes far apart fetches two blocks, not the file."""
    srv = make_ranged_server()
    url = srv.url("random.bin")
    local = media["random.bin"].read_bytes()
    fs = fsspec.filesystem("blockcache", fs=_fs(), cache_storage=str(tmp_path), skip_instance_cache=True)
    srv.reset_log()
    with fs.open(url, "rb", block_size=1 << 16) as f:
        assert f.blocksize == 1 << 16
        f.seek(3 << 20)
        assert f.read(2) == local[3 << 20 : (3 << 20) + 2]
        f.seek(len(local) - 1)
        assert f.read() == local[-1:]
    sent = sum(r.bytes_sent for r in srv.requests)
    assert sent <= 3 << 16, [(r.range, r.bytes_sent) for r in srv.requests]


def test_blockcache_refuses_a_live_stream_naming_the_disk_cache(tmp_path, no_leaks):
    """A radio station has no length for fsspec's block cache to cut into blocks: refused,
    pointing to kithara-io's own options, and the station's stream closed."""
    import io

    from tests.servers.icy import IcyServer, Station

    with IcyServer() as radio:
        url = radio.add("/live.mp3", Station(payload=bytes(range(256)) * 256, metaint=None, rate=32_000))
        fs = fsspec.filesystem("blockcache", fs=_fs(), cache_storage=str(tmp_path), skip_instance_cache=True)
        with pytest.raises(io.UnsupportedOperation, match="cache='disk'") as failure:
            fs.open(url, "rb")
        assert url in str(failure.value)
        with _fs().open(url, "rb") as f:  # the stream itself still plays
            assert len(f.read(1000)) > 0
