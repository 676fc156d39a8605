"""``KitharaFileSystem``: kithara-io as an fsspec filesystem (protocol ``"kithara"``).

Registered through the ``fsspec.specs`` entry point, so pandas, xarray, pyarrow and Dask
reach it by URL without importing kithara-io::

    pd.read_csv("kithara::https://host/table.csv", storage_options={"cache": "disk"})
    with fsspec.open("kithara::https://host/a.flac") as f:   # f is a kithara_io.Stream
        data, rate = soundfile.read(f)

Paths are full http(s) URLs (``file://`` URLs, local paths and object store URLs work too,
as with ``kithara_io.open``). Storage options are the keyword arguments of
``kithara_io.open``: ``headers``, ``priority``, ``cache`` and the
:class:`~kithara_io.options.StreamOptions` fields; an object store's credentials and
endpoint with fsspec's names (s3fs, gcsfs, adlfs), flat, as ``storage_options={...}`` or
under the store's protocol (``{"s3": {"key": ...}}``)::

    pd.read_csv("kithara::s3://bucket/table.csv", storage_options={"endpoint_url": ..., "anon": True})

fsspec looks up the class of the inner protocol of ``kithara::s3://`` too: with s3fs (gcsfs,
adlfs) installed that is theirs, else the one ``kithara_io.fs`` registers when imported (see
:mod:`~kithara_io.fs_stores`), so a process without them imports ``kithara_io.fs`` first;
``kithara://s3://bucket/key`` needs neither. Read-only: there is no listing, writing or
deleting.

Every process uses its own default Downloader and connections (a forked child starts a new
one); the disk cache (``cache="disk"``) is shared by the processes of one machine.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence

from .extras import missing_extra

try:
    from fsspec import AbstractFileSystem
except ModuleNotFoundError as exc:
    raise missing_extra("fsspec", "The kithara:// fsspec filesystem", exc) from exc

from . import api, fs_stores
from .engine.default import default_downloader
from .engine.downloader import Downloader
from .errors import HTTPStatusError, StreamError
from .fs_buffered import KitharaBufferedFile
from .fs_ranges import (
    PROBE,
    Range,
    StreamPool,
    as_offset,
    block_tuning,
    close_quietly,
    is_empty,
    per_range,
    plan_ranges,
    range_tuning,
    read_range,
)
from .options import StreamOptions
from .reading.planning import Priority
from .sources.stores import KINDS, OPTION_NAMES
from .stream import Stream

__all__ = ["KitharaFileSystem", "RemoteFileNotFoundError"]

_PROTOCOL = "kithara"
_OPEN_ARGS = ("headers", "priority", "cache", "downloader", "storage_options")

fs_stores.register()  # kithara::s3://... without s3fs (see fs_stores)


class RemoteFileNotFoundError(HTTPStatusError, FileNotFoundError):
    """HTTP 404 or 410: also a ``FileNotFoundError``, what fsspec's callers expect."""


