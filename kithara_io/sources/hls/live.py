"""LiveWatcher: reloads a live media playlist about every target duration (RFC 8216 6.3.4).

One thread per live stream, owned by its HlsReader: started by ``open()``, stopped and
joined by ``close()``. It waits on the reader's condition (woken at close), reloads, and
hands the new playlist to ``HlsReader.merge_live``; an unchanged playlist is asked again
after half a target duration. It ends when the playlist gains ``#EXT-X-ENDLIST``.
Failures are retried with the stream's Retry; when they persist the stream fails.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ...errors import StreamError
from ...retry import Retry
from .loading import load_media

if TYPE_CHECKING:
    from .reader import HlsReader
    from .transport import Transport

log = logging.getLogger(__name__)


class LiveWatcher:
    def __init__(self, reader: "HlsReader", transport: "Transport", retry: Retry) -> None:
        self._reader = reader
        self._transport = transport
        self._retry = retry
        self._thread = threading.Thread(target=self._loop, name="kithara-hls-live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        reader = self._reader
        running, url, target = reader.live_state()
        delay = target
        while running:
            if reader.wait_closed(delay):
                return
            try:
                playlist = load_media(self._transport, url, self._retry)
            except StreamError as exc:
                log.error("live playlist reload failed: %s", exc)
                reader.fail(exc)
                return
            changed = reader.merge_live(playlist)
            running, url, target = reader.live_state()
            delay = target if changed else target / 2
