"""Channel mapping (a source layout onto the device's channels, as one mixing matrix) and
the gains of an equal-power crossfade.

Orders are the WAV/FFmpeg defaults (FL FR FC LFE BL BR SL SR). Mono goes to every output
channel; more channels than the device has are downmixed (to stereo with the ITU-R BS.775
coefficients: centre and surrounds at -3 dB, LFE dropped; no normalisation, as in the
standard); fewer channels than the device are repeated in turn (L R L R ...).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

MINUS_3DB = float(np.sqrt(0.5))

#: Stereo downmix rows (left gain, right gain) per source channel, by source channel count.
_TO_STEREO = {
    3: [(1, 0), (0, 1), (MINUS_3DB, MINUS_3DB)],  # FL FR FC
    4: [(1, 0), (0, 1), (MINUS_3DB, 0), (0, MINUS_3DB)],  # quad: FL FR BL BR
    5: [(1, 0), (0, 1), (MINUS_3DB, MINUS_3DB), (MINUS_3DB, 0), (0, MINUS_3DB)],  # 5.0
    6: [(1, 0), (0, 1), (MINUS_3DB, MINUS_3DB), (0, 0), (MINUS_3DB, 0), (0, MINUS_3DB)],  # 5.1
    8: [(1, 0), (0, 1), (MINUS_3DB, MINUS_3DB), (0, 0), (MINUS_3DB, 0), (0, MINUS_3DB),
        (MINUS_3DB, 0), (0, MINUS_3DB)],  # 7.1
}  # fmt: skip


def channel_matrix(source: int, target: int) -> Optional[np.ndarray]:
    """The ``source x target`` gain matrix (``out = block @ matrix``); None when the
    channels pass through unchanged."""
    if source < 1 or target < 1:
        raise ValueError("channel counts must be >= 1")
    if source == target:
        return None
    matrix = np.zeros((source, target), dtype=np.float32)
    if source == 1:
        matrix[0, :] = 1.0
    elif source < target:
        for out in range(target):
            matrix[out % source, out] = 1.0
    elif target == 1:
        stereo = channel_matrix(source, 2)  # None from stereo: both channels at 0.5
        matrix[:, 0] = stereo.sum(axis=1) / 2 if stereo is not None else 0.5
    elif target == 2 and source in _TO_STEREO:
        matrix[:, :] = np.array(_TO_STEREO[source], dtype=np.float32)
    else:  # no standard downmix known: keep the first channels
        matrix[np.arange(target), np.arange(target)] = 1.0
    return matrix


def map_channels(block: np.ndarray, matrix: Optional[np.ndarray]) -> np.ndarray:
    """``block`` (frames x source channels) on the target channels, float32."""
    if matrix is None:
        return block
    return np.ascontiguousarray(block @ matrix, dtype=np.float32)


def equal_power_gains(frames: int) -> "tuple[np.ndarray, np.ndarray]":
    """(fade-out, fade-in) gains of an equal-power crossfade over ``frames`` frames:
    ``cos`` and ``sin`` of ``pi/2 * k / frames`` (their squares sum to 1 at every frame)."""
    angle = (np.pi / 2) * np.arange(frames, dtype=np.float64) / max(1, frames)
    return np.cos(angle).astype(np.float32)[:, None], np.sin(angle).astype(np.float32)[:, None]


def crossfade_mix(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """The last frames of one track faded out under the first frames of the next, faded in
    (equal power, over ``len(outgoing)`` frames; a shorter ``incoming`` is padded with silence)."""
    fade_out, fade_in = equal_power_gains(len(outgoing))
    padded = np.zeros_like(outgoing)
    padded[: min(len(outgoing), len(incoming))] = incoming[: len(outgoing)]
    return outgoing * fade_out + padded * fade_in
