"""POSIX file primitives of the disk cache: an entry's file names, whole positional reads
and writes, durable directory updates, the cross-process "in use" mark, and a data file that
several threads use at once.

The in-use mark is ``fcntl.flock(LOCK_SH)`` on the entry's ``inuse`` file, held for as long
as a ``CacheEntry`` is open; eviction removes an entry only after taking ``LOCK_EX | LOCK_NB``
on the same file, so it skips any entry that some process has open. flock locks belong to
the open file and the kernel drops them when the process dies (also on SIGKILL), so a crash
never leaves an entry marked in use. ``filelock.FileLock`` (which guards index commits) is
exclusive only, and its ``ReadWriteLock`` is a SQLite database per lock, hence plain flock
here. POSIX only, like ``os.pwrite``.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Optional

INDEX_NAME = "index.json"
TMP_PREFIX = INDEX_NAME + ".tmp."  # + "<pid>.<token>": an index being written
DATA_PREFIX = "data."  # + generation: the sparse data file of one version of the resource
LOCK_NAME = "lock"  # filelock: one commit at a time, across processes
INUSE_NAME = "inuse"  # flock LOCK_SH while open; its mtime is the entry's last use
FILE_MODE = 0o600  # cached bytes and URLs are the user's business: private, whatever the umask
DIR_MODE = 0o700

_CONTENDED = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)


def pwrite_all(fd: int, data: memoryview, pos: int) -> None:
    """Write all of ``data`` at ``pos`` (``os.pwrite`` may write less than asked)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], pos + done)


def pread_into(fd: int, out: memoryview, pos: int) -> int:
    """Fill ``out`` from ``pos``; returns the bytes read (fewer only at end of file)."""
    done = 0
    while done < len(out):
        n = os.preadv(fd, [out[done:]], pos + done)
        if n == 0:
            break
        done += n
    return done


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create the directory ``path`` (parents as needed) readable by the user only; an
    existing one is left as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, DIR_MODE)  # the umask may have taken bits away


def create_private(path: Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` of a file readable by the user only; an existing
    file of ours is made private too (a cache written by an older version)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except PermissionError:  # not our file (a shared directory): leave its mode alone
        pass
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_sparse(path: Path, size: int) -> None:
    """Create ``path`` (it must not exist) with ``size`` bytes and no blocks, durably."""
    fd = create_private(path, os.O_RDWR | os.O_EXCL)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def same_file(fd: int, path: Path) -> bool:
    """True if ``path`` still names the file open as ``fd`` (not removed or replaced)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    there = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _open_mark(directory: Path) -> Optional[int]:
    try:
        return create_private(directory / INUSE_NAME, os.O_RDWR)
    except FileNotFoundError:  # the directory was just evicted
        return None


def hold_in_use(directory: Path) -> Optional[int]:
    """Mark the entry in use (shared flock) and touch its last use; returns the fd to pass
    to ``release_in_use``, or None if the directory was evicted meanwhile (create it again
    and retry)."""
    fd = _open_mark(directory)
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while an evictor renames the directory
        if same_file(fd, directory / INUSE_NAME):
            os.utime(fd)
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def release_in_use(fd: int) -> None:
    """Touch the last use and drop the in-use mark."""
    try:
        os.utime(fd)
    finally:
        os.close(fd)  # closing drops the flock


def try_exclusive(directory: Path) -> Optional[int]:
    """The entry locked against every user (an fd to close), or None if a process has it open."""
    fd = _open_mark(directory)
    if fd is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in _CONTENDED:
            return None
        raise
    if same_file(fd, directory / INUSE_NAME):
        return fd
    os.close(fd)
    return None


class DataFile:
    """An open data file that threads read and write outside the entry lock.

    ``pin`` before a pread/pwrite and ``unpin`` after; ``retire`` closes the fd once the last
    user has unpinned, so an fd is never closed (and its number reused by another file) under
    a running read or write. Not thread-safe itself: the owning ``CacheEntry`` calls every
    method under its lock.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self._users = 0
        self._retired = False

    @classmethod
    def open(cls, path: Path) -> "DataFile":
        return cls(path, os.open(path, os.O_RDWR | os.O_CLOEXEC))

    def pin(self) -> None:
        assert not self._retired, "pinning a retired data file"
        self._users += 1

    def unpin(self) -> None:
        self._users -= 1
        self._close_if_done()

    def retire(self) -> None:
        self._retired = True
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self._retired and self._users == 0 and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
