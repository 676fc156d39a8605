"""``KitharaFileSystem``: kithara-io as an fsspec filesystem (protocol ``"kithara"``).

Registered through the ``fsspec.specs`` entry point, so pandas, xarray, pyarrow and Dask
reach it by URL without importing kithara-io::

    pd.read_csv("kithara::https://host/table.csv", storage_options={"cache": "disk"})
    with fsspec.open("kithara::https://host/a.flac") as f:   # f is a kithara_io.Stream
        data, rate = soundfile.read(f)

Paths are full http(s) URLs (``file://`` URLs and local paths work too, as with
``kithara_io.open``). Storage options are the keyword arguments of ``kithara_io.open``:
``headers``, ``priority``, ``cache`` and the :class:`~kithara_io.options.StreamOptions`
fields. Read-only: there is no listing, writing or deleting over HTTP.

Every process uses its own default Downloader and connections (a forked child starts a new
one); the disk cache (``cache="disk"``) is shared by the processes of one machine.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

from fsspec import AbstractFileSystem

from . import api
from .downloader import Downloader, default_downloader
from .errors import HTTPStatusError, StreamError
from .options import StreamOptions
from .planning import Priority
from .stream import Stream

__all__ = ["KitharaFileSystem", "RemoteFileNotFoundError"]

_PROTOCOL = "kithara"
_OPEN_ARGS = ("headers", "priority", "cache", "downloader")
_PIECE = 8 << 20  # cat_file reads in pieces of this size: memory stays near cache_budget


class RemoteFileNotFoundError(HTTPStatusError, FileNotFoundError):
    """HTTP 404 or 410: also a ``FileNotFoundError``, what fsspec's callers expect."""


class KitharaFileSystem(AbstractFileSystem):
    """Read-only filesystem of URLs, each opened as a :class:`~kithara_io.Stream`.

    ``KitharaFileSystem(headers=None, priority="high", cache=None, downloader=None,
    **stream_options)``; ``fo`` is the URL of a chained ``kithara::URL`` (fsspec opens the
    path ``""`` then; ``target_protocol`` is not needed: the URL names its scheme). ``downloader`` (default: the process's own) does not survive pickling
    to another process; every other option does.
    """

    protocol = (_PROTOCOL,)
    root_marker = ""

    def __init__(
        self,
        fo: str = "",
        target_protocol: Optional[str] = None,
        target_options: Optional[Dict[str, Any]] = None,
        **options: Any,
    ) -> None:
        # fsspec's own options (listings cache, instance cache) go to the base class.
        own = {k: options.pop(k) for k in list(options) if k in _FSSPEC_OPTIONS}
        super().__init__(**own)
        self._fo = fo
        self._options = {**(target_options or {}), **options}
        _check_options(self._options)

    # -- paths ---------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """``kithara://URL`` and ``kithara::URL`` -> ``URL``; a URL is kept whole (no
        trailing-slash stripping: ``http://host/dir/`` and ``http://host/dir`` differ)."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        for prefix in (_PROTOCOL + "://", _PROTOCOL + "::"):
            if path.startswith(prefix):
                return path[len(prefix) :]
        return path

    def unstrip_protocol(self, name: str) -> str:
        return name if name.startswith(_PROTOCOL + "::") else f"{_PROTOCOL}::{name}"

    def _url(self, path: str) -> str:
        url = self._strip_protocol(path)
        if not url:
            if not self._fo:
                raise ValueError("kithara: no URL given (a path, or fo= of a chained kithara::URL)")
            return self._fo
        return url

    # -- opening -------------------------------------------------------------------------
    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> Stream:
        """The kithara-io Stream itself: an ``io.RawIOBase`` whose reads return fewer bytes
        only at the end, seekable with O(1) ``tell`` and a ``size``: everything fsspec's
        readers ask of a ``"rb"`` file (buffering it again would only add a copy)."""
        if mode != "rb":
            raise NotImplementedError(f"kithara: read-only filesystem (mode {mode!r})")
        return self._stream(self._url(path), kwargs)

    def _stream(self, url: str, overrides: Dict[str, Any], **tuning: Any) -> Stream:
        # fsspec's per-call settings (xarray passes cache_type, ls passes refresh) mean
        # nothing here: the stream's own cache and read-ahead take their place.
        overrides = {k: v for k, v in overrides.items() if k not in _FSSPEC_CALL_OPTIONS}
        options = {**self._options, **overrides}
        _check_options(options)
        for name, value in tuning.items():
            options.setdefault(name, value)
        try:
            return api.open(url, **options)
        except HTTPStatusError as exc:
            if exc.status in (404, 410) and not isinstance(exc, FileNotFoundError):
                raise RemoteFileNotFoundError(
                    exc.status, exc.reason, url=exc.url or url, byte_range=exc.byte_range, cause=exc.cause
                ) from None
            raise

    # -- metadata ------------------------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> Dict[str, Any]:
        """``name``, ``size``, ``type`` ("file"), and ``ETag`` / ``Last-Modified`` when the
        server sent them. One 1-byte range request (through the disk cache, if one is set)."""
        url = self._url(path)
        with self._stream(url, kwargs, first_fetch=1, tail=0) as f:
            out: Dict[str, Any] = {"name": url, "size": f.size, "type": "file"}
            if f.etag is not None:
                out["ETag"] = f.etag
            if f.last_modified is not None:
                out["Last-Modified"] = f.last_modified
        return out

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> List[Any]:
        """HTTP cannot list: a URL lists as itself."""
        entry = self.info(path, **kwargs)
        return [entry] if detail else [entry["name"]]

    def exists(self, path: str, **kwargs: Any) -> bool:
        """False for 404/410; other failures (server unreachable, 403...) are raised."""
        try:
            self.info(path, **kwargs)
        except FileNotFoundError:
            return False
        return True

    def ukey(self, path: str) -> str:
        """The ETag; without one, the Last-Modified and size."""
        info = self.info(path)
        return info.get("ETag") or f"{info.get('Last-Modified')}:{info['size']}"

    # -- bytes ---------------------------------------------------------------------------
    def cat_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None, **kwargs: Any) -> bytes:
        """Bytes ``[start, end)`` of the URL; negative values count from the end, as slices."""
        url = self._url(path)
        with self._stream(url, kwargs, **_range_tuning(start, end)) as f:
            return _read_range(f, start, end)

    def cat_ranges(self, paths: List[str], starts: Any, ends: Any, max_gap: Any = None,
                   on_error: str = "return", **kwargs: Any) -> List[Any]:
        """Many ranges at once: the reads run concurrently (one thread per free fetch
        place of the Downloader), each on a stream of its URL from a small pool, so the
        Downloader has them all in flight. Failures are returned in place (``on_error=
        "return"``) or raised."""
        if max_gap is not None:
            raise NotImplementedError("kithara: max_gap is not supported")
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if not len(starts) == len(ends) == len(paths):
            raise ValueError("paths, starts and ends differ in length")
        if not paths:
            return []
        workers = min(len(paths), self._downloader().max_concurrent)
        with _StreamPool(self, kwargs) as pool, ThreadPoolExecutor(workers, "kithara-cat") as threads:
            futures = [
                threads.submit(pool.read, self._url(p), s, e) for p, s, e in zip(paths, starts, ends)
            ]
            out: List[Any] = []
            for future in futures:
                try:
                    out.append(future.result())
                except Exception as exc:
                    if on_error != "return":
                        raise
                    out.append(exc)
        return out

    def _downloader(self) -> Downloader:
        return self._options.get("downloader") or default_downloader()


