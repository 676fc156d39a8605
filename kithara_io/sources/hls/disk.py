"""``cache="disk"`` for HLS: playlists and segments kept on disk for replay and offline use.

``DiskTransport`` is a Transport whose ``open`` answers a byte range from the disk entry of
the URL when every byte is there, and otherwise asks the network and writes the answer
through (committed when the body is closed). Segment URIs are immutable in HLS practice, so
a held range is served without revalidation. A playlist is fetched from the network first;
when the server cannot be reached (connection failure or 5xx), the copy from the last
successful fetch is used (offline replay; a warning is logged). Keys are written to disk only
when the caller opts in (``HlsKeys(keep=True)``, :mod:`.keyhook`): ``keep_key`` stores a key
body as an entry of its URI, private like every entry, and ``kept_key`` reads it back for
offline replay of an encrypted stream. A failing disk stops the caching (a warning), never
the stream.

Ownership: ``_lock`` guards ``_entries`` and the counter; entries are thread-safe.
"""

from __future__ import annotations

import logging
import threading
from typing import Dict, Mapping, Optional, Tuple, Union

from ...disk import CacheEntry, DiskCache, Validators
from ...errors import StreamError, server_unreachable
from ...retry import Timeout
from .transport import Abort, Body, Transport

log = logging.getLogger(__name__)


class _DiskBody:
    """``[start, end)`` of a resource read from its disk entry (the Body interface)."""

    def __init__(self, entry: CacheEntry, owner: "DiskTransport", url: str, start: int, end: int, total: int) -> None:
        self._entry, self._owner = entry, owner
        self.url, self.start, self.end, self.total, self.position = url, start, end, total, start

    def read(self, limit: int) -> bytes:
        n = min(limit, self.end - self.position)
        out = bytearray(n)
        self._entry.read_into(self.position, memoryview(out))
        self.position += n
        self._owner._count_disk(n)
        return bytes(out)

    def close(self) -> None:
        pass


class _WriteThrough:
    """A network Body whose pieces are written to the entry as they are read."""

    def __init__(self, body: Body, owner: "DiskTransport", entry: CacheEntry) -> None:
        self._body, self._owner, self._entry = body, owner, entry
        self.url, self.start, self.end, self.total = body.url, body.start, body.end, body.total

    @property
    def position(self) -> int:
        return self._body.position

    def read(self, limit: int) -> bytes:
        pos = self._body.position
        data = self._body.read(limit)
        if data:
            self._owner._store(self._entry, pos, data)
        return data

    def close(self) -> None:
        self._body.close()
        self._owner._commit(self._entry)


class DiskTransport(Transport):
    def __init__(
        self,
        cache: DiskCache,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Timeout = Timeout(),
        verify: Union[bool, str] = True,
        max_redirects: int = 10,
        cert: Union[None, str, Tuple[str, str]] = None,
        home: Optional[str] = None,
    ) -> None:
        super().__init__(headers, timeout, verify, max_redirects, cert, home)
        self._cache = cache
        self._lock = threading.Lock()
        self._entries: Dict[str, CacheEntry] = {}
        self._broken = False
        self.bytes_from_disk = 0

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            try:
                entry.close()
            except OSError as exc:
                log.warning("disk cache: %s", exc)
        super().close()

    # -- the Transport interface ---------------------------------------------------------
    def open(self, url: str, start: int = 0, end: Optional[int] = None, abort: Optional[Abort] = None):
        entry = self._entry(url)
        held = entry.validators() if entry is not None else None
        if entry is not None and held is not None and held.size is not None:
            stop = held.size if end is None else min(end, held.size)
            if start < stop and entry.present().contains(start, stop):
                return _DiskBody(entry, self, url, start, stop, held.size)
        body = self._open_network(url, start, end, abort)
        if entry is None or body.total is None or not self._pin(entry, body.total):
            return body
        return _WriteThrough(body, self, entry)

    def head_length(self, url: str, abort: Optional[Abort] = None) -> Optional[int]:
        entry = self._entry(url)
        held = entry.validators() if entry is not None else None
        if held is not None and held.size is not None:
            return held.size  # the length of the copy on disk: no request
        return super().head_length(url, abort)

    def text(self, url: str, abort: Optional[Abort] = None):
        try:
            text, content_type, final = super().text(url, abort)
        except StreamError as exc:
            cached = self._cached_text(url) if server_unreachable(exc) else None
            if cached is None:
                raise
            log.warning("HLS playlist %s: server unreachable (%s); using the disk copy", url, exc)
            return cached, None, url
        self._save_text(url, text)
        return text, content_type, final

    # -- internals -----------------------------------------------------------------------
    def _entry(self, url: str) -> Optional[CacheEntry]:
        with self._lock:
            if self._broken:
                return None
            entry = self._entries.get(url)
            if entry is not None:
                return entry
            try:
                entry = self._entries[url] = self._cache.open_entry(url)
            except OSError as exc:
                self._stop(exc)
                return None
            return entry

    def _count_disk(self, n: int) -> None:
        with self._lock:
            self.bytes_from_disk += n

    def _pin(self, entry: CacheEntry, total: int) -> bool:
        try:
            held = entry.validators()
            if held is None or held.size != total:
                entry.reset(Validators(total))
            return True
        except OSError as exc:
            self._stop(exc)
            return False

    def _store(self, entry: CacheEntry, pos: int, data: bytes) -> None:
        try:
            entry.write(pos, data)
        except (OSError, ValueError) as exc:
            self._stop(exc)

    def _commit(self, entry: CacheEntry) -> None:
        try:
            entry.commit()
        except OSError as exc:
            self._stop(exc)

    def _stop(self, exc: BaseException) -> None:
        with self._lock:
            already, self._broken = self._broken, True
        if not already:
            log.warning("disk cache: not caching HLS parts any more: %s", exc)

    def keep_key(self, uri: str, data: bytes) -> None:
        """Keep the body of key ``uri`` on disk (the caller opted in)."""
        self._save(uri, data)

    def kept_key(self, uri: str) -> Optional[bytes]:
        """The body of key ``uri`` kept on disk, or None."""
        return self._cached(uri)

    def _save_text(self, url: str, text: str) -> None:
        self._save(url, text.encode("utf-8"))

    def _cached_text(self, url: str) -> Optional[str]:
        data = self._cached(url)
        return None if data is None else data.decode("utf-8", errors="replace")

    def _save(self, url: str, data: bytes) -> None:
        entry = self._entry(url)
        if entry is None or not data:
            return
        try:
            entry.reset(Validators(len(data)), new_version=True)  # live playlists change, maybe not their length
            entry.write(0, data)
            entry.commit()
        except OSError as exc:
            self._stop(exc)

    def _cached(self, url: str) -> Optional[bytes]:
        entry = self._entry(url)
        held = entry.validators() if entry is not None else None
        if entry is None or held is None or not held.size or not entry.present().contains(0, held.size):
            return None
        out = bytearray(held.size)
        entry.read_into(0, memoryview(out))
        return bytes(out)
