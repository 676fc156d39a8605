"""MPEG-DASH (ISO/IEC 23009-1): the audio of an MPD read as one continuous byte stream by the
HLS engine (:mod:`..hls`).

``kithara_io.open(url)`` hands MPDs here (see :mod:`.loading`); ``stream.dash`` is a
:class:`DashInfo`. Modules: ``mpd`` (XML -> data), ``template`` (``$Number%05d$``...),
``sidx`` (SegmentBase index), ``clock`` (UTCTiming), ``segments`` (one Representation's segments), ``presentation``
(MPD -> the HLS engine's variants and media playlists), ``reader`` (DashReader: MPD reloads),
``loading``, ``info``, ``stream``.
"""

from __future__ import annotations

from ..dash_entry import looks_like_mpd
from .info import DashInfo
from .mpd import AdaptationSet, Mpd, Period, Representation

__all__ = ["AdaptationSet", "DashInfo", "Mpd", "Period", "Representation", "looks_like_mpd"]
