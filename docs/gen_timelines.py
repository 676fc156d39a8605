#!/usr/bin/env python3
"""Draw the documentation's fetch timelines (docs/img/timeline-*.svg) from real runs.

    .venv/bin/python docs/gen_timelines.py          # or: make pictures

Each story runs against the tests' in-process range server (tests/servers/faults.py) on
127.0.0.1, every response throttled so that requests take visible time:

- ``timeline-seek.svg``: a player reads a 6 MiB file at 600 KiB/s on a 1 MiB/s link, seeks to
  70 % and reads on: the read-ahead behind the old position is cancelled (a new epoch);
- ``timeline-preempt.svg``: three Low streams preload 2 MiB files on a Downloader with two
  places; once they have fetches running, a High stream opens and reads 1 MiB: the running Low
  fetches are preempted, and resume when the High stream's work is done.

The steps follow bytes and events (see kithara_io/trace/story.py); the durations are this
machine's and change from run to run.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kithara_io.cli.trace import summary  # noqa: E402
from kithara_io.trace.story import Story, run  # noqa: E402
from tests.servers.faults import FaultServer, Throttle  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20


def seek_story(srv: FaultServer, data: bytes) -> Story:
    url = srv.add("/song.flac", data[: 6 * MiB])
    srv.always("/song.flac", Throttle(1 * MiB))
    return Story(url, seeks=[0.7], read=768 * KiB, rate=600 * KiB, options={"read_ahead": 4 * MiB, "max_fetch": 512 * KiB})


def preempt_story(srv: FaultServer, data: bytes) -> Story:
    low = []
    for n in range(1, 4):
        low.append(srv.add(f"/next-{n}.flac", data[: 2 * MiB]))
        srv.always(f"/next-{n}.flac", Throttle(1.5 * MiB))
    url = srv.add("/now-playing.flac", data[: 2 * MiB])
    srv.always("/now-playing.flac", Throttle(3 * MiB))
    return Story(url, read=1 * MiB, preload=low, max_concurrent=2, options={"max_fetch": 256 * KiB})


STORIES = {
    "timeline-seek.svg": ("A seek during playback: read, seek to 70 %, read on", seek_story),
    "timeline-preempt.svg": ("A High stream opens while three Low streams preload (2 places)", preempt_story),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "docs" / "img"), help="directory (default: docs/img)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = random.Random(26).randbytes(6 * MiB) if hasattr(random.Random, "randbytes") else os.urandom(6 * MiB)
    for name, (title, make) in STORIES.items():
        with FaultServer() as srv:
            recorder = run(make(srv, data))
        path = recorder.save(out / name, title)
        sys.stdout.write(f"{path}: {summary(recorder.events)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
