"""DashStream: the Stream of an MPEG-DASH presentation (``stream.dash``)."""

from __future__ import annotations

from typing import cast

from ..hls.stream import HlsStream
from .info import DashInfo


class DashStream(HlsStream):
    """An :class:`~..hls.stream.HlsStream` over a :class:`~.reader.DashReader`: a static
    MPD is a seekable file, a dynamic (live) one like a live HLS playlist. ``dash`` tells the
    MPD; ``hls`` is the same object (what the HLS engine's users, the Player and the CLI,
    read)."""

    @property
    def dash(self) -> DashInfo:
        return cast(DashInfo, self.hls)  # the reader's info is a DashInfo (DashReader.hls)
