"""Per-stream tuning, passed to ``kithara_io.open(url, **options)``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Optional, Tuple, Union

from .retry import Retry, Timeout

if TYPE_CHECKING:
    from .sources.hls.keyhook import HlsKeys

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class StreamOptions:
    """Every knob has a default that suits audio playback over a real network."""

    read_ahead: int = 16 * MiB  # fetch this far ahead of the read cursor
    read_behind: int = 4 * MiB  # fill gaps this far behind it when nothing is missing ahead
    first_fetch: int = 64 * KiB  # the request made by open(): small, for a fast first byte
    min_fetch: int = 64 * KiB  # a fresh seek's first request
    max_fetch: int = 8 * MiB  # a sequential reader's requests grow up to this
    tail: int = 64 * KiB  # prefetched at open: containers read the end of the file
    max_outstanding: int = 2  # queued + running fetches per stream (read-ahead pipelining)
    chunk: int = 1 * MiB  # largest single socket read (smaller on slow links: ~50 ms of data)
    cache_budget: Optional[int] = 64 * MiB  # memory for downloaded bytes; None: keep everything
    timeout: Timeout = field(default_factory=Timeout)
    retry: Retry = field(default_factory=Retry)
    verify: Union[bool, str] = True  # verify TLS certificates (or: a CA bundle path); off is explicit
    cert: Union[None, str, Tuple[str, str]] = None  # a client certificate: path, or (cert, key)
    max_redirects: int = 10
    # HLS: where a stream starts in its media playlist: None (a live playlist's EXT-X-START,
    # else its edge; others their first segment), "edge", "start", "playlist" (EXT-X-START for
    # every kind) or seconds (negative: back from the end). See kithara_io.sources.hls.start.
    live_start: Union[None, str, float] = None
    hls_keys: Optional["HlsKeys"] = None  # HLS AES-128 keys behind an API: headers, URL, unwrapping

    @classmethod
    def names(cls) -> list:
        return [f.name for f in fields(cls)]

    def __post_init__(self) -> None:
        """Every field checked, so a wrong value fails here, naming the option, and not later
        deep inside a fetch."""
        for name in ("read_ahead", "first_fetch", "min_fetch", "max_fetch", "chunk", "max_outstanding"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("read_behind", "tail"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_int("max_redirects", self.max_redirects, minimum=0)
        if self.cache_budget is not None:
            _check_int("cache_budget", self.cache_budget, minimum=1, extra=" (or None)")
        if not isinstance(self.timeout, Timeout):
            raise ValueError(f"option timeout must be a kithara_io.Timeout, not {self.timeout!r}")
        if not isinstance(self.retry, Retry):
            raise ValueError(f"option retry must be a kithara_io.Retry, not {self.retry!r}")
        if not isinstance(self.verify, (bool, str)):
            raise ValueError(f"option verify must be True, False or a CA bundle path, not {self.verify!r}")
        if self.hls_keys is not None:
            from .sources.hls.keyhook import HlsKeys  # here: the options module sits below the sources

            if not isinstance(self.hls_keys, HlsKeys):
                raise ValueError(f"option hls_keys must be a kithara_io.HlsKeys, not {self.hls_keys!r}")
        if self.cache_budget is not None and self.cache_budget < 2 * self.max_fetch:
            raise ValueError("option cache_budget must be at least 2 * max_fetch (or None)")
        _check_live_start(self.live_start)
        if self.min_fetch > self.max_fetch:
            raise ValueError("option min_fetch must be <= max_fetch")


def _check_int(name: str, value: object, *, minimum: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"option {name} must be an integer >= {minimum}{extra}, not {value!r}")


def _check_live_start(value: object) -> None:
    if value is None or value in ("edge", "start", "playlist"):
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < float("inf"):
        return  # NaN fails the comparison
    raise ValueError(
        f"option live_start must be None, 'edge', 'start', 'playlist' or seconds (a number), not {value!r}"
    )
