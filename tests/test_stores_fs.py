"""Object stores through fsspec's ``kithara::`` protocol: pandas and a Dask cluster read
``kithara::s3://bucket/key`` from moto's S3 server (signatures checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import numpy as np
import pytest
import soundfile as sf

pd = pytest.importorskip("pandas")
fsspec = pytest.importorskip("fsspec")

import kithara_io
import kithara_io.fs  # names s3:// for fsspec where s3fs is missing (kithara_io.fs_stores)
from tests.dask_tasks import clip_stats
from tests.servers import stores as servers

RATE = 22050


@pytest.fixture(scope="module")
def s3() -> Iterator[servers.Store]:
    with servers.start("s3") as srv:
        yield srv


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, s3) -> List[Path]:
    """Eight short clips (FLAC, WAV, OGG; mono and stereo), each different, in the bucket."""
    directory = tmp_path_factory.mktemp("store-clips")
    formats = [("flac", "FLAC", "PCM_16"), ("wav", "WAV", "PCM_16"), ("ogg", "OGG", "VORBIS")]
    rng = np.random.default_rng(2929)
    paths = []
    for i in range(8):
        ext, fmt, subtype = formats[i % 3]
        frames = int(RATE * (0.3 + 0.05 * i))
        t = np.arange(frames) / RATE
        data = np.stack([0.5 * np.sin(2 * np.pi * (220 + 55 * i) * t), 0.3 * rng.standard_normal(frames)], axis=1)
        path = directory / f"clip{i:02d}.{ext}"
        sf.write(path, np.clip(data[:, : 1 + i % 2], -0.9, 0.9), RATE, format=fmt, subtype=subtype)
        s3.put(f"clips/{path.name}", path.read_bytes())
        paths.append(path)
    return paths


@pytest.mark.timeout(60)
def test_pandas_reads_kithara_s3(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # cache="disk" below
    frame = pd.DataFrame({"n": range(2000), "word": [f"w{i % 97}" for i in range(2000)], "x": np.linspace(0, 1, 2000)})
    s3.put("tables/t.csv", frame.to_csv(index=False).encode())
    url = "kithara::" + s3.url("tables/t.csv")
    flat = pd.read_csv(url, storage_options=s3.options)  # s3fs's option names, flat
    nested = pd.read_csv(url, storage_options={"s3": s3.options, "cache": "disk"})  # fsspec's per-protocol form
    pd.testing.assert_frame_equal(flat, frame)
    pd.testing.assert_frame_equal(nested, frame)
    with fsspec.open(url, "rb", **s3.options) as f:
        assert isinstance(f, kithara_io.Stream) and f.name == s3.url("tables/t.csv")


@pytest.mark.timeout(90)
def test_dask_local_cluster_decodes_clips_from_s3(s3, clips):
    """A Dask LocalCluster (worker threads in this process: spawned workers would need s3fs,
    or kithara_io.fs imported, for fsspec to split kithara::s3:// URLs) decodes the clips
    through kithara::s3://; samples equal decoding the local files."""
    db = pytest.importorskip("dask.bag")
    distributed = pytest.importorskip("distributed")
    urls = [s3.url(f"clips/{p.name}") for p in clips]
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        remote = db.from_sequence(urls, npartitions=len(urls)).map(clip_stats, s3.options).compute()
    _equal_to_local(remote, clips)


@pytest.mark.timeout(90)
def test_dask_worker_processes_decode_clips_from_s3(s3, clips):
    """Two spawned worker processes, each signing its own requests with the pickled
    storage options, decode the clips through kithara::s3://."""
    import os

    db = pytest.importorskip("dask.bag")
    distributed = pytest.importorskip("distributed")
    from tests.store_tasks import store_clip_stats

    urls = [s3.url(f"clips/{p.name}") for p in clips]
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, scheduler_port=0
    ) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        remote = db.from_sequence(urls, npartitions=len(urls)).map(store_clip_stats, s3.options).compute()
    _equal_to_local(remote, clips)
    assert all(r["pid"] != os.getpid() for r in remote)


def _equal_to_local(remote: List[dict], clips: List[Path]) -> None:
    strip = ("pid", "kithara_before", "kithara_after")
    assert len(remote) == len(clips)
    for got, path in zip(remote, clips):
        expected = clip_stats(str(path), {})
        assert {k: v for k, v in got.items() if k not in strip} == {k: v for k, v in expected.items() if k not in strip}


def test_store_protocols_still_say_what_to_install():
    """kithara_io.fs names s3:// for chained URLs only: fsspec's own s3:// without s3fs
    fails as before, with fsspec's message."""
    import importlib.util

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed: fsspec's s3:// is its own")
    with pytest.raises(ImportError, match="s3fs"):
        fsspec.filesystem("s3")
