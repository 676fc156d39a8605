"""Which media playlists carry the audio of a master playlist (pure).

Packagers often put the audio apart from the video: the variants (``#EXT-X-STREAM-INF``) are
video, each naming a group of audio renditions (``AUDIO="group"``, ``#EXT-X-MEDIA:TYPE=AUDIO``
entries with their own media playlists). An audio library reads the audio, so
:func:`audio_variants` turns the master's variants into the list the reader switches
between: audio-only variants where the master has them; else, for each variant, the
rendition of its group that was asked for (``audio=`` by language or name), else the
group's DEFAULT, AUTOSELECT or first one; variants whose audio is in their own stream stay.
ABR still chooses by the variants' BANDWIDTH, so a slow link picks the group of a low
variant.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .playlist import Rendition, Variant

#: RFC 6381 codec names (first part) that are video; anything else listed is audio or text.
_VIDEO = ("avc1", "avc3", "hvc1", "hev1", "dvh1", "dvhe", "vp08", "vp09", "vp8", "vp9", "av01", "mp4v")


def is_audio_only(variant: Variant) -> bool:
    """Whether the variant declares its codecs and none of them is video."""
    if not variant.codecs:
        return False
    codecs = [c.strip().split(".")[0].lower() for c in variant.codecs.split(",") if c.strip()]
    return bool(codecs) and not any(c in _VIDEO for c in codecs)


def matches(rendition: Rendition, wanted: str) -> bool:
    """``wanted`` names the rendition: its NAME, or its LANGUAGE (``en`` matches ``en-US``)."""
    wanted = wanted.strip().lower()
    language = (rendition.language or "").lower()
    return rendition.name.lower() == wanted or language == wanted or language.split("-")[0] == wanted


def audio_variants(
    variants: Sequence[Variant], renditions: Sequence[Rendition], audio: Optional[str] = None
) -> Tuple[Tuple[Variant, ...], Tuple[Rendition, ...]]:
    """The variants to read for audio, and the rendition read for each (None where the
    variant's own stream is read). ``audio``: a language or NAME to prefer; a ValueError
    listing the choices when no rendition matches it."""
    if audio is not None and not any(matches(r, audio) for r in renditions):
        choices = sorted({f"{r.name} ({r.language})" if r.language else r.name for r in renditions})
        raise ValueError(f"no audio rendition matches {audio!r}; the playlist has: {', '.join(choices) or 'none'}")
    if audio is None:
        alone = [v for v in variants if is_audio_only(v)]
        if alone:
            return tuple(alone), tuple(None for _ in alone)  # type: ignore[misc]
    groups: Dict[str, List[Rendition]] = {}
    for each in renditions:
        groups.setdefault(each.group, []).append(each)
    chosen: List[Variant] = []
    read: List[Optional[Rendition]] = []
    for variant in variants:
        rendition = _pick(groups.get(variant.audio or "", []), audio)
        if rendition is None or rendition.uri is None:
            chosen.append(variant)
            read.append(None)
            continue
        reading = Variant(variant.bandwidth, _audio_codecs(variant.codecs), rendition.uri, variant.audio)
        same = next((i for i, v in enumerate(chosen) if v.uri == reading.uri), None)
        if same is None:
            chosen.append(reading)
            read.append(rendition)
        elif reading.bandwidth < chosen[same].bandwidth:  # a slow link may still pick it
            chosen[same] = reading
    return tuple(chosen), tuple(read)  # type: ignore[arg-type]


def _pick(group: Sequence[Rendition], audio: Optional[str]) -> Optional[Rendition]:
    if not group:
        return None
    for test in (lambda r: audio is not None and matches(r, audio), lambda r: r.default, lambda r: r.autoselect):
        found = [r for r in group if test(r)]
        if found:
            return found[0]
    return group[0]


def _audio_codecs(codecs: Optional[str]) -> Optional[str]:
    """The audio part of a variant's CODECS (what the rendition holds)."""
    if not codecs:
        return None
    audio = [c.strip() for c in codecs.split(",") if c.strip() and c.strip().split(".")[0].lower() not in _VIDEO]
    return ",".join(audio) or None
