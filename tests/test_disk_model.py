"""The disk cache's storage layer against a model (issue #23): up to three "processes"
(``CacheEntry`` objects on one directory, each with its own filelock) open, refresh, reset,
write, commit, read and close in any interleaving hypothesis picks.

Checked after every step: each entry's validators, present ranges and staleness are the
model's; every present byte reads back as the version's reference bytes; the index on disk
holds exactly the ranges committed under the validators it pins, in that version's data
file; and for one version (no reset to other validators, no ``new_version``) the index
never shrinks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from kithara_io.disk import CacheEntry, DiskCache, Validators
from kithara_io.disk.index import read_index
from kithara_io.reading.ranges import RangeSet
from tests.disk_cache_worker import SIZE, reference, version

URL = "https://example.org/model.bin"
PROCESSES = 3
REFERENCE = {n: reference(n) for n in (1, 2)}


@dataclass
class Disk:
    """The index as the model expects it: a generation (``epoch``) of one version."""

    epoch: Optional[int] = None
    number: Optional[int] = None  # the version's number; None until pinned
    committed: RangeSet = field(default_factory=RangeSet)


@dataclass
class Process:
    """One open entry and what the model expects of it."""

    entry: CacheEntry
    epoch: Optional[int]
    number: Optional[int]
    present: RangeSet
    pending: RangeSet = field(default_factory=RangeSet)
    stale: bool = False

    def __repr__(self) -> str:  # hypothesis prints the steps with it
        return f"Process(epoch={self.epoch}, v{self.number}, present={self.present!r}, stale={self.stale})"


ranges = st.tuples(st.integers(0, 31).map(lambda k: k * 2048), st.sampled_from([1, 100, 2048, 5000]))


class SharedEntry(RuleBasedStateMachine):
    processes = Bundle("processes")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="kithara-model-"))
        self.cache = DiskCache(self.root)
        self.directory = self.cache.entry_path(URL)
        self.open: Dict[int, Process] = {}
        self.disk = Disk()
        self.epochs = 0
        self.generations: Dict[int, str] = {}  # epoch -> the generation the index names
        self.seen: Optional[Tuple[Optional[Validators], RangeSet]] = None
        self.fresh_start = False  # a reset with new_version=True since ``seen``

    def teardown(self) -> None:
        try:
            for process in self.open.values():
                process.entry.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- the model's moves -----------------------------------------------------------------
    def _attach(self, p: Process) -> None:
        p.epoch, p.number, p.present = self.disk.epoch, self.disk.number, self.disk.committed.copy()
        p.pending, p.stale = RangeSet(), False

    def _commit(self, p: Process) -> None:
        if p.stale or not p.pending:
            p.pending = RangeSet()
            return
        if self.disk.epoch != p.epoch:
            p.stale, p.pending = True, RangeSet()
            return
        for start, end in p.pending:
            self.disk.committed.add(start, end)
        p.present, p.pending = self.disk.committed.copy(), RangeSet()

    def _check(self, p: Process) -> None:
        assert p.entry.validators() == (None if p.number is None else version(p.number))
        assert p.entry.present() == p.present
        assert p.entry.stale == p.stale

    # -- rules ---------------------------------------------------------------------------
    @precondition(lambda self: len(self.open) < PROCESSES)
    @rule(target=processes)
    def open_entry(self) -> Process:
        entry = self.cache.open_entry(URL)
        p = Process(entry, None, None, RangeSet())
        self._attach(p)
        self.open[id(p)] = p
        self._check(p)
        return p

    @rule(p=consumes(processes))
    def close(self, p: Process) -> None:
        self._commit(p)
        p.entry.close()
        del self.open[id(p)]

    @rule(p=processes)
    def refresh(self, p: Process) -> None:
        if self.disk.epoch is not None and p.epoch is None:
            self._attach(p)
        elif self.disk.epoch == p.epoch:
            for start, end in self.disk.committed:
                p.present.add(start, end)
        else:
            p.stale, p.pending = True, RangeSet()
        assert p.entry.refresh() == p.present
        self._check(p)

    @rule(p=processes, number=st.sampled_from([1, 2]), new_version=st.sampled_from([False, False, False, True]))
    def reset(self, p: Process, number: int, new_version: bool) -> None:
        same = self.disk.epoch is not None and self.disk.number == number
        if same and not new_version:
            if p.epoch == self.disk.epoch and not p.stale:
                for start, end in self.disk.committed:  # its pending writes stay
                    p.present.add(start, end)
            else:
                self._attach(p)
        else:
            self.epochs += 1
            self.disk = Disk(self.epochs, number, RangeSet())
            self._attach(p)
            self.fresh_start = self.fresh_start or same
        p.entry.reset(version(number), new_version=new_version)
        self._check(p)

    @rule(p=processes, where=ranges)
    def write(self, p: Process, where: Tuple[int, int]) -> None:
        start, end = where[0], min(SIZE, where[0] + where[1])
        if p.number is None:
            with pytest.raises(ValueError, match="no validators"):
                p.entry.write(start, b"x")
            return
        p.entry.write(start, REFERENCE[p.number][start:end])
        p.pending.add(start, end)

    @rule(p=processes)
    def commit(self, p: Process) -> None:
        self._commit(p)
        p.entry.commit()
        self._check(p)

    @rule(p=processes)
    def read(self, p: Process) -> None:
        for start, end in p.present:
            out = bytearray(end - start)
            assert p.entry.read_into(start, memoryview(out)) == end - start
            assert bytes(out) == REFERENCE[p.number][start:end]  # type: ignore[index]
        gap = next(p.present.gaps(0, SIZE), None)
        if p.number is not None and gap is not None:
            with pytest.raises(ValueError, match="not all in the disk cache"):
                p.entry.read_into(gap[0], memoryview(bytearray(1)))

    # -- the disk --------------------------------------------------------------------------
    @invariant()
    def index_holds_what_was_committed_for_its_version(self) -> None:
        index = read_index(self.directory) if self.directory.exists() else None
        if self.disk.epoch is None:
            assert index is None or index.generation is None
            return
        assert index is not None and index.generation is not None
        assert self.generations.setdefault(self.disk.epoch, index.generation) == index.generation
        assert index.validators == version(self.disk.number)  # type: ignore[arg-type]
        held = RangeSet(list(index.ranges))
        assert held == self.disk.committed
        fd = os.open(self.directory / f"data.{index.generation}", os.O_RDONLY)
        try:
            for start, end in held:
                assert os.pread(fd, end - start, start) == REFERENCE[self.disk.number][start:end]  # type: ignore[index]
        finally:
            os.close(fd)
        if self.seen is not None and self.seen[0] == index.validators and not self.fresh_start:
            assert all(held.contains(start, end) for start, end in self.seen[1]), "the index shrank"
        self.seen, self.fresh_start = (index.validators, held), False


SharedEntry.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_shared_entry = SharedEntry.TestCase
