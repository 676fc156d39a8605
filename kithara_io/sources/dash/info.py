"""``stream.dash``: the MPD's periods, adaptation sets and representations, and everything
``stream.hls`` tells (segments, ``offset_of``, ``select``, restarts), which it extends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Tuple

from ..hls.info import HlsInfo
from .mpd import AdaptationSet, Mpd, Period, Representation
from .presentation import Presentation

if TYPE_CHECKING:
    from ..hls.reader import HlsReader


class DashInfo(HlsInfo):
    """What ``stream.dash`` tells. ``variants`` (from :class:`HlsInfo`) are the
    Representations of the audio AdaptationSet read, in MPD order: ``select(i)`` and
    ``variant`` index them as ``representations`` does."""

    def __init__(self, reader: "HlsReader", presentation: Callable[[], Presentation]) -> None:
        """``presentation``: the MPD as last loaded, turned into the engine's model (a live
        MPD's reloads replace it)."""
        super().__init__(reader)
        self._presentation = presentation

    @property
    def mpd(self) -> Mpd:
        """The MPD as last loaded (type, availabilityStartTime, periods...)."""
        return self._presentation().mpd

    @property
    def periods(self) -> Tuple[Period, ...]:
        return self.mpd.periods

    @property
    def adaptation_sets(self) -> Tuple[AdaptationSet, ...]:
        """Every AdaptationSet of the first period (video, audio, text), in MPD order."""
        return self.mpd.periods[0].adaptation_sets

    @property
    def adaptation_set(self) -> AdaptationSet:
        """The audio AdaptationSet read (of the first period; ``open(url, audio=...)``)."""
        return self._presentation().sets[0]

    @property
    def representations(self) -> Tuple[Representation, ...]:
        """The Representations of ``adaptation_set``: id, bandwidth, codecs, mime_type,
        channels, sample_rate, base_url; index ``i`` is variant ``i``."""
        return tuple(reps[0] for reps in self._presentation().chosen)

    @property
    def representation(self) -> Representation:
        """The Representation read now (of the first period)."""
        return self.representations[self.variant]

    def __repr__(self) -> str:
        return f"<DashInfo representation={self.variant} of {len(self.variants)}>"
