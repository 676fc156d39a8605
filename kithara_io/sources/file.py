"""Local files through the same Stream API: positional reads, no threads, no cache.

Only regular files: a directory, FIFO, character device or ``-`` (stdin) is refused by
:func:`check_regular_file`, since a Stream promises a known length and seeking.
``_lock`` serialises reads with ``close`` (the fd is never closed, nor its number reused,
under a running read) and guards the counters.
"""

from __future__ import annotations

import os
import stat
import threading
import urllib.parse
import urllib.request
from typing import List, Optional, Tuple, Union

from ..errors import StreamClosedError, StreamError
from ..events import EventBus
from ..reading.planning import Priority
from ..stats import StreamStats


def path_from_source(source: str) -> Optional[str]:
    """The local path a source names (a path or a ``file://`` URL), or None for a remote URL."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URL with a remote host is not supported: {source}")
        return urllib.request.url2pathname(parsed.path)
    if parsed.scheme in ("http", "https"):
        return None
    if len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise ValueError(f"unsupported URL scheme {parsed.scheme!r}: {source}")
    return source


def check_regular_file(path: str, mode: Optional[int]) -> None:
    """Refuse what is not a regular file (``mode``: its ``st_mode``; None for ``-``): a
    Stream needs a length and seeking, which pipes, devices and stdin do not have."""
    if mode is not None and stat.S_ISDIR(mode):
        raise StreamError("cannot open local file: it is a directory", url=path)
    if mode is None or not stat.S_ISREG(mode):
        kind = "standard input" if mode is None else _kind(mode)
        raise StreamError(
            f"cannot open local file: {kind} is not a seekable regular file (only regular files are supported)",
            url=path,
        )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "it"


class LocalFileReader:
    """Blocking positional reads of a local regular file."""

    def __init__(self, path: str) -> None:
        self.url = path
        if path == "-":
            check_regular_file(path, None)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused.
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_BINARY", 0))
        except IsADirectoryError:
            check_regular_file(path, stat.S_IFDIR)
            raise
        except OSError as exc:
            raise StreamError("cannot open local file", url=path, cause=exc) from exc
        try:
            info = os.fstat(self._fd)
            check_regular_file(path, info.st_mode)
            os.set_blocking(self._fd, True)
        except BaseException:
            os.close(self._fd)
            raise
        self.size = info.st_size
        self._lock = threading.Lock()
        self.error: Optional[BaseException] = None
        self.events = EventBus(path)  # nothing to download: no request events
        self.priority = Priority.HIGH
        self._served = 0
        self._reads = 0

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it; the fd is shared

    def set_priority(self, priority: Union[Priority, str]) -> None:
        self.priority = Priority.parse(priority)  # no fetches to reorder

    def read_at(self, pos: int, out: memoryview) -> int:
        with self._lock:
            done = self._fill_locked(pos, out)
            self._served += done
            self._reads += 1
        return done

    def read_bytes(self, pos: int, n: int) -> bytes:
        with self._lock:
            self._check_open_locked()
            data = os.pread(self._fd, n, pos)
            if 0 < len(data) < n:  # a short read before the end: fill up the usual way
                rest = bytearray(n - len(data))
                data += bytes(rest[: self._fill_locked(pos + len(data), memoryview(rest))])
            self._served += len(data)
            self._reads += 1
        return data

    def _fill_locked(self, pos: int, out: memoryview) -> int:
        self._check_open_locked()
        done = 0
        while done < len(out):
            n = os.preadv(self._fd, [out[done:]], pos + done)
            if n == 0:
                break
            done += n
        return done

    def _check_open_locked(self) -> None:
        if self._fd < 0:
            raise StreamClosedError("stream closed", url=self.url)

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        return None, None, None  # no server

    def buffered(self) -> List[Tuple[int, int]]:
        return [(0, self.size)] if self.size else []

    def stats(self) -> StreamStats:
        with self._lock:
            return StreamStats(bytes_served=self._served, cache_hits=self._reads)

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
