"""CacheEntry: one cached resource on disk, opened by one process (and shared by its threads).

Ownership and locks, always taken in this order:
- ``_commit_lock`` serialises commit, refresh, reset and close in this process;
- ``_filelock`` (``filelock.FileLock`` on the entry's ``lock`` file) serialises index updates
  and data file swaps across processes;
- ``_lock`` (a ``threading.Lock``) guards every attribute below it in ``__init__``. It is
  held only for bookkeeping (at most opening or closing a file), never across a read, write
  or fsync of data.
Fetch threads ``write`` disjoint ranges concurrently: the pwrite runs outside ``_lock`` on a
pinned ``DataFile`` (so a concurrent reset or close cannot close its fd under it), and the
range joins ``_pending`` afterwards. A reader's ``read_into`` likewise preads outside the lock.

Versions: the entry is bound to the generation (data file) it loaded or created. If another
process resets the entry to another version, this object goes ``stale``: it keeps serving
the bytes of its own version from its still-open (now unlinked) data file, but its commits
no longer reach the index. A later ``reset`` attaches it again. A ``reset`` to the
validators the index already holds joins that generation instead of starting a new one, so
two processes that pin one version at once (each having seen no validators) share its
ranges: committed bytes of a version are only ever dropped for another version.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Optional

import filelock

from ..forking import guard
from ..reading.ranges import RangeSet
from .files import (
    DATA_PREFIX,
    FILE_MODE,
    INDEX_NAME,
    LOCK_NAME,
    DataFile,
    create_sparse,
    hold_in_use,
    make_private_dir,
    pread_into,
    pwrite_all,
    release_in_use,
    same_file,
)
from .index import CorruptIndex, Index, Validators, new_generation, remove_orphans, trusted_index, write_index

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 60.0  # seconds; commits hold the filelock for a few fsyncs at most
_OPEN_ATTEMPTS = 16  # open_entry racing with evictors that remove the directory again


def entry_lock(directory: Path) -> filelock.FileLock:
    """The cross-process lock that guards the entry's index and data file names."""
    return filelock.FileLock(directory / LOCK_NAME, timeout=LOCK_TIMEOUT, thread_local=False, mode=FILE_MODE)


def read_trusted(directory: Path, key: str) -> Optional[Index]:
    """``trusted_index``, with an untrustworthy index logged (naming its path) and taken as
    none. The caller holds the entry's filelock."""
    try:
        return trusted_index(directory, key)
    except CorruptIndex as exc:
        log.warning("disk cache: discarding %s: %s", directory / INDEX_NAME, exc)
        return None


def load_index(directory: Path, url: str, key: str) -> Index:
    """The entry's trusted index, with stray files removed; a missing or untrustworthy one
    is replaced by a fresh empty index. The caller holds the entry's filelock."""
    index = read_trusted(directory, key)
    if index is None:
        index = Index(url=url, key=key)
        write_index(directory, index)
    remove_orphans(directory, keep_data=index.data_name)
    return index


