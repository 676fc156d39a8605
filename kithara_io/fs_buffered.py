"""``KitharaBufferedFile``: a kithara stream behind fsspec's ``AbstractBufferedFile``.

fsspec's caching filesystems (``blockcache::``, ``cached::``) only wrap files of that class:
they replace the file's cache with their own, which calls ``_fetch_range(start, end)`` for
each block of ``blocksize`` bytes. Here ``_fetch_range`` reads the block from one
:class:`~kithara_io.Stream` (its own cache, retries and validators apply underneath).

Threads: one lock per file makes each ``_fetch_range`` (a seek and a read of the one stream)
a single step; it is taken before the stream's own lock, never the other way.
"""

from __future__ import annotations

import io
import threading
from typing import Any, Optional

from fsspec.spec import AbstractBufferedFile

from .fs_ranges import read_range
from .stream import Stream


class KitharaBufferedFile(AbstractBufferedFile):
    """Read-only ``AbstractBufferedFile`` over ``stream``, which it owns (closed with it)."""

    def __init__(
        self,
        fs: Any,
        path: str,
        stream: Stream,
        block_size: Optional[int] = None,
        cache_type: str = "none",
        cache_options: Any = None,
        **kwargs: Any,
    ) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # _fetch_range seeks and reads the one stream
        try:
            size = stream.size
            if size is None and stream.seekable():  # a length known only at the end of the body
                size = stream.seek(0, io.SEEK_END)
            if size is None:
                raise io.UnsupportedOperation(
                    f"kithara: {stream.name} has no length (a live stream): fsspec's block caches need"
                    " one; read it with fsspec.open('kithara::URL') instead, or keep it on disk with"
                    " the storage option cache='disk'"
                )
            super().__init__(
                fs,
                path,
                mode="rb",
                block_size=block_size,
                cache_type=cache_type,
                cache_options=cache_options,
                size=size,
                **kwargs,
            )
        except BaseException:
            stream.close()
            raise

    def _fetch_range(self, start: int, end: int) -> bytes:
        with self._lock:
            return read_range(self._stream, start, end)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._stream.close()
