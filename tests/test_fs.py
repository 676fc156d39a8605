"""KitharaFileSystem: fsspec's "kithara" protocol, reached by URL from fsspec, pandas, pyarrow,
xarray and soundfile, with bytes and samples equal to the local files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec")
pd = pytest.importorskip("pandas")

import kithara_io  # noqa: E402
from kithara_io import Downloader, StreamError  # noqa: E402
from kithara_io.disk import DiskCache  # noqa: E402
from kithara_io.fs import KitharaFileSystem  # noqa: E402
from kithara_io.reading.planning import Priority  # noqa: E402
from tests.servers import RangedServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV, a Parquet file and a netCDF-4 (HDF5) file of deterministic data."""
    directory = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(17)
    frame = pd.DataFrame(
        {"n": np.arange(5000), "x": rng.normal(size=5000), "label": [f"row{i % 37}" for i in range(5000)]}
    )
    frame.to_csv(directory / "table.csv", index=False)
    if _has("pyarrow"):
        frame.to_parquet(directory / "table.parquet", row_group_size=1000)
    if _has("xarray") and _has("h5netcdf"):
        import xarray as xr

        data = xr.Dataset(
            {"power": (("time", "band"), rng.normal(size=(400, 64)))},
            coords={"time": np.arange(400) * 0.01, "band": np.arange(64)},
        )
        data.to_netcdf(directory / "grid.nc", engine="h5netcdf")
    return directory