class KitharaFileSystem(AbstractFileSystem):
    """Read-only filesystem of URLs, each opened as a :class:`~kithara_io.Stream`.

    ``KitharaFileSystem(headers=None, priority="high", cache=None, downloader=None,
    **stream_options)``; ``fo`` is the URL of a chained ``kithara::URL`` (fsspec opens the
    path ``""`` then; ``target_protocol`` is not needed: the URL names its scheme).
    ``downloader`` (default: the process's own) does not survive pickling to another
    process; every other option does. ``block_size``, ``cache_type`` and ``cache_options``,
    the file options of fsspec's ``HTTPFileSystem``, are defaults of the same keywords of
    :meth:`open`.
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
        # HTTPFileSystem's file options: defaults of the same keywords of open()
        self._file_options = {k: options.pop(k) for k in list(options) if k in _FILE_OPTIONS}
        super().__init__(**own)
        store = _store_options(options)
        if target_protocol in KINDS:  # kithara::s3://b/k: fsspec hands the inner URL over split
            fo = fo if "://" in fo else f"{target_protocol}://{fo}"
            store.update(target_options or {})
            target_options = None
        self._fo = fo
        self._options = {**(target_options or {}), **options}
        if store:
            self._options["storage_options"] = store
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
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Optional[int] = None,
        autocommit: bool = True,
        cache_options: Any = None,
        cache_type: Optional[str] = None,
        size: Optional[int] = None,
        **kwargs: Any,
    ) -> Any:
        """The kithara-io Stream itself: an ``io.RawIOBase`` whose reads return fewer bytes
        only at the end, seekable with O(1) ``tell`` and a ``size``: everything fsspec's
        readers ask of a ``"rb"`` file (buffering it again would only add a copy).

        ``cache_type="none"``, which fsspec's caching filesystems (``blockcache::``) ask
        for because they put their own cache in its place, gives a
        :class:`~kithara_io.fs_buffered.KitharaBufferedFile` of ``block_size`` blocks
        instead. ``size`` and ``autocommit`` are accepted and not needed: the length comes
        with the first response."""
        if mode != "rb":
            raise NotImplementedError(f"kithara: read-only filesystem (mode {mode!r})")
        url = self._url(path)
        if (cache_type or self._file_options.get("cache_type")) != "none":
            return self._stream(url, kwargs)
        block_size = block_size or self._file_options.get("block_size") or KitharaBufferedFile.DEFAULT_BLOCK_SIZE
        stream = self._stream(url, kwargs, **block_tuning(block_size))
        # the path as given: the caching filesystem files its blocks under it
        return KitharaBufferedFile(self, path, stream, block_size=block_size, cache_options=cache_options)

    def _stream(self, url: str, overrides: Dict[str, Any], **tuning: Any) -> Stream:
        # fsspec's per-call settings (xarray passes cache_type, ls passes refresh) mean
        # nothing here: the stream's own cache and read-ahead take their place.
        overrides = {k: v for k, v in overrides.items() if k not in _FSSPEC_CALL_OPTIONS}
        options = {**self._options, **overrides}
        _check_options(options)
        for name, value in tuning.items():
            options.setdefault(name, value)
        if "min_fetch" in tuning:  # a range's own request size, within the caller's bound
            options["min_fetch"] = min(options["min_fetch"], options.get("max_fetch", StreamOptions.max_fetch))
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
        server sent them. One request of a few bytes (through the disk cache, if one is set)."""
        url = self._url(path)
        with self._stream(url, kwargs, first_fetch=PROBE, tail=0, read_ahead=1, read_behind=0) as f:
            out: Dict[str, Any] = {"name": url, "size": f.size, "type": "file"}
            if f.etag is not None:
                out["ETag"] = f.etag
            if f.last_modified is not None:
                out["Last-Modified"] = f.last_modified
        return out

    def expand_path(
        self, path: Any, recursive: bool = False, maxdepth: Optional[int] = None, **kwargs: Any
    ) -> List[str]:
        """The URLs as given, in order: HTTP cannot list, so no URL is a pattern (a ``?``
        starts a query; fsspec's default would glob it, and drop the URL from ``cat``)."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        paths = [path] if isinstance(path, str) else list(path)
        return list(dict.fromkeys(self._strip_protocol(p) for p in paths))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> List[Any]:
        """HTTP cannot list: a URL lists as itself."""
        entry = self.info(path, **kwargs)
        return [entry] if detail else [entry["name"]]

    def exists(self, path: str, strict: bool = True, **kwargs: Any) -> bool:
        """False for 404/410. Other failures (server unreachable, 401, 403...) are raised;
        with ``strict=False`` (the default of fsspec's ``http``) they are False too."""
        try:
            self.info(path, **kwargs)
        except FileNotFoundError:
            return False
        except StreamError:
            if strict:
                raise
            return False
        return True

    def ukey(self, path: str) -> str:
        """The ETag; without one, the Last-Modified and size."""
        info = self.info(path)
        return info.get("ETag") or f"{info.get('Last-Modified')}:{info['size']}"

    # -- bytes ---------------------------------------------------------------------------
    def cat_file(self, path: str, start: Optional[int] = None, end: Optional[int] = None, **kwargs: Any) -> bytes:
        """Bytes ``[start, end)`` of the URL; negative values count from the end, as slices.
        A body without a length is read up to ``end`` (to its end when counting from it)."""
        start, end = as_offset(start, "start"), as_offset(end, "end")
        url = self._url(path)
        if is_empty(start, end):  # as cat_ranges and fsspec's http: no request
            return b""
        with self._stream(url, kwargs, **range_tuning(start, end)) as f:
            return read_range(f, start, end)

    def cat_ranges(
        self,
        paths: Sequence[str],
        starts: Any,
        ends: Any,
        max_gap: Optional[int] = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> List[Any]:
        """Many ranges at once. ``starts``/``ends``: one value for all, or one per path (a
        list or a numpy array); negative values count from the end. Ranges of one URL whose
        gap is at most ``max_gap`` bytes (None: 0, ranges that touch or overlap, as fsspec's
        ``merge_offset_ranges``) are read as one block, at most ``max_fetch`` long, and split
        back. The blocks are read concurrently (one thread per free fetch place of the
        Downloader), each on a stream of its URL from a small pool. Failures are returned in
        place (``on_error="return"``) or raised."""
        if isinstance(paths, str):
            raise TypeError("paths must be a list of URLs, not one URL")
        urls = [self._url(p) for p in paths]
        starts = per_range(starts, len(urls), "starts")
        ends = per_range(ends, len(urls), "ends")
        gap = as_offset(max_gap, "max_gap") or 0  # None: 0
        if gap < 0:
            raise ValueError(f"max_gap must be >= 0, not {gap}")
        max_block = {**self._options, **kwargs}.get("max_fetch", StreamOptions.max_fetch)
        plan = plan_ranges(urls, starts, ends, gap, max_block)
        blocks = self._read_blocks(plan.blocks, kwargs)
        out: List[Any] = []
        for piece in plan.pieces:
            if piece is None:
                out.append(b"")
                continue
            block, lo, hi = piece
            data = blocks[block]
            if isinstance(data, BaseException):
                if on_error != "return":
                    raise data
                out.append(data)
            else:
                out.append(data[lo:hi])
        return out

    def _read_blocks(self, blocks: List[Range], overrides: Dict[str, Any]) -> List[Any]:
        """Each block's bytes, or the exception that reading it raised. The blocks of one
        URL are read by one stream's ``read_ranges`` (its fetches run concurrently through
        the Downloader: one request per block, and one first request per URL); the URLs
        are read concurrently, one thread each (up to the Downloader's fetch places)."""
        if not blocks:
            return []
        by_url: Dict[str, List[int]] = {}
        for b, (url, _, _) in enumerate(blocks):
            by_url.setdefault(url, []).append(b)
        out: List[Any] = [None] * len(blocks)
        workers = min(len(by_url), self._downloader().max_concurrent)
        with ThreadPoolExecutor(workers, "kithara-cat") as threads:
            futures = {
                url: threads.submit(self._read_url_blocks, url, [blocks[b] for b in bs], overrides)
                for url, bs in by_url.items()
            }
            for url, future in futures.items():
                for b, data in zip(by_url[url], future.result()):
                    out[b] = data
        return out

    def _read_url_blocks(self, url: str, blocks: List[Range], overrides: Dict[str, Any]) -> List[Any]:
        """The blocks of one URL through one stream (``read_ranges``); a body without a
        length (not seekable by offset until its end) block by block, as ``cat_file``."""
        first = PROBE
        for _, start, end in blocks:  # a block at the start: the open's own request
            if start in (0, None) and end is not None and 0 < end <= StreamOptions.max_fetch:
                first = max(first, end)
        try:
            stream = self._stream(url, overrides, tail=0, first_fetch=first, read_ahead=1, read_behind=0)
        except Exception as exc:  # noqa: BLE001 - each block's error is its result
            return [exc] * len(blocks)
        try:
            if stream.size is not None and stream.seekable():
                try:
                    return stream.read_ranges([(start, end) for _, start, end in blocks], max_gap=0)
                except Exception as exc:  # noqa: BLE001 - each block's error is its result
                    return [exc] * len(blocks)
        finally:
            close_quietly(stream)
        out: List[Any] = []
        with StreamPool(lambda url, tuning: self._stream(url, overrides, **tuning)) as pool:
            for _, start, end in blocks:
                try:
                    out.append(pool.read(url, start, end, range_tuning(start, end)))
                except Exception as exc:  # noqa: BLE001 - on_error="return": each path's error is its result
                    out.append(exc)
        return out

    def _downloader(self) -> Downloader:
        return self._options.get("downloader") or default_downloader()


def _store_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Take the object store options out of ``options``: ``storage_options={...}`` and
    fsspec's names of s3fs, gcsfs and adlfs given flat (``key``, ``endpoint_url``...)."""
    store = dict(options.pop("storage_options", None) or {})
    for name in [k for k in options if k in OPTION_NAMES]:
        store[name] = options.pop(name)
    return store


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
_FSSPEC_CALL_OPTIONS = frozenset({"cache_type", "cache_options", "block_size", "refresh", "size", "autocommit"})
# Options of fsspec's HTTPFileSystem for its files, taken by KitharaFileSystem too.
_FILE_OPTIONS = frozenset({"cache_type", "cache_options", "block_size"})
