"""The request log of :class:`~tests.servers.faults.FaultServer`: one :class:`RequestRecord` per
request, and the queries and waits on the log."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, List, Optional, Tuple

from .fault_kinds import FaultSpec


@dataclasses.dataclass
class RequestRecord:
    """One request. ``status`` is set before the headers go out, ``bytes_sent`` (body bytes)
    before each write, so a client holding data already sees it counted. ``outcome``: ``None``
    while in progress, then "ok", "reset", "truncated", "disconnected", "client-gone" or
    "stopped"."""

    method: str
    path: str  # without query, percent-decoded
    target: str  # the request target as sent
    range: Optional[str]
    if_range: Optional[str]
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    connection: int  # 1, 2, ... per accepted TCP connection (keep-alive reuse keeps the id)
    fault: FaultSpec = None
    status: Optional[int] = None
    bytes_sent: int = 0
    outcome: Optional[str] = None
    response_headers: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.outcome is not None


class _RequestLog:
    """The request-log part of FaultServer (a mixin). The server sets ``_lock``, ``_cond`` (a
    condition on ``_lock``), ``_log`` and ``_inflight`` and provides ``_norm``; the handler
    calls ``_begin``/``_end`` around each request."""

    _lock: threading.Lock
    _cond: threading.Condition
    _log: List[RequestRecord]
    _inflight: int
    _norm: Callable[[str], str]

    # -- request log -----------------------------------------------------------------------

    @property
    def requests(self) -> List[RequestRecord]:
        """Copy of the request log (records of requests still in progress keep changing)."""
        with self._lock:
            return list(self._log)

    def count(self, path: Optional[str] = None, method: Optional[str] = None) -> int:
        """Number of requests received (to ``path``, with ``method``)."""
        p = self._norm(path) if path is not None else None
        with self._lock:
            return sum(
                1
                for r in self._log
                if (p is None or r.path == p) and (method is None or r.method == method.upper())
            )

    def last(self, path: Optional[str] = None) -> Optional[RequestRecord]:
        p = self._norm(path) if path is not None else None
        with self._lock:
            for r in reversed(self._log):
                if p is None or r.path == p:
                    return r
        return None

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    clear_requests = reset_log

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is in progress (records final); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def wait_requests(self, n: int, path: Optional[str] = None, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests (to ``path``) have arrived; False on timeout."""
        p = self._norm(path) if path is not None else None
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(1 for r in self._log if p is None or r.path == p) >= n, timeout
            )

    # -- internals used by the handler -----------------------------------------------------

    def _begin(self, rec: RequestRecord) -> None:
        with self._cond:
            self._log.append(rec)
            self._inflight += 1
            self._cond.notify_all()

    def _end(self, rec: RequestRecord, outcome: str) -> None:
        with self._cond:
            rec.outcome = outcome
            self._inflight -= 1
            self._cond.notify_all()
