"""Tagged test media (issue 27 rows 8 and 12): audio written by soundfile or PyAV, tags and
ReplayGain values written by mutagen. Nothing binary is committed."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import soundfile as sf

from tests.av_media import encode

#: What each file's tags say (ReplayGain values chosen so that each case shows: a plain
#: gain, a gain the peak limits, album vs track, R128 in Opus).
TAGS = {
    "tagged.mp3": dict(artist="Ünïcode Artist", title="Song, With Comma", album="An Album",
                       track_gain=-6.5, track_peak=0.5, album_gain=4.0, album_peak=0.8),
    "tagged.flac": dict(artist="Flac Artist", title="Hi-Res", album=None,
                        track_gain=-3.0, track_peak=0.25, album_gain=12.0, album_peak=0.5),
    "loud.flac": dict(artist=None, title="Only A Title", album=None,
                      track_gain=6.0, track_peak=None, album_gain=None, album_peak=None),
    "surround.m4a": dict(artist="MP4 Artist", title="Six Channels", album="Box",
                         track_gain=-2.0, track_peak=0.9, album_gain=None, album_peak=None),
    "tagged.opus": dict(artist="Opus Artist", title="R128", album=None,
                        r128_track=-2560, r128_album=512),  # -10 dB + 5, 2 dB + 5 (ReplayGain reference)
}  # fmt: skip


def tone(seconds: float, rate: int, channels: int = 2, level: float = 0.3) -> np.ndarray:
    """A tone plus an offset: no zero samples, each channel different."""
    t = np.arange(int(seconds * rate)) / rate
    columns = [level * np.sin(2 * np.pi * (330 + 110 * c) * t) + 0.05 * (c + 1) for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


def _rg(tags: dict) -> Dict[str, str]:
    out = {}
    for which in ("track", "album"):
        if tags.get(f"{which}_gain") is not None:
            out[f"REPLAYGAIN_{which.upper()}_GAIN"] = f"{tags[f'{which}_gain']:+.2f} dB"
        if tags.get(f"{which}_peak") is not None:
            out[f"REPLAYGAIN_{which.upper()}_PEAK"] = f"{tags[f'{which}_peak']:.6f}"
    return out


def make_tagged_media(directory: Path) -> Dict[str, Path]:
    import mutagen.flac
    import mutagen.id3 as id3
    import mutagen.mp4
    import mutagen.oggopus

    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in TAGS}

    sf.write(paths["tagged.mp3"], tone(1.0, 44100), 44100, format="MP3", subtype="MPEG_LAYER_III")
    tags = TAGS["tagged.mp3"]
    frames = id3.ID3()
    frames.add(id3.TPE1(encoding=3, text=tags["artist"]))
    frames.add(id3.TIT2(encoding=3, text=tags["title"]))
    frames.add(id3.TALB(encoding=3, text=tags["album"]))
    for key, value in _rg(tags).items():
        frames.add(id3.TXXX(encoding=3, desc=key, text=value))
    frames.save(paths["tagged.mp3"])

    for name in ("tagged.flac", "loud.flac"):
        sf.write(paths[name], tone(1.0, 96000, level=0.1 if name == "loud.flac" else 0.3), 96000, subtype="PCM_24")
        tags, flac = TAGS[name], mutagen.flac.FLAC(paths[name])
        for key in ("artist", "title", "album"):
            if tags[key]:
                flac[key.upper()] = tags[key]
        for key, value in _rg(tags).items():
            flac[key.lower() if name == "loud.flac" else key] = value  # either case is found
        flac.save()

    encode(paths["surround.m4a"], tone(1.0, 48000, channels=6), 48000, "aac", "mp4")
    tags, mp4 = TAGS["surround.m4a"], mutagen.mp4.MP4(paths["surround.m4a"])
    mp4["\xa9ART"], mp4["\xa9nam"], mp4["\xa9alb"] = [tags["artist"]], [tags["title"]], [tags["album"]]
    for key, value in _rg(tags).items():
        mp4[f"----:com.apple.iTunes:{key.lower()}"] = [mutagen.mp4.MP4FreeForm(value.encode())]
    mp4.save()

    sf.write(paths["tagged.opus"], tone(1.0, 48000), 48000, format="OGG", subtype="OPUS")
    tags, opus = TAGS["tagged.opus"], mutagen.oggopus.OggOpus(paths["tagged.opus"])
    opus["ARTIST"], opus["TITLE"] = tags["artist"], tags["title"]
    opus["R128_TRACK_GAIN"], opus["R128_ALBUM_GAIN"] = str(tags["r128_track"]), str(tags["r128_album"])
    opus.save()
    return paths
