"""Per-stream counters, as a plain snapshot value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamStats:
    """What one stream did so far. ``bytes_fetched / size`` is the read amplification."""

    requests: int = 0  # HTTP requests sent (retries included)
    bytes_fetched: int = 0  # body bytes received from the network and stored in the cache
    bytes_served: int = 0  # bytes returned to the caller
    cache_hits: int = 0  # reads served without waiting
    waits: int = 0  # reads that had to wait for the network
    time_waited: float = 0.0  # seconds readers spent waiting
    retries: int = 0
    cancels: int = 0  # fetches cancelled (seek far away, close)
    bytes_from_disk: int = 0  # bytes read from the disk cache (open(..., cache=...))
    bytes_cached: int = 0  # memory held for downloaded bytes now (bounded by cache_budget)
