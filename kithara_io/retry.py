"""Retry and timeout policies: small value objects, as in urllib3's ``Retry``/``Timeout``."""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass, field
from typing import FrozenSet, Optional

from .errors import ConnectionFailedError, HTTPStatusError, TruncatedBodyError


@dataclass(frozen=True)
class Timeout:
    """``connect``: seconds to establish a connection. ``read``: the longest silence allowed
    between two body chunks (an inactivity timeout, not a total one)."""

    connect: float = 10.0
    read: float = 30.0

    def __post_init__(self) -> None:
        for name in ("connect", "read"):
            _check_seconds(f"Timeout.{name}", getattr(self, name), positive=True)


@dataclass(frozen=True)
class Retry:
    """How a fetch survives transient faults.

    ``attempts`` bounds consecutive failures *without progress*: a fetch that keeps
    delivering bytes between faults keeps going; one that does not gives up.
    """

    attempts: int = 5
    backoff: float = 0.25
    max_backoff: float = 10.0
    jitter: float = 0.25
    statuses: FrozenSet[int] = field(default=frozenset({408, 429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"Retry.attempts must be an integer >= 1, not {self.attempts!r}")
        for name in ("backoff", "max_backoff", "jitter"):
            _check_seconds(f"Retry.{name}", getattr(self, name), positive=False)

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, HTTPStatusError):
            return error.status in self.statuses
        return isinstance(error, (ConnectionFailedError, TruncatedBodyError))

    def delay(self, failures: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before try number ``failures + 1``: exponential with jitter,
        or the server's ``Retry-After`` when it asked for one (capped by ``max_backoff``)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        base = min(self.max_backoff, self.backoff * (2 ** max(failures - 1, 0)))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


def _check_seconds(name: str, value: object, *, positive: bool) -> None:
    """A finite number of seconds, > 0 (``positive``) or >= 0; else a ValueError naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, not {value!r}")


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))