class _StreamPool:
    """Idle streams by URL, shared by the threads of one ``cat_ranges`` call: a thread
    takes one (or opens a new one) for each range and gives it back. Closed on exit."""

    def __init__(self, fs: KitharaFileSystem, overrides: Dict[str, Any]) -> None:
        self._fs = fs
        self._overrides = overrides
        self._lock = threading.Lock()  # guards _idle and _all
        self._idle: Dict[str, List[Stream]] = {}
        self._all: List[Stream] = []

    def read(self, url: str, start: Optional[int], end: Optional[int]) -> bytes:
        with self._lock:
            idle = self._idle.get(url)
            stream = idle.pop() if idle else None
        if stream is None:
            stream = self._fs._stream(url, self._overrides, **_range_tuning(start, end))
            with self._lock:
                self._all.append(stream)
        try:
            return _read_range(stream, start, end)
        finally:
            with self._lock:
                self._idle.setdefault(url, []).append(stream)

    def __enter__(self) -> "_StreamPool":
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            streams, self._all, self._idle = self._all, [], {}
        for stream in streams:
            try:
                stream.close()
            except StreamError:  # its failure was already raised by (or returned for) a read
                pass


def _range_tuning(start: Optional[int], end: Optional[int]) -> Dict[str, int]:
    """Stream options for reading one range: no tail prefetch, and a first request (which
    must start at 0 and learns the length) that is the range itself when it starts there."""
    if (start or 0) == 0 and end is not None and end > 0:
        return {"first_fetch": min(end, StreamOptions.first_fetch), "tail": 0}
    return {"first_fetch": 1, "tail": 0}


def _read_range(f: Stream, start: Optional[int], end: Optional[int]) -> bytes:
    size = f.size
    lo, hi, _ = slice(start, end).indices(size)
    out = bytearray(max(0, hi - lo))
    f.seek(lo)
    done = 0
    with memoryview(out) as view:
        while done < len(out):
            n = f.readinto(view[done : done + _PIECE])
            if n == 0:  # cannot happen before the size learned at open; guards the loop
                break
            done += n
    del out[done:]
    return bytes(out)


def _check_options(options: Dict[str, Any]) -> None:
    """Unknown or invalid storage options fail here, where the user passed them."""
    stream = {k: v for k, v in options.items() if k not in _OPEN_ARGS}
    try:
        StreamOptions(**stream)
    except TypeError:
        unknown = sorted(set(stream) - set(StreamOptions.names()))
        raise TypeError(
            f"kithara: unknown storage option(s) {unknown}; valid: {list(_OPEN_ARGS) + StreamOptions.names()}"
        ) from None
    if "priority" in options:
        Priority.parse(options["priority"])


# Options AbstractFileSystem itself understands.
_FSSPEC_OPTIONS = frozenset(
    {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache", "asynchronous", "loop"}
)
# Per-call options of fsspec's own buffered files and listings.
_FSSPEC_CALL_OPTIONS = frozenset({"cache_type", "cache_options", "block_size", "refresh"})
