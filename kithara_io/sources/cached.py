"""DiskCachedSource: an HttpSource whose bytes also live in a disk cache entry (issue #7).

RemoteReader fetches through it exactly as through an HttpSource. A range the entry holds
is answered from disk (a ``DiskBody``); any other range goes to the network, no further
than the next byte the entry holds, and what arrives is written through to the entry
(``TeeBody``) and committed when the body ends and every ``commit_every`` bytes. Before
asking the network, the entry picks up what other processes committed meanwhile.

Revalidation, once per open and before any cached byte is served: the first fetch of an
entry that holds bytes asks whether its version is still the server's. A range on disk is
asked for with a conditional GET (If-None-Match / If-Modified-Since; 304 means current),
any other range with a plain ranged GET whose validators are compared. A changed resource
resets the entry: the old bytes are dropped, never mixed with the new ones. When the
server cannot be reached (or answers 5xx) and the range is on disk, the stream replays
offline: cached bytes are served; a read reaching a gap fails once the gap's one fetch has
spent its retries (RemoteReader: ``_unreachable``).

Thread safety: ``_lock`` guards ``_state`` and the entry's pinning (``_adopt``);
``_revalidating`` serialises the one revalidation, so fetch threads arriving meanwhile
wait for its answer instead of asking again.
"""

from __future__ import annotations

import enum
import logging
import threading
from typing import Callable, Optional, Tuple

from ..disk import CacheEntry
from ..errors import ConnectionFailedError, StreamError, server_unreachable
from ..reading.ranges import RangeSet
from .base import Body, Validators
from .http import AbortHandle, HttpSource

log = logging.getLogger(__name__)

_COMMIT_EVERY = 8 * 1024 * 1024


class _State(enum.Enum):
    FRESH = "fresh"  # the entry held nothing: the first answer pins its version
    UNCHECKED = "unchecked"  # the entry holds bytes not yet revalidated in this open
    CURRENT = "current"  # revalidated (or reset to the server's version)
    OFFLINE = "offline"  # the server could not be asked: cached bytes are served as they are


class DiskBody:
    """``[start, end)`` of the resource read from the cache entry; the Body interface."""

    from_disk = True
    ranged = True

    def __init__(
        self, entry: CacheEntry, url: str, start: int, end: int, total: int, *, requests_sent: int = 0
    ) -> None:
        self.requests_sent = requests_sent  # 1 when a revalidation request (304) preceded it
        self.url = url
        self.start = start
        self.end = end
        self.total = total
        self.position = start
        self._entry = entry

    def readinto(self, buf: memoryview) -> int:
        n = min(len(buf), self.end - self.position)
        if n <= 0:
            return 0
        try:
            self._entry.read_into(self.position, buf[:n])
        except ValueError as exc:
            # Another process reset the entry between the check that the bytes are held and
            # this read (two processes pinning the same URL at once; the later reset wins).
            # Transient: the retry asks again, and the bytes then come from the network.
            raise ConnectionFailedError(
                "the disk cache entry changed while being read",
                url=self.url,
                byte_range=(self.position, self.end),
                cause=exc,
            ) from exc
        self.position += n
        return n

    def close(self) -> None:
        pass


class TeeBody:
    """A network Body whose bytes are also written to the cache entry. A disk that fails
    (full, read-only) only stops the caching (``on_disk_failure(exc)``), never the stream."""

    from_disk = False
    requests_sent = 1

    def __init__(
        self, body: Body, entry: CacheEntry, commit_every: int, on_disk_failure: Callable[[BaseException], None]
    ) -> None:
        self._body = body
        self._entry = entry
        self._commit_every = commit_every
        self._on_disk_failure = on_disk_failure
        self._uncommitted = 0
        self._writing = True
        self.url, self.start, self.end, self.total, self.ranged = (
            body.url,
            body.start,
            body.end,
            body.total,
            body.ranged,
        )

    @property
    def position(self) -> int:
        return self._body.position

    def readinto(self, buf: memoryview) -> int:
        pos = self._body.position
        n = self._body.readinto(buf)
        if n and self._writing:
            try:
                self._entry.write(pos, buf[:n])
                self._uncommitted += n
                if self._uncommitted >= self._commit_every:
                    self._commit()
            except (OSError, ValueError) as exc:
                self._stop_writing(exc)
        return n

    def close(self) -> None:
        self._body.close()
        if self._writing and self._uncommitted:
            try:
                self._commit()
            except (OSError, ValueError) as exc:
                self._stop_writing(exc)

    def _commit(self) -> None:
        self._entry.commit()
        self._uncommitted = 0

    def _stop_writing(self, exc: BaseException) -> None:
        self._writing = False
        self._on_disk_failure(exc)


