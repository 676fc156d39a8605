"""Retry and timeout policies: small value objects, as in urllib3's ``Retry``/``Timeout``."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import FrozenSet, Mapping, Optional, Protocol, Tuple

from .errors import ConnectionFailedError, HTTPStatusError, TruncatedBodyError
from .headers import retry_after as parse_retry_after


def status_error(
    status: int, reason: str, headers: Mapping[str, str], url: str, byte_range: Optional[Tuple] = None
) -> HTTPStatusError:
    """What an answer with an error status raises: its ``Retry-After`` (seconds or a date)
    rides along, for the retry policy to honour."""
    error = HTTPStatusError(status, reason, url=url, byte_range=byte_range)
    error.retry_after = parse_retry_after(headers.get("Retry-After"))
    return error


class Cancellation(Protocol):
    """What a retry's backoff waits on: ``threading.Event``'s reading half (a command's
    ``CancelFlag``, or an Event)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: Optional[float] = None) -> bool: ...


@dataclass(frozen=True)
class Timeout:
    """How long waits may last, in seconds.

    ``connect``: to establish a connection. ``read``: the longest silence allowed between
    two pieces of an answer (an inactivity timeout, not a total one). ``open``: ``open()`` as
    a whole, retries included (None: unbounded). ``speed_limit`` / ``speed_time``: a body
    arriving slower than ``speed_limit`` bytes/s for ``speed_time`` seconds counts as cut
    (retried, then a failure), as curl's ``--speed-limit``/``--speed-time``."""

    connect: float = 10.0
    read: float = 30.0
    open: Optional[float] = 30.0
    speed_limit: float = 1024.0
    speed_time: float = 30.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "open", "speed_time"):
            if name == "open" and self.open is None:
                continue
            _check_seconds(f"Timeout.{name}", getattr(self, name), positive=True)
        limit = self.speed_limit
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit < float("inf"):
            raise ValueError(f"Timeout.speed_limit must be a finite number of bytes/s >= 0, not {limit!r}")


class Pace:
    """``Timeout.speed_limit`` over each span of ``speed_time`` seconds, as curl's
    ``--speed-limit``/``--speed-time``: told the bytes as they come, :meth:`slow` says when
    a span ended under the limit (a trickle never trips the per-gap read timeout)."""

    def __init__(self, timeout: Timeout, now: float) -> None:
        self._limit = timeout.speed_limit
        self._span = timeout.speed_time
        self._since = now
        self._bytes = 0

    def slow(self, n: int, now: float) -> bool:
        """``n`` more bytes came by ``now``: did the span that ends here stay under the limit?"""
        self._bytes += n
        if now - self._since < self._span:
            return False
        slow = self._bytes < self._limit * (now - self._since)
        self._since, self._bytes = now, 0
        return slow

    def restart(self, now: float) -> None:
        """Start a new span: the bytes were not being read meanwhile (paused on purpose)."""
        self._since, self._bytes = now, 0

    def describe(self) -> str:
        return f"transfer slower than {self._limit:g} bytes/s for {self._span:g} s"


class FirstBytePace:
    """A :class:`Pace` from the first bytes told (waiting for them is the read timeout's),
    for a head or a framing line; never slow without a speed limit (``timeout`` None, or
    ``speed_limit`` 0). :meth:`reset`: the next bytes begin a new one."""

    def __init__(self, timeout: Optional[Timeout]) -> None:
        self._timeout = timeout if timeout is not None and timeout.speed_limit > 0 else None
        self._pace: Optional[Pace] = None

    def slow(self, n: int) -> bool:
        """``n`` more bytes came now: did a span end under the limit?"""
        if self._timeout is None:
            return False
        now = time.monotonic()
        if self._pace is None:
            self._pace = Pace(self._timeout, now)
            return False
        return self._pace.slow(n, now)

    def reset(self) -> None:
        self._pace = None

    def describe(self) -> str:
        return self._pace.describe() if self._pace is not None else "no speed limit"


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


@dataclass(frozen=True)
class Attempt:
    """Where one fetch stands with its retry policy: consecutive failures without progress.
    ``after`` says how long to wait before the next try, or raises the error when the
    policy gives up (not transient, or too many failures in a row)."""

    policy: Retry
    failures: int = 0

    def after(self, error: BaseException, progressed: bool) -> "Tuple[Attempt, float]":
        failures = 1 if progressed else self.failures + 1
        if not self.policy.is_transient(error) or failures >= self.policy.attempts:
            raise error
        delay = self.policy.delay(failures, getattr(error, "retry_after", None))
        return Attempt(self.policy, failures), delay


def _check_seconds(name: str, value: object, *, positive: bool) -> None:
    """A finite number of seconds, > 0 (``positive``) or >= 0; else a ValueError naming it."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, not {value!r}")
