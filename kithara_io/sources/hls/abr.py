"""Adaptive bitrate: throughput from segment downloads, and the variant that fits it.

Pure. The reader records every finished segment download; at each segment boundary it asks
``choose_variant`` for the highest variant whose declared BANDWIDTH fits within a safety
margin of the measured throughput (the lowest when none fits).
"""

from __future__ import annotations

from typing import Optional, Sequence

SAFETY = 0.7  # use at most this share of the measured throughput
_ALPHA = 0.5  # weight of the newest sample in the moving average


MIN_SAMPLE = 16 * 1024  # bytes one sample spans: a tiny download alone measures latency


class ThroughputEstimator:
    """Exponentially weighted average of segment download rates, in bits per second.

    Downloads smaller than ``MIN_SAMPLE`` are pooled (their bytes and times added up) until
    they span that much: short audio segments of a few KB still feed the estimate, with
    their request latency counted as it costs them."""

    def __init__(self, min_sample: int = MIN_SAMPLE) -> None:
        self._estimate: Optional[float] = None
        self._min_sample = min_sample
        self._pooled_bytes = 0
        self._pooled_seconds = 0.0
        self.samples = 0

    def record(self, nbytes: int, seconds: float) -> None:
        """One download: ``nbytes`` received in ``seconds`` (request to last byte)."""
        if nbytes <= 0 or seconds <= 0:
            return
        self._pooled_bytes += nbytes
        self._pooled_seconds += seconds
        if self._pooled_bytes < self._min_sample:
            return
        rate = self._pooled_bytes * 8 / self._pooled_seconds
        self._pooled_bytes, self._pooled_seconds = 0, 0.0
        self._estimate = rate if self._estimate is None else _ALPHA * rate + (1 - _ALPHA) * self._estimate
        self.samples += 1

    @property
    def estimate(self) -> Optional[float]:
        return self._estimate


def choose_variant(bandwidths: Sequence[int], throughput: Optional[float], current: int, safety: float = SAFETY) -> int:
    """Index of the variant to fetch the next segment from. Without a measurement the
    current one stays; else the highest BANDWIDTH <= ``safety * throughput``, or the
    lowest variant when none fits."""
    if throughput is None or not bandwidths:
        return current
    budget = safety * throughput
    fitting = [i for i, bw in enumerate(bandwidths) if bw <= budget]
    if not fitting:
        return min(range(len(bandwidths)), key=lambda i: bandwidths[i])
    return max(fitting, key=lambda i: (bandwidths[i], -i))


def initial_variant(bandwidths: Sequence[int], choice: "str | int") -> int:
    """The variant to start with: ``"auto"`` the first listed (RFC 8216 6.3.1: the client
    starts with the first), ``"lowest"``/``"highest"`` by BANDWIDTH, an int by index."""
    if isinstance(choice, bool) or not isinstance(choice, (int, str)):
        raise TypeError(f"variant must be 'auto', 'lowest', 'highest' or an int, not {choice!r}")
    if isinstance(choice, int):
        if not 0 <= choice < len(bandwidths):
            raise ValueError(f"variant {choice} out of range: the playlist has {len(bandwidths)} variant(s)")
        return choice
    if choice == "auto":
        return 0
    if choice == "lowest":
        return min(range(len(bandwidths)), key=lambda i: bandwidths[i])
    if choice == "highest":
        return max(range(len(bandwidths)), key=lambda i: bandwidths[i])
    raise ValueError(f"variant must be 'auto', 'lowest', 'highest' or an int, not {choice!r}")