class DiskCachedSource:
    """An HttpSource backed by ``entry``; closing it closes both."""

    def __init__(self, http: HttpSource, entry: CacheEntry, *, commit_every: int = _COMMIT_EVERY) -> None:
        self._http = http
        self._entry = entry
        self._commit_every = commit_every
        self._lock = threading.Lock()
        self._revalidating = threading.Lock()
        self._known = entry.validators()
        self._disk_failed = False  # the disk failed once (full, read-only): no more writing
        has_bytes = self._known is not None and bool(entry.present())
        self._state = _State.UNCHECKED if has_bytes else _State.FRESH

    # -- what RemoteReader reads of a source -------------------------------------------
    @property
    def url(self) -> str:
        return self._http.url

    @property
    def pinned(self) -> Optional[Validators]:
        return self._http.pinned

    @property
    def filename(self) -> Optional[str]:
        return self._http.filename  # None when served from disk without the server

    @property
    def supports_ranges(self) -> Optional[bool]:
        ranged = self._http.supports_ranges
        with self._lock:
            state = self._state
        if ranged is None and state in (_State.CURRENT, _State.OFFLINE):
            return True  # the entry answers ranges; the server's support is learnt if it is asked
        return ranged

    @property
    def offline(self) -> bool:
        """True when the server could not be asked and cached bytes are served unchecked."""
        with self._lock:
            return self._state is _State.OFFLINE

    def abort_all(self) -> None:
        self._http.abort_all()

    def new_abort(self) -> AbortHandle:
        return self._http.new_abort()

    def holds(self, pos: int) -> bool:
        """Whether byte ``pos`` of this stream's version is on disk."""
        return self._from_disk(pos, pos + 1) is not None

    def _after_fork_in_child(self) -> None:
        """In a forked child: new locks (a parent thread may have held one), new connections."""
        self._lock = threading.Lock()
        self._revalidating = threading.Lock()
        self._entry._after_fork_in_child()
        self._http._after_fork_in_child()

    def close(self) -> None:
        """Close the connections, then the entry (which commits what is pending). A disk
        that fails here is logged, not raised: the stream itself did not fail."""
        try:
            self._http.close()
        finally:
            try:
                self._entry.close()
            except OSError as exc:
                self._disk_failure(exc)

    def _disk_failure(self, exc: BaseException) -> None:
        """Stop caching, with one warning (the disk is full, read-only or failing)."""
        with self._lock:
            first, self._disk_failed = not self._disk_failed, True
        if first:
            log.warning("disk cache: stopped caching %s: %s", self.url, exc)

    # -- fetching ----------------------------------------------------------------------
    def fetch(self, start: int, end: Optional[int], abort: Optional[AbortHandle] = None) -> Body:
        """``[start, end)`` (``end`` None: to the end) from disk where present, else from
        the network up to the next present byte."""
        with self._lock:
            state = self._state
        asked = 0
        if state is _State.UNCHECKED:
            body, asked = self._revalidate(start, end, abort)
            if body is not None:
                return body
        disk = self._from_disk(start, end, requests_sent=asked)
        if disk is None:
            self._entry.refresh()  # another process may have fetched it meanwhile
            disk = self._from_disk(start, end)
        if disk is not None:
            return disk
        return self._tee(self._http.fetch(start, self._network_end(start, end), abort))

    def fetch_suffix(self, length: int, abort: Optional[AbortHandle] = None) -> Optional[Body]:
        """The last ``length`` bytes beside the head request, as HttpSource does, for an entry
        that held nothing. Otherwise None: the length is known from the first fetch, which
        revalidates first, and the tail is then fetched by offset, from disk if it is there."""
        with self._lock:
            if self._state is not _State.FRESH:
                return None
        body = self._http.fetch_suffix(length, abort)
        return self._tee(body) if body is not None else None

    # -- internals ---------------------------------------------------------------------
    def _revalidate(self, start: int, end: Optional[int], abort: Optional[AbortHandle]) -> Tuple[Optional[Body], int]:
        """Ask the server once whether the entry's version is current. Returns the answer's
        body when the server sent one (a changed resource, or no conditional support), None
        when the entry serves the range (304, offline) or another thread revalidated; and
        the number of answers received (a 304 is one)."""
        with self._revalidating:
            with self._lock:
                if self._state is not _State.UNCHECKED:
                    return None, 0
            known = self._known
            assert known is not None
            on_disk = self._from_disk(start, end) is not None
            try:
                if on_disk and (known.etag or known.last_modified):
                    answer = self._http.fetch_if_modified(start, end, known, abort)
                else:
                    answer = self._http.fetch(start, end, abort)
            except StreamError as exc:
                if not on_disk or not server_unreachable(exc) or (abort is not None and abort.aborted):
                    raise
                log.warning("disk cache: %s unreachable (%s); serving the cached copy unchecked", self.url, exc)
                self._http.pin(known)  # a later answer must be this version too
                self._set_state(_State.OFFLINE)
                return None, 0
            if answer is None:  # 304 Not Modified
                self._set_state(_State.CURRENT)
                return None, 1
            body = self._tee(answer)  # resets the entry if the version changed
            self._set_state(_State.CURRENT)
            return body, 1

    def _set_state(self, state: _State) -> None:
        with self._lock:
            self._state = state

    def _from_disk(self, start: int, end: Optional[int], requests_sent: int = 0) -> Optional[DiskBody]:
        """A body of the entry's bytes from ``start`` up to ``end`` or the end of the run
        held there; None if ``start`` is not held (or no version is pinned)."""
        held = self._held()
        if held is None:
            return None
        version, ranges = held
        if version.size is None:  # an entry is never pinned without one (CacheEntry.reset)
            return None
        run_end = ranges.covered_until(start)
        if run_end <= start:
            return None
        stop = run_end if end is None else min(end, run_end)
        return DiskBody(self._entry, self.url, start, stop, version.size, requests_sent=requests_sent)

    def _held(self) -> Optional[Tuple[Validators, RangeSet]]:
        """The entry's version and ranges, if that version is the one this stream reads."""
        version = self._entry.validators()
        if version is None or version != self._version():
            return None
        return version, self._entry.present()

    def _version(self) -> Optional[Validators]:
        """The version this stream reads: what the server answered, else (before any answer,
        or offline) the entry's version as found at open; None before the first answer of a
        fresh entry."""
        pinned = self._http.pinned
        if pinned is not None:
            return None if pinned.size is None else pinned
        with self._lock:
            return None if self._state is _State.FRESH else self._known

    def _network_end(self, start: int, end: Optional[int]) -> Optional[int]:
        """Where a network fetch from ``start`` stops: ``end`` or the next byte held on disk."""
        held = self._held()
        if held is None:
            return end
        following = held[1].next_start(start)
        if following is None:
            return end
        return following if end is None else min(end, following)

    def _tee(self, body: Body) -> Body:
        """Write ``body`` through to the entry, first pinning the entry to the version the
        HttpSource pinned (resetting it if it held another). A body of unknown length is
        not cached."""
        pinned = self._http.pinned
        if pinned is None or pinned.size is None or self._disk_failed:
            return body
        version = pinned
        try:
            with self._lock:
                held = self._entry.validators()
                if held != version:
                    if held is not None:
                        log.info("disk cache: %s changed on the server; dropping the cached copy", self.url)
                    self._entry.reset(version)
        except (OSError, ValueError, StreamError) as exc:
            self._disk_failure(exc)
            return body
        return TeeBody(body, self._entry, self._commit_every, self._disk_failure)