class CacheEntry:
    """The cached bytes of one URL: ``write`` then ``commit`` makes them ``present``;
    ``read_into`` serves present bytes. Use as a context manager or call ``close()``."""

    def __init__(self, url: str, key: str, directory: Path, on_close: Callable[[], None]) -> None:
        self.url = url
        self.directory = directory
        self._key = key
        self._on_close = on_close
        self._commit_lock = threading.Lock()
        self._filelock = entry_lock(directory)
        self._lock = threading.Lock()
        # The index records the key, never the full URL (it may carry a signature).
        self._index = Index(url=key, key=key)  # the version this object is bound to
        self._file: Optional[DataFile] = None
        self._present = RangeSet()  # committed (durable) ranges of that version
        self._pending = RangeSet()  # written, not yet committed
        self._stale = False
        self._closed = False
        guard(self)
        self._mark = _hold(directory)
        try:
            with self._filelock:
                self._attach(load_index(directory, key, key))
        except BaseException:
            release_in_use(self._mark)
            raise

    def __enter__(self) -> "CacheEntry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CacheEntry({self.url!r}, present={self.present()!r})"

    def fork_lock(self) -> threading.Lock:
        """Held across a fork (:mod:`kithara_io.forking`): the child's committed ranges are whole."""
        return self._lock

    def _after_fork_in_child(self) -> None:
        """In a forked child: fresh locks (a parent thread may have held one). The in-use
        mark's flock is the parent's too, and stays until both have closed it."""
        self._commit_lock = threading.Lock()
        self._filelock = entry_lock(self.directory)
        self._lock = threading.Lock()

    # -- state ---------------------------------------------------------------------------
    def validators(self) -> Optional[Validators]:
        """The version whose bytes this entry holds; None while none is pinned."""
        with self._lock:
            return self._index.validators

    def present(self) -> RangeSet:
        """The committed ranges (a copy)."""
        with self._lock:
            return self._present.copy()

    @property
    def stale(self) -> bool:
        """True once another process reset the entry to another version (see module doc)."""
        with self._lock:
            return self._stale

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    # -- bytes ---------------------------------------------------------------------------
    def read_into(self, pos: int, out: memoryview) -> int:
        """Copy the committed bytes ``[pos, pos + len(out))`` into ``out``; returns
        ``len(out)``. ValueError if any of them is not present."""
        out = memoryview(out).cast("B")
        n = len(out)
        with self._lock:
            self._check_open()
            if n and (pos < 0 or not self._present.contains(pos, pos + n)):
                raise ValueError(f"bytes [{pos}, {pos + n}) of {self.url} are not all in the disk cache")
            if n == 0:
                return 0
            file = self._pinned_file()
        try:
            got = pread_into(file.fd, out, pos)
        finally:
            with self._lock:
                file.unpin()
        if got != n:  # only if the data file was truncated behind our back
            raise OSError(f"short read from {file.path}: {got} of {n} bytes at {pos}")
        return n

    def write(self, pos: int, data: object) -> None:
        """Store ``data`` (bytes-like) at ``pos``. Not present, nor durable, until ``commit``.
        ValueError before validators are pinned or outside the resource."""
        view = memoryview(data).cast("B")  # type: ignore[arg-type]
        with self._lock:
            self._check_open()
            v = self._index.validators
            if v is None:
                raise ValueError(f"{self.url}: no validators pinned (call reset first)")
            if pos < 0 or v.size is None or pos + len(view) > v.size:
                raise ValueError(f"write [{pos}, {pos + len(view)}) outside {self.url} (size {v.size})")
            if not view:
                return
            file = self._pinned_file()
        done = False
        try:
            pwrite_all(file.fd, view, pos)
            done = True
        finally:
            with self._lock:
                file.unpin()
                if done and file is self._file:  # else a reset or close came in between
                    self._pending.add(pos, pos + len(view))

    # -- durability ----------------------------------------------------------------------
    def commit(self) -> None:
        """Make the written ranges durable and present: fsync the data, then replace the index
        with the union of what it holds (other processes' commits) and ours. If the index now
        holds another version, nothing is written and the entry turns ``stale``."""
        with self._commit_lock:
            with self._lock:
                self._check_open()
            self._commit_locked()

    def refresh(self) -> RangeSet:
        """Merge in the ranges other processes committed; returns ``present()``."""
        with self._commit_lock:
            with self._lock:
                self._check_open()
            with self._filelock:
                disk = self._read_disk()
                with self._lock:
                    if disk is not None and self._index.generation is None and disk.generation is not None:
                        self._attach(disk)  # nothing pinned here yet: follow the other process
                    elif disk is not None and disk.generation == self._index.generation:
                        for start, end in disk.ranges:
                            self._present.add(start, end)
                    elif disk is not None:
                        self._go_stale()
            return self.present()

    def reset(self, validators: Validators, *, new_version: bool = False) -> None:
        """Pin ``validators`` (a new or changed resource): drop every old byte and range.
        If the entry on disk is already pinned to these validators (by another process, or
        by this one), its bytes are of the same version: this entry joins that generation
        and keeps every committed range (and its own pending writes, if it was bound to it).
        ``new_version=True`` starts afresh even then: for a resource whose validators do not
        tell its versions apart (a size only) and that is rewritten whole."""
        if validators.size is None or validators.size < 0:
            raise ValueError(f"a disk entry needs a known size >= 0, not {validators.size}")
        size = validators.size
        with self._commit_lock:
            with self._lock:
                self._check_open()
            # The check and the pin are one step under the filelock: no other process can
            # pin, commit or reset between what is read here and what is written.
            with self._filelock:
                disk = self._read_disk()
                known = None if disk is None or disk.generation is None else disk.validators
                if disk is not None and known is not None and known.same_version(validators) and not new_version:
                    with self._lock:
                        self._join(disk)
                    return
                generation = new_generation()
                index = Index(self._key, self._key, generation, validators)
                create_sparse(self.directory / (DATA_PREFIX + generation), size)
                write_index(self.directory, index)
                with self._lock:
                    self._attach(index)
                remove_orphans(self.directory, keep_data=index.data_name)

    def close(self) -> None:
        """Commit what is pending, release the in-use mark, then let the store evict if it is
        over budget. Idempotent; writes still running in other threads are lost."""
        with self._commit_lock:
            with self._lock:
                if self._closed:
                    return
            try:
                self._commit_locked()
            finally:
                with self._lock:
                    self._closed = True
                    if self._file is not None:
                        self._file.retire()
                        self._file = None
                    self._pending = RangeSet()
                release_in_use(self._mark)
        self._on_close()

    # -- internals -----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"cache entry of {self.url} is closed")

    def _pinned_file(self) -> DataFile:
        """The data file, pinned for a read or write outside the lock (caller holds ``_lock``)."""
        assert self._file is not None
        self._file.pin()
        return self._file

    def _read_disk(self) -> Optional[Index]:
        """The index on disk now, None if missing or untrustworthy (caller holds the filelock)."""
        return read_trusted(self.directory, self._key)

    def _attach(self, index: Index) -> None:
        """Bind to ``index``'s version: its data file, its ranges (caller holds the filelock,
        so the data file cannot be removed meanwhile, and ``_lock`` unless constructing)."""
        file = None if index.data_name is None else DataFile.open(self.directory / index.data_name)
        if self._file is not None:
            self._file.retire()
        self._file = file
        self._index = index
        self._present = RangeSet(list(index.ranges))
        self._pending = RangeSet()
        self._stale = False

    def _join(self, disk: Index) -> None:
        """Bind to ``disk``'s generation, of the validators being pinned (caller holds the
        filelock and ``_lock``). Bound to it already: merge its ranges and keep what is
        pending, those are bytes of that version in its data file."""
        if self._stale or disk.generation != self._index.generation or self._file is None:
            self._attach(disk)
            return
        merged = self._present.copy()
        for start, end in disk.ranges:
            merged.add(start, end)
        self._index, self._present = disk, merged

    def _go_stale(self) -> None:
        """Another version owns the index: keep ours for reading, commit nothing more."""
        self._stale = True
        self._pending = RangeSet()

    def _commit_locked(self) -> None:
        """``commit`` without its checks; the caller holds ``_commit_lock``."""
        with self._lock:
            if self._stale:
                self._pending = RangeSet()
            if not self._pending:
                return
            batch = self._pending.copy()
            file = self._pinned_file()
            mine = self._index
        try:
            os.fsync(file.fd)  # the bytes first: the index must never claim what is not on disk
            with self._filelock:
                disk = self._read_disk()
                ours = same_file(file.fd, file.path) and (disk is None or disk.generation == mine.generation)
                if not ours:
                    with self._lock:
                        self._go_stale()
                    return
                with self._lock:
                    merged = self._present.copy()
                for start, end in list(batch) + list(disk.ranges if disk else ()):
                    merged.add(start, end)
                index = Index(self._key, self._key, mine.generation, mine.validators, tuple(merged))
                write_index(self.directory, index)
            with self._lock:
                self._present = merged
                for start, end in batch:
                    self._pending.remove(start, end)
        finally:
            with self._lock:
                file.unpin()


def _hold(directory: Path) -> int:
    """Create the entry directory if needed and mark it in use; an evictor may remove it
    between the mkdir and the mark, so this retries a bounded number of times."""
    for _ in range(_OPEN_ATTEMPTS):
        make_private_dir(directory)
        fd = hold_in_use(directory)
        if fd is not None:
            return fd
    raise OSError(f"cannot open disk cache entry {directory}: it keeps being removed")
