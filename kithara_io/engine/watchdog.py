"""The hang watchdog's pure decisions: what one dispatcher pass was, and when to report.

The Downloader's dispatcher classifies every pass from plain counters (no clock, no threads)
and feeds the result, with the time, to a :class:`StallTracker`, which says when a stretch
of "work pending, nothing moving" has lasted longer than the stall window.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class PassKind(enum.Enum):
    IDLE = "idle"  # no work at all: nothing queued, nothing running
    ADVANCED = "advanced"  # something moved since the previous pass
    STALLED = "stalled"  # work pending and nothing moved


def classify(*, queued: int, running: int, drained: int, completed: int, nbytes: int) -> PassKind:
    """Classify one dispatcher pass.

    ``queued``/``running``: commands waiting in the slots / running, after the pass.
    ``drained``: commands taken from the slots and dispatched during the pass;
    ``completed``: commands that completed (any outcome, queued cancels included) and
    ``nbytes``: body bytes reported through ``note_progress``, both since the previous pass.

    Movement wins: a pass that moved anything is ADVANCED even if work is still pending (or
    none is left). Otherwise no work is IDLE, and pending work is STALLED.
    """
    for name, value in (
        ("queued", queued),
        ("running", running),
        ("drained", drained),
        ("completed", completed),
        ("nbytes", nbytes),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    if drained or completed or nbytes:
        return PassKind.ADVANCED
    if queued == 0 and running == 0:
        return PassKind.IDLE
    return PassKind.STALLED


@dataclass(frozen=True)
class StallReport:
    """Nothing moved for ``stalled_for`` seconds; ``first`` for the first report of a stall."""

    stalled_for: float
    first: bool


class StallTracker:
    """Turns the sequence of (pass kind, time) into stall reports.

    A stall starts at the last ADVANCED pass that left work pending or, after an IDLE pass (or
    an ADVANCED one that left no work), at the first STALLED pass (work only just arrived: idle time is never a stall). It
    is reported once it lasts ``window`` seconds, then again every further ``window`` while it
    continues; any ADVANCED or IDLE pass ends it. ``window=None`` disables reports.
    """

    def __init__(self, window: Optional[float]) -> None:
        if window is not None and not window > 0:
            raise ValueError("stall window must be > 0 (or None to disable)")
        self.window = window
        self.since: Optional[float] = None  # start of the current stretch without movement
        self._next_due: Optional[float] = None
        self.reports = 0  # reports in the current stall
        self.episodes = 0  # stalls reported so far

    def observe(self, kind: PassKind, now: float, *, pending: bool = True) -> Optional[StallReport]:
        """Record one pass; returns a report when one is due.

        ``pending``: whether work is left after the pass. An ADVANCED pass that left none is
        followed by an untimed idle wait, so it ends the stretch like an IDLE one."""
        if kind is PassKind.IDLE or (kind is PassKind.ADVANCED and not pending):
            self.since = self._next_due = None
            self.reports = 0
            return None
        if kind is PassKind.ADVANCED:
            self.since = now
            self._next_due = None if self.window is None else now + self.window
            self.reports = 0
            return None
        if self.since is None:
            self.since = now
            self._next_due = None if self.window is None else now + self.window
        if self._next_due is None or now < self._next_due:
            return None
        assert self.window is not None
        self.reports += 1
        if self.reports == 1:
            self.episodes += 1
        self._next_due = now + self.window
        return StallReport(now - self.since, self.reports == 1)

    def deadline(self) -> Optional[float]:
        """When the next report is due if nothing moves (None: no report is pending).

        The dispatcher waits at most until then while work is pending."""
        return self._next_due
