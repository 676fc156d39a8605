"""DiskCache: a directory of cache entries, one per resource, bounded by total bytes.

Layout: ``<root>/<sha256 hex of key(url)>/`` holds ``index.json`` (see ``index``),
``data.<generation>`` (the sparse data file), ``lock`` (filelock for commits) and ``inuse``
(flock in-use mark; its mtime is the last use). An entry is removed by renaming its directory
to ``<root>/.trash-...`` while holding the exclusive in-use lock, then deleting it, so other
processes see it whole or not at all; a crash mid-delete leaves trash that ``clear`` and
``evict`` remove.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Union

import filelock
import platformdirs

from .entry import CacheEntry, entry_lock
from .files import INUSE_NAME, make_private_dir, try_exclusive
from .index import CorruptIndex, Index, read_index, remove_orphans

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 << 30
TRASH_PREFIX = ".trash-"
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}\Z")
_EVICT_PASSES = 3  # evict again when an entry was opened between the listing and its removal


@dataclass(frozen=True)
class EntryInfo:
    """One entry as ``DiskCache.entries()`` lists it. ``url`` and ``key`` are None when the
    index is unreadable (the next ``open_entry`` of that URL starts afresh)."""

    url: Optional[str]
    key: Optional[str]
    path: Path
    size: Optional[int]
    bytes_present: int
    complete: bool
    last_used: float
    etag: Optional[str]
    last_modified: Optional[str]
    in_use: bool


def plan_eviction(entries: Sequence[EntryInfo], max_bytes: int, keep: int = 0) -> List[EntryInfo]:
    """The entries to remove, least recently used first, so that the rest plus ``keep`` bytes
    fit in ``max_bytes``. Entries in use are never chosen, so the result may fall short."""
    total = sum(e.bytes_present for e in entries)
    victims: List[EntryInfo] = []
    for info in sorted((e for e in entries if not e.in_use), key=lambda e: (e.last_used, str(e.path))):
        if total + keep <= max_bytes:
            break
        victims.append(info)
        total -= info.bytes_present
    return victims


class DiskCache:
    """Persistent, cross-process cache of remote resources' bytes under ``path``
    (default: the user cache directory), at most ``max_bytes`` of present bytes after each
    entry's close. ``key(url)`` names the resource (default: the URL itself), e.g. a URL
    without its signature query."""

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", None] = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        key: Optional[Callable[[str], str]] = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.path = Path(path) if path is not None else default_path()
        make_private_dir(self.path)
        self.max_bytes = max_bytes
        self._key = key or (lambda url: url)

    def __repr__(self) -> str:
        return f"DiskCache({str(self.path)!r}, max_bytes={self.max_bytes})"

    def entry_path(self, url: str) -> Path:
        """The directory that holds (or would hold) ``url``'s entry."""
        return self.path / hashlib.sha256(self._key(url).encode("utf-8")).hexdigest()

    def open_entry(self, url: str) -> CacheEntry:
        """The entry of ``url``, created if absent, marked in use until its ``close()``."""
        return CacheEntry(url, self._key(url), self.entry_path(url), self._after_close)

    def entries(self) -> List[EntryInfo]:
        """Every entry, as found on disk now (no locks taken but a brief in-use probe)."""
        found = (describe(d) for d in self._entry_dirs())
        return [info for info in found if info is not None]

    def total_bytes(self) -> int:
        """Present bytes of all entries: what ``max_bytes`` bounds."""
        return sum(e.bytes_present for e in self.entries())

    def evict(self, keep: int = 0) -> List[str]:
        """Remove least recently used entries until ``total_bytes() + keep <= max_bytes``,
        never one that any process has open; returns the URLs removed (None for an entry
        whose index was unreadable is left out)."""
        self._remove_trash()
        evicted: List[str] = []
        for _ in range(_EVICT_PASSES):
            victims = plan_eviction(self.entries(), self.max_bytes, keep)
            skipped = False
            for info in victims:
                if remove_entry(info.path, self.path):
                    if info.url is not None:
                        evicted.append(info.url)
                else:
                    skipped = True
            if not skipped:
                break
        return evicted

    def clear(self) -> int:
        """Remove every entry that no process has open; returns how many. Entries in use keep
        their data but lose stray temporary files."""
        self._remove_trash()
        count = 0
        for directory in self._entry_dirs():
            if remove_entry(directory, self.path):
                count += 1
            else:
                _clean_in_use(directory)
        return count

    # -- internals -----------------------------------------------------------------------
    def _entry_dirs(self) -> Iterator[Path]:
        for path in sorted(self.path.iterdir()):
            if _ENTRY_NAME.match(path.name) and path.is_dir():
                yield path

    def _remove_trash(self) -> None:
        for path in self.path.iterdir():
            if path.name.startswith(TRASH_PREFIX):
                shutil.rmtree(path, ignore_errors=True)

    def _after_close(self) -> None:
        """Called by an entry after its close: evict if over budget; never raises."""
        try:
            if self.total_bytes() > self.max_bytes:
                self.evict()
        except OSError as exc:
            log.warning("disk cache: eviction in %s failed: %s", self.path, exc)


_default: Optional[DiskCache] = None
_default_lock = threading.Lock()


def default_path() -> Path:
    """Where ``DiskCache()`` keeps its entries: the user cache directory (not created here)."""
    return Path(platformdirs.user_cache_dir("kithara-io"))


def default_disk_cache() -> DiskCache:
    """The process-wide DiskCache (user cache directory, default budget) that
    ``open(url, cache="disk")`` uses; created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DiskCache()
        return _default


def describe(directory: Path) -> Optional[EntryInfo]:
    """An entry's ``EntryInfo``, None if it was just removed; an unreadable index shows as
    an entry with nothing present."""
    try:
        index: Optional[Index] = read_index(directory)
    except (CorruptIndex, OSError):
        index = None
    probe = try_exclusive(directory)
    if probe is not None:
        os.close(probe)
    try:
        last_used = os.stat(directory / INUSE_NAME).st_mtime
    except FileNotFoundError:  # removed meanwhile (try_exclusive creates the file)
        return None
    v = index.validators if index else None
    present = sum(end - start for start, end in index.ranges) if index else 0
    return EntryInfo(
        url=index.url if index else None,
        key=index.key if index else None,
        path=directory,
        size=v.size if v else None,
        bytes_present=present,
        complete=v is not None and present == v.size,
        last_used=last_used,
        etag=v.etag if v else None,
        last_modified=v.last_modified if v else None,
        in_use=probe is None,
    )


def remove_entry(directory: Path, root: Path) -> bool:
    """Remove the entry unless a process has it open; True if it is gone."""
    fd = try_exclusive(directory)
    if fd is None:
        return not directory.exists()
    try:
        trash = root / f"{TRASH_PREFIX}{directory.name}-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(directory, trash)  # atomic: an opener sees the whole entry or none
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _clean_in_use(directory: Path) -> None:
    """Remove an open entry's stray temporary files, under its filelock."""
    try:
        with entry_lock(directory).acquire(timeout=1.0):
            index = read_index(directory)
            remove_orphans(directory, keep_data=index.data_name if index else None)
    except (filelock.Timeout, CorruptIndex, OSError) as exc:
        log.warning("disk cache: cannot clean %s: %s", directory, exc)
