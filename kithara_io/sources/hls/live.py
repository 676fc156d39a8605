"""LiveWatcher: reloads a live or EVENT media playlist about every target duration (RFC 8216
6.3.4), and the HlsReader's side of it (:class:`ReloadMixin`).

One thread per live or EVENT stream, owned by its HlsReader: started by ``open()``, stopped and
joined by ``close()``. It waits on the reader's condition (woken at close), reloads, and
hands the new playlist to ``HlsReader.merge_live``; an unchanged playlist is asked again
after half a target duration (never sooner than ``MIN_RELOAD``). It ends when the playlist
gains ``#EXT-X-ENDLIST``. A playlist that lists nothing new for ``Timeout.read`` (and three
target durations) has stopped: a read waiting for more fails (``ConnectionFailedError``).
Failures are retried with the stream's Retry; when they persist the stream fails.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Tuple

from ...errors import ConnectionFailedError, StreamError
from .keys import check_supported
from .load import load_media
from .playlist import MediaPlaylist
from .state import ReaderState

if TYPE_CHECKING:
    from .reader import HlsReader

log = logging.getLogger(__name__)

#: Shortest wait between two reloads: a playlist claiming 0 s segments (TARGETDURATION:0,
#: EXTINF:0) would otherwise be asked for in a loop, hundreds of times a second.
MIN_RELOAD = 0.5


class ReloadMixin(ReaderState):
    """The HlsReader's side of the reloads (called by the LiveWatcher; ``self._cond`` taken
    here). A live playlist's window may have moved past segments not read (skipped, with a
    warning); an EVENT playlist only appends."""

    def live_state(self) -> Tuple[bool, str, float]:
        """``(still running, playlist URL, target duration)``."""
        with self._cond:
            variant = self._plan.parts[-1][0] if self._plan.parts else 0
            playlist = self._plan.media[variant]
            return (not self._closed and not self._ended, playlist.uri, playlist.target_duration)

    def reload_media(self, url: str) -> MediaPlaylist:
        """The media playlist at ``url`` fetched again (a DASH reader rebuilds it from its MPD)."""
        return load_media(self._transport, url, self._opt.retry)

    def wait_closed(self, seconds: float) -> bool:
        """Wait ``seconds`` or until closed (the condition also wakes for other reasons)."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._closed

    def merge_live(self, playlist: MediaPlaylist) -> bool:
        """Add what a reloaded playlist lists after the last planned segment; True if new."""
        with self._cond:
            for seg in playlist.segments:
                check_supported(seg.key, self.url)
            variant = self._plan.parts[-1][0] if self._plan.parts else 0
            fresh, gap = self._plan.merge(variant, playlist)
            if gap is not None:
                log.warning("%s: fell behind the live window: segments %d-%d are gone", self.url, *gap)
            if playlist.ended:
                self._ended = True
            if fresh or playlist.ended:
                self._stalled = None
            self._schedule_locked()
            self._cond.notify_all()
            return bool(fresh) or playlist.ended

    def stall(self, error: StreamError) -> None:
        """The playlist listed nothing new for too long: a read that waits for more fails
        (with ``error``) while nothing is being fetched; a later segment lifts it."""
        with self._cond:
            self._stalled = error
            self._cond.notify_all()

    def _fail_if_stalled_locked(self) -> bool:
        """Before a read waits: after a stall, with no fetch running, that wait would not end."""
        if self._stalled is None or self._jobs:
            return False
        self._fail_locked(self._stalled)
        return True


class LiveWatcher:
    def __init__(self, reader: "HlsReader", quiet: float) -> None:
        """``quiet``: how long a playlist may list nothing new before a waiting read fails
        (at least three target durations)."""
        self._reader = reader  # reloads through reader.reload_media (a DASH reader rebuilds its MPD)
        self._quiet = quiet
        self._thread = threading.Thread(target=self._loop, name="kithara-hls-live", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        reader = self._reader
        running, url, target = reader.live_state()
        delay = max(target, MIN_RELOAD)
        changed_at = time.monotonic()
        while running:
            if reader.wait_closed(delay):
                return
            try:
                playlist = reader.reload_media(url)
            except StreamError as exc:
                log.error("live playlist reload failed: %s", exc)
                reader.fail(exc)
                return
            changed = reader.merge_live(playlist)
            now = time.monotonic()
            if changed:
                changed_at = now
            elif now - changed_at >= max(self._quiet, 3 * target):
                quiet = f"the live playlist has listed nothing new for {now - changed_at:.0f} s"
                reader.stall(ConnectionFailedError(quiet, url=url))
            running, url, target = reader.live_state()
            delay = max(target if changed else target / 2, MIN_RELOAD)