@pytest.fixture(scope="module")
def table_server(tables: Path) -> Iterator[RangedServer]:
    with RangedServer(tables) as srv:
        yield srv


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# -- a fresh process, without `import kithara_io` ------------------------------------------

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    assert "kithara_io" not in sys.modules
    import fsspec, numpy as np, pandas as pd, soundfile as sf
    assert "kithara_io" not in sys.modules
    cfg = json.loads(sys.argv[1])
    out = {}
    with fsspec.open("kithara::" + cfg["flac"], "rb") as f:
        out["class"] = type(f).__module__ + "." + type(f).__qualname__
        data, rate = sf.read(f)
    ref, ref_rate = sf.read(cfg["flac_local"])
    out["samples_equal"] = bool(rate == ref_rate and np.array_equal(data, ref))
    fs = fsspec.filesystem("kithara")
    out["info"] = fs.info(cfg["bin"])
    local = open(cfg["bin_local"], "rb").read()
    out["ranges_equal"] = all(
        fs.cat_file(cfg["bin"], s, e) == local[s:e] for s, e in cfg["ranges"]
    )
    frame = pd.read_csv("kithara::" + cfg["csv"], storage_options={"cache": "disk"})
    out["csv_equal"] = bool(frame.equals(pd.read_csv(cfg["csv_local"])))
    print(json.dumps(out))
    """
)


@pytest.mark.timeout(60)
def test_fresh_process_reaches_kithara_by_url(media, nginx_server, table_server, tables, tmp_path):
    """The entry point registers the protocol: no import of kithara_io is needed."""
    size = media["random.bin"].stat().st_size
    cfg = {
        "flac": nginx_server.url("tone.flac"),
        "flac_local": str(media["tone.flac"]),
        "bin": nginx_server.url("random.bin"),
        "bin_local": str(media["random.bin"]),
        "ranges": [[0, 100], [12345, 70000], [size - 1000, size], [3 << 20, (3 << 20) + 2_000_000]],
        "csv": table_server.url("table.csv"),
        "csv_local": str(tables / "table.csv"),
    }
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(cfg)],
        capture_output=True, text=True, timeout=50, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["class"] == "kithara_io.stream.Stream"
    assert out["samples_equal"]
    assert out["info"]["size"] == size and out["info"]["type"] == "file"
    assert out["info"]["ETag"] == _head(cfg["bin"])["ETag"]
    assert out["ranges_equal"]
    assert out["csv_equal"]
    # storage_options={"cache": "disk"} reached the stream: the user cache directory holds the CSV
    entries = DiskCache(tmp_path / "xdg" / "kithara-io").entries()
    held = [e for e in entries if e.url == cfg["csv"]]
    assert held and held[0].complete and held[0].size == (tables / "table.csv").stat().st_size


def _head(url: str) -> dict:
    import requests

    return dict(requests.head(url, timeout=10).headers)


# -- the filesystem in this process ---------------------------------------------------------


def test_open_is_the_stream_itself(media, nginx_server, no_leaks):
    url = nginx_server.url("tone.wav")
    with fsspec.open("kithara::" + url, "rb") as f:
        assert isinstance(f, kithara_io.Stream)
        assert f.read() == media["tone.wav"].read_bytes()
    assert f.closed
    fs = fsspec.filesystem("kithara")
    with fs.open(url) as g:  # a full URL as the path
        g.seek(-44, os.SEEK_END)
        assert g.read() == media["tone.wav"].read_bytes()[-44:]
    with fsspec.open("kithara://" + url, "rb") as h:  # also without fsspec's chaining
        assert h.size == media["tone.wav"].stat().st_size


def test_text_mode(table_server, tables, no_leaks):
    with fsspec.open("kithara::" + table_server.url("table.csv"), "rt", encoding="utf-8") as f:
        assert f.read() == (tables / "table.csv").read_text(encoding="utf-8")


def test_info_exists_ukey(media, nginx_server):
    fs = fsspec.filesystem("kithara")
    url = nginx_server.url("tone.ogg")
    head = _head(url)
    info = fs.info(url)
    assert info == {
        "name": url,
        "size": media["tone.ogg"].stat().st_size,
        "type": "file",
        "ETag": head["ETag"],
        "Last-Modified": head["Last-Modified"],
    }
    assert fs.size(url) == info["size"] and fs.isfile(url) and not fs.isdir(url)
    assert fs.ukey(url) == head["ETag"]
    assert fs.exists(url)
    missing = nginx_server.url("no-such-file.flac")
    assert not fs.exists(missing)
    with pytest.raises(FileNotFoundError) as failure:
        fs.info(missing)
    assert isinstance(failure.value, StreamError) and failure.value.status == 404
    assert missing in str(failure.value)


def test_exists_raises_when_the_server_cannot_be_reached(unused_port_url):
    fs = fsspec.filesystem("kithara", retry=kithara_io.Retry(attempts=1))
    with pytest.raises(kithara_io.ConnectionFailedError):
        fs.exists(unused_port_url)


@pytest.fixture
def unused_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.bin"


@pytest.mark.parametrize(
    "start,end",
    [(None, None), (0, 10), (100, 5000), (1 << 20, 3 << 20), (-100, None), (-5000, -10), (10, 5), (None, 77),
     ((8 << 20) - 5, (8 << 20) + 100), (9 << 20, None)],
)
def test_cat_file_ranges(media, nginx_server, start, end):
    fs = fsspec.filesystem("kithara")
    local = media["random.bin"].read_bytes()
    assert fs.cat_file(nginx_server.url("random.bin"), start, end) == local[start:end]


@pytest.mark.timeout(30)
def test_cat_ranges_are_concurrent(make_ranged_server, media, no_leaks):
    """Each range needs at least one request, each request waits ``latency`` before its
    headers: done one after another, 12 ranges take >= 12 * latency. Concurrently, through
    the Downloader's 5 fetch places, a fraction of that."""
    latency = 0.15
    srv = make_ranged_server(latency=latency)
    names = ["random.bin", "tone.wav"]
    local = {n: media[n].read_bytes() for n in names}
    paths, starts, ends = [], [], []
    for i in range(12):
        name = names[i % 2]
        start = (i * 397_123) % (len(local[name]) - 50_000)
        paths.append(srv.url(name))
        starts.append(start)
        ends.append(start + 20_000 + i * 1000)
    downloader = Downloader()
    try:
        fs = KitharaFileSystem(downloader=downloader, skip_instance_cache=True)
        began = time.monotonic()
        got = fs.cat_ranges(paths, starts, ends)
        elapsed = time.monotonic() - began
        peak = downloader.peak_running
    finally:
        downloader.close()
    for data, name, s, e in zip(got, [names[i % 2] for i in range(12)], starts, ends):
        assert data == local[name][s:e]
    assert elapsed < 12 * latency * 0.6, f"{elapsed:.2f}s for 12 ranges: not concurrent"
    assert peak >= 4, f"at most {peak} fetches ran at once"


