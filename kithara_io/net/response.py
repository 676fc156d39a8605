"""One answer: status, headers, the URL that answered, and its body read from the connection.

``read``, ``read1`` and ``readinto`` read the body as it came (no decoding); ``release_conn``
gives the connection back to its pool when the body was read to its end (else closes it);
``close`` drops it; ``shutdown`` breaks it from another thread. The read methods' signatures
take what urllib3's did (``decode_content``), so the engine's bodies read either.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, Iterable, Iterator, List, Mapping, Optional, Tuple, TypeVar, Union

from ..headers import content_length
from .connections import Connection, Piece, Pool, shutdown

_EMPTY_STATUSES = (204, 304)
D = TypeVar("D")


class Headers(Mapping[str, str]):
    """A response's header fields, read once: case-insensitive lookups (the first value of
    a repeated field, as ``http.client``'s message gives), ``items()`` and ``get_all``
    with every field as sent. Why not the message itself: each of its lookups scans every
    field and lowers each name (an answer is asked ~17 times on its way through the
    engine: ~18 us of a ~0.2 ms loopback range request)."""

    __slots__ = ("_fields", "_first", "_names")

    def __init__(self, fields: Iterable[Tuple[str, str]]) -> None:
        self._fields = list(fields)
        self._first: Dict[str, str] = {}
        self._names: Dict[str, str] = {}  # lowered -> as first sent
        for name, value in self._fields:
            key = name.lower()
            if key not in self._first:
                self._first[key] = value
                self._names[key] = name

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._first)

    def items(self) -> List[Tuple[str, str]]:  # type: ignore[override]
        """Every field as sent, repeats included."""
        return list(self._fields)

    def get_all(self, name: str, failobj: Optional[D] = None) -> Union[List[str], D, None]:
        """Every value of a field (``Set-Cookie``), or ``failobj`` (as ``email.message``)."""
        key = name.lower()
        found = [value for field, value in self._fields if field.lower() == key]
        return found or failobj

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


class Response:
    def __init__(
        self,
        raw: Any,  # http.client.HTTPResponse, or shoutcast.IcyResponse
        conn: Any,
        url: str,
        method: str,
        *,
        pool: Optional[Pool] = None,
        key: Hashable = None,
        history: Optional[List[str]] = None,
    ) -> None:
        self.status: int = raw.status
        self.reason: str = raw.reason or ""
        self.headers: Mapping[str, str] = Headers(raw.headers.items())
        self.url = url
        self.history = history or []  # the URLs asked before, when redirected
        self.connection = conn  # what an abort shuts down (``sock`` / ``kept_sock``)
        self._raw = raw
        self._pool = pool
        self._key = key
        self._method = method
        self._received = 0
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self._expected = None if chunked else content_length(self.headers.get("Content-Length"))
        if method == "HEAD" or raw.status in _EMPTY_STATUSES or 100 <= raw.status < 200:
            self._expected = 0

    @property
    def icy(self) -> bool:
        """Whether this is an old Shoutcast answer (``ICY 200 OK``) read from a plain socket."""
        return self._pool is None

    def read1(self, n: int = -1, decode_content: bool = False) -> bytes:
        data = self._raw.read1(n)
        self._received += len(data)
        return data if type(data) is bytes else bytes(data)

    def read(self, n: Optional[int] = None, decode_content: bool = False) -> Piece:
        """Up to ``n`` bytes (all with None); over libcurl a view of the body's memory."""
        data = self._raw.read(n)
        self._received += len(data)
        return data

    def readinto(self, buf: memoryview) -> int:
        n = self._raw.readinto(buf)
        self._received += n
        return n

    def shutdown(self) -> None:
        """From any thread: break the connection so a blocked read returns now."""
        shutdown(self.connection)

    def release_conn(self) -> None:
        """Give the connection back if the body was read to its end, else close it."""
        conn, self.connection = self.connection, None
        if conn is None:
            return
        pool = self._pool
        if pool is None or not self._read_to_end():
            self._close(conn)
            return
        pool.give_back(self._key, conn)

    def close(self) -> None:
        """Drop the connection (the body was not read to its end)."""
        conn, self.connection = self.connection, None
        if conn is not None:
            self._close(conn)

    def _read_to_end(self) -> bool:
        raw = self._raw
        if raw.isclosed():
            return True
        if self._expected is not None and self._received >= self._expected:
            try:
                raw.read()  # nothing left: lets http.client mark the answer done
            except OSError:  # (over HTTP/2, a stream reset or closed after its last byte)
                return False
            return raw.isclosed()
        return False

    def _close(self, conn: Connection) -> None:
        self._raw.close()
        conn.close()


__all__ = ["Headers", "Response"]
