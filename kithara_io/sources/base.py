"""The seams between the engine and where bytes come from.

``RemoteReader`` (the engine) knows only these Protocols: a :class:`Source` answers
``fetch(start, end)`` with a :class:`Body`, and the engine streams that body into its cache.
HttpSource, DiskCachedSource and the live and HLS sources implement them; none of them is
named by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, TypeVar, runtime_checkable

from ..net.connections import Piece


@dataclass(frozen=True)
class Validators:
    """What identifies one version of a resource: its length, ETag and Last-Modified.

    ``size`` is None only while the length is unknown (a response without one)."""

    size: Optional[int]
    etag: Optional[str] = None
    last_modified: Optional[str] = None

    @property
    def if_range(self) -> Optional[str]:
        """A strong ETag, else Last-Modified (RFC 9110 allows both in If-Range)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def same_version(self, other: "Validators") -> bool:
        """Every validator equal, ETags compared weakly (``W/"x"`` is ``"x"``; see
        :func:`same_etag`)."""
        if self.size != other.size or self.last_modified != other.last_modified:
            return False
        if self.etag is None or other.etag is None:
            return self.etag is other.etag
        return same_etag(self.etag, other.etag)

    def changes_from(self, seen: "Validators") -> list:
        """What differs in ``seen`` (a later answer) from this pinned version, in words.
        A validator either side lacks cannot differ."""
        changes = []
        if self.etag and seen.etag and not same_etag(self.etag, seen.etag):
            changes.append(f"ETag {self.etag} -> {seen.etag}")
        if self.last_modified and seen.last_modified and self.last_modified != seen.last_modified:
            changes.append(f"Last-Modified {self.last_modified} -> {seen.last_modified}")
        if self.size is not None and seen.size is not None and self.size != seen.size:
            changes.append(f"length {self.size} -> {seen.size}")
        return changes


def same_etag(a: str, b: str) -> bool:
    """RFC 9110's weak comparison: the same opaque tag, weak (``W/``) or not. Apache tags a
    file modified within the last second weak, and the same tag strong a second later."""
    return a.removeprefix("W/") == b.removeprefix("W/")


class Abort(Protocol):
    """Lets another thread break the request a fetch is making, in any phase of it."""

    aborted: bool

    def abort(self) -> None: ...


@runtime_checkable
class Body(Protocol):
    """The bytes of one answer: ``[start, end)`` of the resource (``end`` None: unknown).

    ``readinto`` returns what has arrived (at least 1 byte) or 0 at the end of the body; the
    engine checks a 0 against ``end``. ``close`` releases the connection (kept alive only
    when the body was read to its end). The engine only reads its attributes (read-only
    here, so a body may narrow them: a disk body's ``end`` is always known)."""

    @property
    def url(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> Optional[int]: ...
    @property
    def total(self) -> Optional[int]:  # the resource's length, when the answer says it
        ...
    @property
    def ranged(self) -> bool:  # False: the whole resource from byte 0 (a server ignoring Range)
        ...
    @property
    def position(self) -> int:  # the resource offset of the next byte readinto returns
        ...
    @property
    def from_disk(self) -> bool:  # bytes from a local copy, not the network (counters, link estimate)
        ...
    @property
    def requests_sent(self) -> int:  # network requests this answer cost (0 from disk)
        ...

    def readinto(self, buf: memoryview) -> int: ...

    def close(self) -> None: ...


@runtime_checkable
class WholePieces(Protocol):
    """A body that can also hand over a piece as one object (new ``bytes``, or a view of
    memory the body holds for it alone, which libcurl's answers give), read in one
    call that blocks until all ``n`` bytes are in (fewer only at the end of the body):
    fewer Python-level calls than ``readinto``, and a piece that fills only part of a block
    is kept as it is. The fetch loop uses it only once it has measured that ``n`` bytes
    arrive quickly. A connection that stalls or breaks within such a read holds back or
    loses what arrived of that piece."""

    def read_piece(self, n: int) -> Piece: ...

    def readinto_piece(self, buf: memoryview) -> int: ...

    def break_off(self) -> None:
        """From another thread: end a read in progress now (it returns what came, or
        raises), without marking the fetch aborted; the connection is not used again."""

    @property
    def paces_itself(self) -> bool:
        """Does its transport hold a read to ``Timeout.speed_limit`` itself (libcurl's
        answers do)? Then nothing needs to watch a read of it."""


#: A source's own kind of abort handle: ``fetch`` takes the ones its ``new_abort`` makes.
A = TypeVar("A", bound=Abort)


@runtime_checkable
class Source(Protocol[A]):
    """Where a stream's bytes come from. Every method but ``close`` may run on any fetch
    thread, concurrently; ``close`` only once no fetch runs."""

    @property
    def url(self) -> str: ...
    @property
    def filename(self) -> Optional[str]:  # Content-Disposition's file name, as sent (unchecked); None if none
        ...

    @property
    def pinned(self) -> Optional[Validators]:
        """The version first answered (later answers must match it); None before."""

    @property
    def supports_ranges(self) -> Optional[bool]:
        """Whether ``fetch`` can start anywhere (None: not known yet)."""

    @property
    def offline(self) -> bool:
        """Serving a local copy without having reached the server: a failed fetch of a
        range it does not :meth:`holds` fails only the reader that reaches it."""

    def holds(self, pos: int) -> bool:
        """Whether byte ``pos`` can be had without the network."""

    def new_abort(self) -> A:
        """A fresh abort handle for one fetch."""

    def fetch(self, start: int, end: Optional[int], abort: Optional[A] = None) -> Body:
        """Answer ``[start, end)`` (``end`` None: to the end). Raises a StreamError."""

    def fetch_suffix(self, length: int, abort: Optional[A] = None) -> Optional[Body]:
        """The last ``length`` bytes, asked before the length is known; None when the
        source cannot answer that way (the engine then fetches the tail by offset)."""

    def abort_all(self) -> None:
        """Break every request in flight, also those still waiting for an answer (the
        stream is closing)."""

    def close(self) -> None: ...

    def _after_fork_in_child(self) -> None:
        """In a forked child: drop the parent's connections and locks (the stream's reader
        calls it; see ``kithara_io.stream``)."""


__all__ = ["Validators", "Abort", "Body", "Source"]
