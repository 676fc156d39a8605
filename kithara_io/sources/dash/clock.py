"""The server's clock for a live MPD: ``UTCTiming`` (ISO/IEC 23009-1 5.8.4.11).

Which segments of a live ``$Number$`` template are out is worked out from the clock
(:mod:`.segments`); a client whose clock is off by more than a segment asks for segments not
made yet (404) or already gone. An MPD that names a time source is read with it: ``direct``
(the time is in the MPD) and ``http-iso`` / ``http-xsdate`` (a GET answers the time; the
request's midpoint is taken as the local time it was read at). Other schemes (``http-head``,
``ntp``) are skipped, and so is a source that fails (a warning): the local clock is then
trusted. Measured once per stream.

Ownership: ``_lock`` guards the offset; the time request runs without it (a reload and the
open never measure at once: the first measurement is made at open, before the reload thread).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from typing import Callable, Optional, Sequence, Tuple

from ...errors import StreamError
from .mpd import parse_date

log = logging.getLogger(__name__)

DIRECT = frozenset({"urn:mpeg:dash:utc:direct:2014", "urn:mpeg:dash:utc:direct:2012"})
HTTP = frozenset(
    {
        "urn:mpeg:dash:utc:http-iso:2014",
        "urn:mpeg:dash:utc:http-iso:2012",
        "urn:mpeg:dash:utc:http-xsdate:2014",
        "urn:mpeg:dash:utc:http-xsdate:2012",
    }
)

FetchText = Callable[[str], str]  # GET a URL's body as text


class Clock:
    """``now()``: the local time corrected by the server's, once measured."""

    def __init__(self, fetch: FetchText) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._offset: Optional[float] = None

    def now(self, timings: Sequence[Tuple[str, str]], base: str) -> float:
        """The time now (seconds since the epoch) for an MPD at ``base`` with ``timings``."""
        with self._lock:
            offset = self._offset
        if offset is None:
            offset = server_offset(timings, base, self._fetch)
            with self._lock:
                self._offset = offset
        return time.time() + offset

    @property
    def offset(self) -> Optional[float]:
        """Seconds the server's clock is ahead of this one (None: not measured yet)."""
        with self._lock:
            return self._offset


def server_offset(timings: Sequence[Tuple[str, str]], base: str, fetch: FetchText) -> float:
    """Seconds the first usable time source is ahead of the local clock; 0 without one."""
    for scheme, value in timings:
        if scheme in DIRECT:
            server = parse_date(value)
            local = time.time()
        elif scheme in HTTP and value:
            url = urllib.parse.urljoin(base, value.split()[0])
            before = time.time()
            try:
                text = fetch(url)
            except StreamError as exc:
                log.warning("DASH UTCTiming source %s failed: %s; trying the next", url, exc)
                continue
            local = (before + time.time()) / 2
            server = parse_date(text.strip()[:64])
        else:
            continue
        if server is None:
            log.warning("DASH UTCTiming %s gave %r, not a time; trying the next", scheme, value[:64])
            continue
        return server - local
    return 0.0
