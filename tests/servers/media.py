"""Deterministic test media, generated with soundfile (no binaries in the repository)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100
SECONDS = 4
CHANNELS = 2

#: name -> (soundfile format, subtype)
AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    "tone.wav": ("WAV", "PCM_16"),
    "tone.flac": ("FLAC", "PCM_16"),
    "tone.ogg": ("OGG", "VORBIS"),
    "tone.mp3": ("MP3", "MPEG_LAYER_III"),
}
AUDIO_FILES: list[str] = list(AUDIO_FORMATS)
RANDOM_SIZE = 8 * 1024 * 1024
SMALL_SIZE = 1000


def signal(seconds: float = SECONDS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Stereo float64 in [-0.8, 0.8]: a rising log sweep left, a falling sweep right, noise."""
    t = np.arange(int(seconds * sr)) / sr
    # Log sweep 110 Hz -> 3520 Hz: phase = 2*pi*f0*T/ln(k) * (k**(t/T) - 1)
    k = 3520 / 110
    left = np.sin(2 * np.pi * 110 * seconds / np.log(k) * (k ** (t / seconds) - 1))
    # Linear sweep 2000 Hz -> 200 Hz.
    right = np.sin(2 * np.pi * (2000 * t + (200 - 2000) * t**2 / (2 * seconds)))
    noise = np.random.default_rng(20240601).normal(0.0, 0.02, size=(t.size, 2))
    data = 0.7 * np.stack([left, right], axis=1) + noise
    return np.clip(data, -0.8, 0.8)


def make_media(directory: Path) -> dict[str, Path]:
    """Write the audio files, ``random.bin`` (8 MiB), ``small.bin`` (1000 B), ``empty.bin``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = signal()
    files: dict[str, Path] = {}
    for name, (fmt, subtype) in AUDIO_FORMATS.items():
        files[name] = directory / name
        sf.write(files[name], data, SAMPLE_RATE, format=fmt, subtype=subtype)
    rng = np.random.default_rng(12345)
    for name, size in (("random.bin", RANDOM_SIZE), ("small.bin", SMALL_SIZE), ("empty.bin", 0)):
        files[name] = directory / name
        files[name].write_bytes(rng.bytes(size))
    return files


@functools.lru_cache(maxsize=None)
def _file_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


@functools.lru_cache(maxsize=None)
def _file_samples(path: str) -> np.ndarray:
    return sf.read(path, dtype="int16")[0]


def media_bytes(media: dict, name: str) -> bytes:
    """The bytes of one generated media file (read once per session)."""
    return _file_bytes(str(media[name]))


def decoded(media: dict, name: str) -> np.ndarray:
    """soundfile's int16 decode of one generated media file (decoded once per session)."""
    return _file_samples(str(media[name]))
