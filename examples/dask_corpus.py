"""Per-file statistics (duration, RMS, peak) of a corpus of remote audio files with Dask.

    python examples/dask_corpus.py                         # a generated corpus served locally
    python examples/dask_corpus.py URL [URL ...]           # your files (http, https)
    python examples/dask_corpus.py --scheduler tcp://host:8786 URL ...   # an existing cluster
    python examples/dask_corpus.py --workers 4 --cache URL ...           # 4 local processes, disk cache

Every worker process reads through ``kithara::URL`` (fsspec's registry finds kithara-io; the
task never imports it) with its own Downloader and connections; ``--cache`` shares one disk
cache between the processes of a machine, so a second run reads nothing from the network.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import dask.bag as db
import fsspec
import soundfile as sf
from distributed import Client, LocalCluster, progress

from _support import make_music, serve

BLOCK = 65536  # frames per read


def file_stats(url: str, storage_options: Dict[str, object]) -> Dict[str, object]:
    """Decode one file through kithara-io and summarise it (runs on a worker)."""
    with fsspec.open("kithara::" + url, "rb", **storage_options) as f, sf.SoundFile(f) as snd:
        peak, squares, frames = 0.0, 0.0, 0
        for _ in range(math.ceil(snd.frames / BLOCK) + 1):  # bounded even if frames is off
            block = snd.read(BLOCK, dtype="float64", always_2d=True)
            if not len(block):
                break
            peak = max(peak, float(abs(block).max()))
            squares += float((block * block).sum())
            frames += len(block)
        return {
            "url": url,
            "duration": frames / snd.samplerate,
            "rms": math.sqrt(squares / max(1, frames * snd.channels)),
            "peak": peak,
            "bytes": f.size,
        }


@contextlib.contextmanager
def generated_corpus(count: int) -> Iterator[List[str]]:
    """``count`` short generated tracks (FLAC) served on 127.0.0.1."""
    with tempfile.TemporaryDirectory(prefix="kithara-corpus-") as tmp:
        for i in range(count):
            make_music(Path(tmp) / f"clip{i:03d}.flac", bars=1 + i % 3, variant=i)
        with serve(Path(tmp)) as base:
            yield [f"{base}/clip{i:03d}.flac" for i in range(count)]


@contextlib.contextmanager
def cluster(scheduler: str, workers: int) -> Iterator[Client]:
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=2, processes=True, dashboard_address=None) as local:
        with Client(local) as client:
            yield client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="*", help="audio URLs (default: a generated corpus served locally)")
    parser.add_argument("--scheduler", default="", help="address of a running scheduler, e.g. tcp://host:8786")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (without --scheduler)")
    parser.add_argument("--cache", action="store_true", help="read through the shared disk cache")
    parser.add_argument("--count", type=int, default=24, help="files in the generated corpus")
    args = parser.parse_args()
    storage_options = {"cache": "disk"} if args.cache else {}
    with contextlib.ExitStack() as stack:
        urls = args.urls or stack.enter_context(generated_corpus(args.count))
        client = stack.enter_context(cluster(args.scheduler, args.workers))
        print(f"{len(urls)} files on {len(client.scheduler_info()['workers'])} workers")
        began = time.monotonic()
        bag = db.from_sequence(urls, npartitions=min(len(urls), 64)).map(file_stats, storage_options)
        future = client.compute(bag)
        progress(future)  # Dask's progress bar
        rows = future.result()
        elapsed = time.monotonic() - began
    print()
    print(f"{'duration s':>10} {'RMS':>7} {'peak':>7}  url")
    for row in rows:
        print(f"{row['duration']:10.2f} {row['rms']:7.4f} {row['peak']:7.4f}  {row['url']}")
    total = sum(r["duration"] for r in rows)
    megabytes = sum(r["bytes"] for r in rows) / 1e6
    print(f"{len(rows)} files, {total:.1f} s of audio, {megabytes:.1f} MB in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
