"""DashReader: an MPD read by the HLS engine (:class:`~..hls.reader.HlsReader`).

What differs from HLS is only where the media playlists come from: all of them from the one
MPD (:mod:`.presentation`), and a live MPD is reloaded whole (every ``minimumUpdatePeriod``,
else every longest segment duration) and the Representation being read rebuilt from it.
Everything else (the plan, fetch jobs, ABR, switching, live window, disk cache) is the HLS
reader's, with its lock rules: ``self._presentation`` is guarded by ``self._cond`` too.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Tuple

from ...engine.downloader import Downloader
from ...errors import InvalidResponseError
from ...options import StreamOptions
from ...reading.planning import Priority
from ..hls.playlist import MediaPlaylist
from ..hls.reader import HlsReader
from ..hls.transport import Transport
from .info import DashInfo
from .presentation import Presentation


class DashReader(HlsReader):
    """Blocking positional reads of the chosen audio of an MPD."""

    def __init__(
        self,
        url: str,
        presentation: Presentation,
        reload: Callable[[], Presentation],
        variant: int,
        auto: bool,
        transport: Transport,
        downloader: Downloader,
        options: StreamOptions,
        priority: Priority = Priority.HIGH,
    ) -> None:
        """``reload``: the presentation of the MPD fetched again (a live MPD's reloads)."""
        super().__init__(
            url,
            presentation.variants,
            dict(presentation.media),
            variant,
            auto,
            transport,
            downloader,
            options,
            priority,
        )
        self._presentation = presentation
        self._counts["bytes_fetched"] += presentation.index_bytes  # (a disk copy's: in bytes_from_disk too)
        self._reload = reload

    @property
    def dash(self) -> DashInfo:
        """What ``stream.dash`` tells: a view of this reader, a new one at each call."""
        return DashInfo(self, lambda: self.presentation)

    @property
    def hls(self) -> DashInfo:
        """The engine's info, what the Player and the CLI read: ``dash``."""
        return self.dash

    @property
    def presentation(self) -> Presentation:
        with self._cond:
            return self._presentation

    def _load_media(self, index: int) -> MediaPlaylist:
        return self.presentation.media[index]

    def live_state(self) -> Tuple[bool, str, float]:
        running, uri, target = super().live_state()
        update = self.presentation.mpd.minimum_update_period
        return running, uri, update if update else target

    def reload_media(self, url: str) -> MediaPlaylist:
        """The MPD fetched again; the media playlist of the variant named ``url`` rebuilt."""
        index = next((i for i, v in enumerate(self._variants) if v.uri == url), None)
        fresh = self._reload()
        if index is None or index not in fresh.media:
            raise InvalidResponseError(
                "the reloaded DASH MPD no longer lists the representation being read", url=self.url
            )
        with self._cond:
            self._presentation = fresh
            self._counts["bytes_fetched"] += fresh.index_bytes
        return dataclasses.replace(fresh.media[index], uri=url)
