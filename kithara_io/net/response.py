"""One answer: status, headers, the URL that answered, and its body read from the connection.

``read``, ``read1`` and ``readinto`` read the body as it came (no decoding); ``release_conn``
gives the connection back to its pool when the body was read to its end (else closes it);
``close`` drops it; ``shutdown`` breaks it from another thread. The read methods' signatures
take what urllib3's did (``decode_content``), so the engine's bodies read either.
"""

from __future__ import annotations

from typing import Any, Hashable, List, Mapping, Optional

from ..headers import content_length
from .connections import Connection, Pool, shutdown

_EMPTY_STATUSES = (204, 304)


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
        self.headers: Mapping[str, str] = raw.headers  # case-insensitive (http.client.HTTPMessage)
        self.url = url
        self.history = history or []  # the URLs asked before, when redirected
        self.connection = conn  # what an abort shuts down (``sock`` / ``kept_sock``)
        self._raw = raw
        self._pool = pool
        self._key = key
        self._method = method
        self._received = 0
        chunked = "chunked" in raw.headers.get("Transfer-Encoding", "").lower()
        self._expected = None if chunked else content_length(raw.headers.get("Content-Length"))
        if method == "HEAD" or raw.status in _EMPTY_STATUSES or 100 <= raw.status < 200:
            self._expected = 0

    @property
    def icy(self) -> bool:
        """Whether this is an old Shoutcast answer (``ICY 200 OK``) read from a plain socket."""
        return self._pool is None

    def read1(self, n: int = -1, decode_content: bool = False) -> bytes:
        data = self._raw.read1(n)
        self._received += len(data)
        return data

    def read(self, n: Optional[int] = None, decode_content: bool = False) -> bytes:
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
            raw.read()  # nothing left: lets http.client mark the answer done
            return raw.isclosed()
        return False

    def _close(self, conn: Connection) -> None:
        self._raw.close()
        conn.close()


__all__ = ["Response"]
