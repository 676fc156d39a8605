"""A process-level soak of the disk cache (issue #23), checked byte for byte.

Several processes (``tests/disk_cache_worker.py stream``, forked by a multiprocessing
forkserver that has imported kithara-io once, so a restart takes milliseconds, not the
second a fresh interpreter needs under load) share one disk cache and read
random ranges of one 32 MiB file through ``kithara_io.open(url, cache=...)`` from a local
nginx, in sessions of up to 15 reads, open to close. Each is SIGKILLed at a random (seeded)
moment, which falls in reads, fetches, commits, resets, ``close()`` or start-up, and is
restarted. The soak runs in rounds of ``ROUND`` seconds, each on a new, empty cache that
every worker opens at once (the race of the issue's first row). Checked in every round:
- every byte read equals the local file, and every read is whole (fewer bytes only at the end);
- no read hangs: a worker silent for ``HANG`` seconds fails the test (its reads are bounded
  by ``Timeout`` too);
- the index, sampled all along, pins one version in one generation and never shrinks;
- at the end it holds every range read by a stream that closed cleanly, its bytes equal the
  file, and no worker logged a disk cache warning (a discarded index, caching stopped).

``make test`` runs a short soak (5 rounds of 2 s, 4 workers: ~15 s). A longer one, by hand,
prints its counts:

    KITHARA_SOAK_SECONDS=600 python -m pytest tests/test_disk_soak.py -s

(from 60 s on: 6 workers, rounds of 10 s; ``KITHARA_SOAK_SEED`` picks another seed of the
file and of the kill schedule.)
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import selectors
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import List, Optional

import pytest

from kithara_io.disk import DiskCache, Validators
from kithara_io.disk.files import TMP_PREFIX
from kithara_io.disk.index import read_index
from kithara_io.reading.ranges import RangeSet
from tests import disk_cache_worker
from tests.servers import NginxServer
from tests.test_disk_cache import assert_matches, data_files

SECONDS = float(os.environ.get("KITHARA_SOAK_SECONDS", "10"))
SEED = int(os.environ.get("KITHARA_SOAK_SEED", "23"))
WORKERS = 6 if SECONDS >= 60 else 4
ROUND = 2.0 if SECONDS < 60 else 10.0  # seconds on one cache
HANG = 30.0  # seconds without a line from a running worker
SAMPLE_EVERY = 0.02  # seconds between two reads of the index
LIFETIME = (0.05, 3.0)  # a worker is killed this long (uniform, seconds) after its first line
SIZE = 32 << 20


@dataclass
class Run:
    """One worker process, from its start to its SIGKILL."""

    proc: multiprocessing.process.BaseProcess
    conn: Connection  # the read end of its stdout
    stderr: Path
    last_line: float
    kill_at: float = float("inf")  # set when its first line arrives: it is running then
    pending: bytes = b""  # a line not complete yet
    session: RangeSet = field(default_factory=RangeSet)  # read since its last "open"


CONTEXT = multiprocessing.get_context("forkserver")


def stop(run: Run) -> None:
    """SIGKILL, reap, close our end of its pipe."""
    run.proc.kill()
    run.proc.join(30)
    run.conn.close()


@dataclass
class Totals:
    rounds: int = 0
    started: int = 0
    reads: int = 0
    bytes_checked: int = 0
    kills: int = 0
    sessions_closed: int = 0
    samples: int = 0
    closed_bytes: int = 0  # read by streams that closed cleanly, summed over the rounds

    def __str__(self) -> str:
        return (
            f"{SECONDS:.0f} s, {WORKERS} workers, seed {SEED}: {self.rounds} rounds, {self.reads} reads, "
            f"{self.bytes_checked} bytes checked, {self.kills} kills, {self.sessions_closed} clean closes, "
            f"{self.samples} index samples, {self.closed_bytes} bytes read by cleanly closed streams"
        )


@dataclass
class Round:
    """Workers sharing one new cache under ``root`` for a while (``run``)."""

    data: bytes
    root: Path
    url: str
    rng: random.Random
    totals: Totals
    runs: List[Run] = field(default_factory=list)
    must_hold: RangeSet = field(default_factory=RangeSet)  # read by streams that closed cleanly
    held: RangeSet = field(default_factory=RangeSet)  # the index at the last sample
    pinned: Optional[Validators] = None
    generation: Optional[str] = None
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def run(self, seconds: float) -> None:
        directory = DiskCache(self.root).entry_path(self.url)
        try:
            for _ in range(WORKERS):
                self.start()
            deadline = time.monotonic() + seconds
            sampled = 0.0
            while (now := time.monotonic()) < deadline:
                wake = min([deadline, *(r.kill_at for r in self.runs)])
                for key, _ in self.sel.select(max(0.0, min(wake - now, SAMPLE_EVERY))):
                    self.receive(key.data)
                now = time.monotonic()
                for run in list(self.runs):
                    if run.kill_at <= now:
                        self.kill(run)
                        self.start()
                    else:
                        assert now - run.last_line < HANG, f"a worker read hung for {HANG} s"
                if now - sampled >= SAMPLE_EVERY:
                    self.sample_index(directory)
                    sampled = now
            for run in list(self.runs):
                self.kill(run)
        finally:
            for run in self.runs:
                stop(run)
            self.sel.close()
        self.sample_index(directory)
        self.totals.rounds += 1
        self.totals.closed_bytes += self.must_hold.total

    def start(self) -> None:
        number = self.totals.started
        self.totals.started += 1
        err = self.root.parent / f"worker-{number}.err"
        conn, out = CONTEXT.Pipe(duplex=False)
        argv = ("stream", str(self.root), self.url, str(SEED * 100_000 + number))
        proc = CONTEXT.Process(target=disk_cache_worker.child, args=(out, str(err), *argv), daemon=True)
        try:
            proc.start()
        finally:
            out.close()
        run = Run(proc, conn, err, time.monotonic())
        self.sel.register(conn, selectors.EVENT_READ, run)
        self.runs.append(run)

    def kill(self, run: Run) -> None:
        self.sel.unregister(run.conn)
        self.runs.remove(run)
        stop(run)
        if run.proc.exitcode != -signal.SIGKILL:
            pytest.fail(f"worker exited with {run.proc.exitcode} before its kill:\n{run.stderr.read_text()}")
        self.totals.kills += 1

    def receive(self, run: Run) -> None:
        chunk = os.read(run.conn.fileno(), 1 << 16)
        if not chunk:
            run.proc.join(30)
            pytest.fail(f"worker exited with {run.proc.exitcode}:\n{run.stderr.read_text()}")
        run.last_line = time.monotonic()
        if run.kill_at == float("inf"):
            run.kill_at = run.last_line + self.rng.uniform(*LIFETIME)
        *lines, run.pending = (run.pending + chunk).split(b"\n")
        for line in lines:
            self.line(run, line.decode())

    def line(self, run: Run, line: str) -> None:
        if line == "open":
            run.session = RangeSet()
        elif line == "closed":
            for start, end in run.session:
                self.must_hold.add(start, end)
            self.totals.sessions_closed += 1
        else:
            kind, pos, asked, got, digest = line.split()
            start, n = int(pos), int(got)
            assert kind == "r" and n == min(int(asked), len(self.data) - start), line
            assert hashlib.sha256(self.data[start : start + n]).hexdigest() == digest, f"wrong bytes: {line}"
            run.session.add(start, start + n)
            self.totals.reads += 1
            self.totals.bytes_checked += n

    def sample_index(self, directory: Path) -> None:
        """The index pins one version in one generation and never loses a range."""
        index = read_index(directory) if directory.exists() else None
        self.totals.samples += 1
        if index is None or index.generation is None:
            assert self.pinned is None, "the index lost its version"
            return
        if self.pinned is None:
            self.pinned, self.generation = index.validators, index.generation
        assert (index.validators, index.generation) == (self.pinned, self.generation), "a new generation"
        now = RangeSet(list(index.ranges))
        lost = [(s, e) for s, e in self.held if not now.contains(s, e)]
        assert not lost, f"the index shrank: {lost[:5]}"
        self.held = now

    def check_the_end(self) -> None:
        """Everything cleanly closed streams read is in the index; its bytes are the file's."""
        lost = [(s, e) for s, e in self.must_hold if not self.held.contains(s, e)]
        assert not lost, f"read by cleanly closed streams, not in the index: {lost[:5]}"
        cache = DiskCache(self.root)
        with cache.open_entry(self.url) as entry:  # removes what a kill left half-written
            assert entry.present() == self.held
            assert_matches(entry, self.data)
        directory = cache.entry_path(self.url)
        assert len(data_files(directory)) == 1
        assert not [p for p in directory.iterdir() if p.name.startswith(TMP_PREFIX)]


@pytest.mark.timeout(int(SECONDS) + 120)
def test_processes_killed_at_random_points_never_lose_a_committed_byte(tmp_path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    data = random.Random(SEED).randbytes(SIZE)
    (site / "big.bin").write_bytes(data)
    rng, totals = random.Random(SEED), Totals()
    CONTEXT.set_forkserver_preload(["tests.disk_cache_worker"])  # unless a forkserver runs already
    with NginxServer(site) as server:
        url = server.url("big.bin")
        for number in range(max(1, round(SECONDS / ROUND))):
            where = tmp_path / f"round-{number}"
            where.mkdir()
            one = Round(data, where / "cache", url, rng, totals)
            try:
                one.run(ROUND)
                one.check_the_end()
            except AssertionError as exc:
                raise AssertionError(f"round {number}: {exc} ({totals})") from exc
    print(totals)
    assert totals.kills >= WORKERS and totals.sessions_closed >= 1 and totals.reads >= 10 * WORKERS, totals
    warnings = [line for p in tmp_path.rglob("worker-*.err") for line in p.read_text().splitlines() if "disk cache" in line]
    assert not warnings, warnings[:5]
