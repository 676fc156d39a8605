"""An MPD as the HLS engine's model: the audio Representations as variants, each a media
playlist of segments (:mod:`..hls.playlist`), so the same reader, plan, ABR, switching and
disk cache serve DASH.

Pure but for ``read`` (a SegmentBase's index). Choices:

- Audio first: in each Period, the AdaptationSet of audio asked for (``audio=``: its
  ``lang`` (``en`` matches ``en-US``), a ``Role`` value, its ``Label`` or ``id``), else the
  one of the same language and roles as in the period before, else the one with Role
  ``main``, else the first. An MPD without audio is an InvalidResponseError; an ``audio``
  that matches nothing a ValueError listing the choices (as for HLS renditions).
- Variant ``i`` is the ``i``-th Representation of the first period's set (MPD order); in a
  later period, the Representation of the same bandwidth rank.
- Periods follow each other in one stream: the first segment of each later period is a
  discontinuity, with that period's init segment (the HLS engine puts it in and restarts
  the demuxer there when it differs).
- Sequence numbers: a segment's number (``$Number$``; SegmentList and SegmentBase count from
  ``startNumber``) plus its period's start in milliseconds times 10^7: stable across the
  reloads of a live MPD (and when it turns static at its end), and the same in every
  Representation of a period (``segmentAlignment``), so ABR can switch at a boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ...errors import InvalidResponseError, StreamError
from ..hls.playlist import MediaPlaylist, Resource, Segment, Variant
from .mpd import AdaptationSet, Mpd, Representation
from .segments import Media, ReadRange, expand

#: RFC 6381 codec names (first part) of audio, for sets that declare neither type.
_AUDIO = ("mp4a", "opus", "flac", "ac-3", "ec-3", "ac-4", "dtsc", "dtse", "dtsh", "dtsl", "vorbis", "mp3", "alac")
_PERIOD_SCALE = 10**7  # a period's numbers stay below the next millisecond's base


@dataclass(frozen=True)
class Presentation:
    mpd: Mpd
    variants: Tuple[Variant, ...]
    media: Dict[int, MediaPlaylist]
    sets: Tuple[AdaptationSet, ...]  # the audio set read in each period
    chosen: Tuple[Tuple[Representation, ...], ...]  # per variant: its Representation in each period
    index_bytes: int = 0  # read for SegmentBase indexes (counted in the stream's stats)


def is_audio(adaptation: AdaptationSet) -> bool:
    kind = adaptation.kind
    if kind:
        return kind == "audio"
    codecs = [
        c.strip().split(".")[0].lower()
        for r in adaptation.representations
        for c in (r.codecs or "").split(",")
        if c.strip()
    ]
    return bool(codecs) and all(c in _AUDIO for c in codecs)


def matches(adaptation: AdaptationSet, wanted: str) -> bool:
    """``wanted`` names the set: its language (``en`` matches ``en-US``), a role, its label or id."""
    wanted = wanted.strip().lower()
    lang = (adaptation.lang or "").lower()
    names = {
        lang,
        lang.split("-")[0],
        (adaptation.label or "").lower(),
        (adaptation.id or "").lower(),
        *adaptation.roles,
    }
    return wanted in names - {""}


def describe(adaptation: AdaptationSet) -> str:
    """How a set is named in a message: ``en (main)``, ``id 3``..."""
    name = adaptation.lang or adaptation.label or f"id {adaptation.id}"
    return f"{name} ({', '.join(adaptation.roles)})" if adaptation.roles else name


def build(mpd: Mpd, audio: Optional[str], read: ReadRange, now: float) -> Presentation:
    """The presentation of ``mpd`` for ``audio`` (see the module doc)."""
    sets = _choose_sets(mpd, audio)
    if any(r.protected for s in sets for r in s.representations):
        raise StreamError("DASH audio under ContentProtection (DRM or CENC encryption) is not supported", url=mpd.url)
    first = sets[0].representations
    chosen = tuple(tuple(_same_rank(first, rep, s.representations) for s in sets) for rep in first)
    expanded = [[expand(mpd, p, reps[p], now, read) for p in range(len(sets))] for reps in chosen]
    variants: List[Variant] = []
    media: Dict[int, MediaPlaylist] = {}
    for index, reps in enumerate(chosen):
        uri = f"{mpd.url}#representation={reps[0].id}"
        if any(v.uri == uri for v in variants):  # ids repeated: each variant still named once
            uri += f"&variant={index}"
        variants.append(Variant(reps[0].bandwidth, reps[0].codecs, uri))
        media[index] = _playlist(mpd, uri, expanded[index])
    return Presentation(mpd, tuple(variants), media, tuple(sets), chosen)


def _choose_sets(mpd: Mpd, audio: Optional[str]) -> List[AdaptationSet]:
    out: List[AdaptationSet] = []
    for number, period in enumerate(mpd.periods):
        candidates = [s for s in period.adaptation_sets if is_audio(s)]
        if not candidates:
            what = "MPD" if len(mpd.periods) == 1 else f"period {period.id or number}"
            raise InvalidResponseError(f"DASH {what} has no audio AdaptationSet", url=mpd.url)
        if not all(s.representations for s in candidates):
            raise InvalidResponseError("DASH audio AdaptationSet without a Representation", url=mpd.url)
        if audio is not None:
            found = [s for s in candidates if matches(s, audio)]
            if not found and not out:
                choices = ", ".join(sorted({describe(s) for s in candidates}))
                raise ValueError(f"no audio adaptation set matches {audio!r}; the MPD has: {choices}")
        elif out:
            previous = out[-1]
            found = [s for s in candidates if s.lang == previous.lang and s.roles == previous.roles]
        else:
            found = [s for s in candidates if "main" in s.roles]
        out.append((found or candidates)[0])
    return out


def _same_rank(first: Sequence[Representation], rep: Representation, reps: Sequence[Representation]) -> Representation:
    """The Representation of ``reps`` whose bandwidth rank is ``rep``'s among ``first``."""
    rank = sorted(first, key=lambda r: r.bandwidth).index(rep)
    ordered = sorted(reps, key=lambda r: r.bandwidth)
    return ordered[min(rank, len(ordered) - 1)]


def _playlist(mpd: Mpd, uri: str, periods: List[Tuple[Optional[Resource], List[Media]]]) -> MediaPlaylist:
    segments: List[Segment] = []
    for p, (init, media) in enumerate(periods):
        key = round(mpd.periods[p].start * 1000) * _PERIOD_SCALE
        for index, m in enumerate(media):
            segments.append(Segment(key + m.number, m.duration, m.resource, None, init, p > 0 and index == 0))
    if any(b.sequence <= a.sequence for a, b in zip(segments, segments[1:])):
        raise InvalidResponseError(
            "DASH segment numbers of two periods overlap (10^7 segments or more in a period)", url=mpd.url
        )
    if not segments and not mpd.dynamic:
        raise InvalidResponseError("DASH representation without segments", url=mpd.url)
    longest = max((s.duration for s in segments), default=0.0)
    target = mpd.max_segment_duration or longest or 1.0
    start = None
    if mpd.dynamic and mpd.suggested_presentation_delay is not None:
        start = (-mpd.suggested_presentation_delay, False)
    return MediaPlaylist(
        uri,
        tuple(segments),
        target,
        segments[0].sequence if segments else 0,
        not mpd.dynamic,
        None,
        start,
    )
