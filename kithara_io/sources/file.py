"""Local files through the same Stream API: positional reads, no threads, no cache."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from typing import List, Optional, Tuple, Union

from ..errors import StreamError
from ..events import EventBus
from ..planning import Priority
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


class LocalFileReader:
    """Blocking positional reads of a local file."""

    def __init__(self, path: str) -> None:
        self.url = path
        try:
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as exc:
            raise StreamError("cannot open local file", url=path, cause=exc) from exc
        self.size = os.fstat(self._fd).st_size
        self.error: Optional[BaseException] = None
        self.events = EventBus(path)  # nothing to download: no request events
        self.priority = Priority.HIGH
        self._served = 0
        self._reads = 0

    def set_priority(self, priority: Union[Priority, str]) -> None:
        self.priority = Priority.parse(priority)  # no fetches to reorder

    def read_at(self, pos: int, out: memoryview) -> int:
        done = 0
        while done < len(out):
            n = os.preadv(self._fd, [out[done:]], pos + done)
            if n == 0:
                break
            done += n
        self._served += done
        self._reads += 1
        return done

    def read_bytes(self, pos: int, n: int) -> bytes:
        data = os.pread(self._fd, n, pos)
        if 0 < len(data) < n:  # a short read before the end: fill up the usual way
            rest = bytearray(n - len(data))
            data += bytes(rest[: self.read_at(pos + len(data), memoryview(rest))])
        self._served += len(data)
        self._reads += 1
        return data

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        return None, None, None  # no server

    def buffered(self) -> List[Tuple[int, int]]:
        return [(0, self.size)] if self.size else []

    def stats(self) -> StreamStats:
        return StreamStats(bytes_served=self._served, cache_hits=self._reads)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