def test_cat_ranges_returns_failures_in_place(media, nginx_server, no_leaks):
    fs = fsspec.filesystem("kithara")
    good, bad = nginx_server.url("small.bin"), nginx_server.url("missing.bin")
    out = fs.cat_ranges([good, bad, good], [0, 0, 500], [10, 10, None])
    local = media["small.bin"].read_bytes()
    assert out[0] == local[:10] and out[2] == local[500:]
    assert isinstance(out[1], FileNotFoundError) and bad in str(out[1])
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges([good, bad], 0, 10, on_error="raise")


def test_storage_options_reach_the_stream(fault_server, tmp_path, no_leaks):
    data = bytes(range(256)) * 400
    url = fault_server.add("/data.bin", data)
    disk = DiskCache(tmp_path / "cache")
    with fsspec.open(
        "kithara::" + url, "rb", priority="low", headers={"X-Corpus": "fs-test"}, cache=disk, read_ahead=1 << 20
    ) as f:
        assert f.priority is Priority.LOW
        assert f.read() == data
    assert fault_server.requests and all(r.headers.get("X-Corpus") == "fs-test" for r in fault_server.requests)
    (entry,) = disk.entries()
    assert entry.url == url and entry.complete
    # per-call options override the filesystem's
    fs = KitharaFileSystem(priority="low", skip_instance_cache=True)
    with fs.open(url, priority="high") as g:
        assert g.priority is Priority.HIGH


def test_bad_storage_options_fail_where_given():
    with pytest.raises(TypeError, match="read_aheed"):
        fsspec.filesystem("kithara", read_aheed=1)
    with pytest.raises(ValueError):
        fsspec.filesystem("kithara", priority="urgent")
    with pytest.raises(NotImplementedError):
        fsspec.filesystem("kithara").open("http://127.0.0.1:9/x", "wb")


def test_filesystem_pickles_with_its_options(media, nginx_server, no_leaks):
    """Dask ships filesystems to its workers by pickling them."""
    fs = KitharaFileSystem(priority="low", read_ahead=2 << 20, skip_instance_cache=True)
    clone = pickle.loads(pickle.dumps(fs))
    with clone.open(nginx_server.url("small.bin")) as f:
        assert f.priority is Priority.LOW
        assert f.read() == media["small.bin"].read_bytes()


def test_pandas_read_parquet(table_server, tables):
    pytest.importorskip("pyarrow")
    url = "kithara::" + table_server.url("table.parquet")
    expected = pd.read_parquet(tables / "table.parquet")
    assert pd.read_parquet(url).equals(expected)
    assert pd.read_parquet(url, columns=["x"]).equals(expected[["x"]])


def test_xarray_h5netcdf(table_server, tables):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    expected = xr.open_dataset(tables / "grid.nc", engine="h5netcdf").load()
    with xr.open_dataset("kithara::" + table_server.url("grid.nc"), engine="h5netcdf") as remote:
        got = remote.load()
    assert got.identical(expected)


def test_dask_reads_blocks_of_remote_files(table_server, tables):
    """Dask splits a file into byte blocks (fs.info, then seek + read per block)."""
    dd = pytest.importorskip("dask.dataframe")
    db = pytest.importorskip("dask.bag")
    url = "kithara::" + table_server.url("table.csv")
    lines = db.read_text(url, blocksize=20_000).compute(scheduler="threads")
    assert "".join(lines) == (tables / "table.csv").read_text()
    frame = dd.read_csv(url, blocksize=20_000)
    assert frame.npartitions > 1
    got = frame.compute(scheduler="threads").reset_index(drop=True)
    assert got.values.tolist() == pd.read_csv(tables / "table.csv").values.tolist()
