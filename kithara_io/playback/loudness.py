"""Loudness: ReplayGain values from tags, the gain they ask for, volumes in dB. Pure.

ReplayGain tags (``REPLAYGAIN_TRACK_GAIN`` = ``-6.50 dB``, ``..._PEAK`` = ``0.988``) bring a
track to a reference loudness of 89 dB SPL (about -18 LUFS). Opus files carry
``R128_TRACK_GAIN``/``R128_ALBUM_GAIN`` instead: Q7.8 fixed-point dB to -23 LUFS, read here
+5 dB to the ReplayGain reference (as mpv and foobar2000 do), without a peak.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

MODES = ("off", "track", "album")
R128_TO_REPLAYGAIN_DB = 5.0  # -23 LUFS (EBU R 128) -> -18 LUFS (the ReplayGain reference)

_DB = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:db)?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ReplayGain:
    """The ReplayGain a file's tags carry: gains in dB, peaks as fractions of full scale."""

    track_gain: Optional[float] = None
    track_peak: Optional[float] = None
    album_gain: Optional[float] = None
    album_peak: Optional[float] = None

    def chosen(self, mode: str) -> "tuple[Optional[float], Optional[float], str]":
        """(gain dB, peak, which: "track" or "album") for ``mode``; album falls back to track
        when the file has no album gain (as mpv does); (None, None, "") for "off" or none."""
        check_mode(mode)
        if mode == "album" and self.album_gain is not None:
            return self.album_gain, self.album_peak, "album"
        if mode != "off" and self.track_gain is not None:
            return self.track_gain, self.track_peak, "track"
        return None, None, ""

    def factor(self, mode: str) -> float:
        """The linear gain for ``mode``: 10^(dB/20), lowered so that the peak times it stays
        at most 1.0 (no clipping); 1.0 without a gain."""
        gain, peak, _ = self.chosen(mode)
        if gain is None:
            return 1.0
        factor = 10.0 ** (gain / 20.0)
        if peak is not None and peak > 0 and factor * peak > 1.0:
            factor = 1.0 / peak
        return factor

    def as_dict(self) -> dict:
        return {"track_gain": self.track_gain, "track_peak": self.track_peak,
                "album_gain": self.album_gain, "album_peak": self.album_peak}  # fmt: skip


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"replaygain must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def parse_gain(text: str) -> Optional[float]:
    """dB from ``-6.50 dB``, ``+3.2dB``, ``-6.5``; None for anything else."""
    match = _DB.fullmatch(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if math.isfinite(value) and abs(value) < 100 else None


def parse_peak(text: str) -> Optional[float]:
    """A peak (``0.988``, ``1.2``) as a float > 0; None for anything else."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def parse_r128(text: str) -> Optional[float]:
    """An Opus ``R128_*_GAIN`` (Q7.8 integer, to -23 LUFS) as ReplayGain dB."""
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value / 256.0 + R128_TO_REPLAYGAIN_DB if -32768 <= value <= 32767 else None


def parse_volume(text: str) -> float:
    """A volume: a factor (``0.5``, 1.0 = unchanged) or decibels (``-6dB``, ``+3 dB``).
    ValueError for a negative factor or anything else."""
    stripped = text.strip()
    if stripped.lower().endswith("db"):
        match = _DB.fullmatch(stripped)
        value = float(match.group(1)) if match else math.nan
        if not math.isfinite(value):
            raise ValueError(f"not a volume: {text!r} (a factor like 0.5, or decibels like -6dB)")
        return 10.0 ** (value / 20.0)
    try:
        value = float(stripped)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a volume: {text!r} (a factor >= 0 like 0.5, or decibels like -6dB)")
    return value


def format_db(factor: float) -> str:
    """A gain factor in dB: ``-6.0 dB``, ``+3.5 dB``, ``0.0 dB``, ``-inf dB`` for 0."""
    if factor <= 0:
        return "-inf dB"
    db = round(20 * math.log10(factor), 1)
    return "0.0 dB" if db == 0 else f"{db:+.1f} dB"
