"""Tasks that Dask workers run in tests/test_fs_processes.py. This module does not import
kithara_io: a worker reaches it only through fsspec's entry point for ``kithara::`` URLs."""

from __future__ import annotations

import hashlib
import math
import os
import sys
from typing import Dict

import fsspec
import numpy as np
import soundfile as sf


def clip_stats(source: str, storage_options: Dict[str, object]) -> Dict[str, object]:
    """Decode a ``kithara::`` URL (or a local path) and summarise it."""
    imported_before = "kithara_io" in sys.modules
    opener = fsspec.open("kithara::" + source, "rb", **storage_options) if "://" in source else open(source, "rb")
    with opener as f:
        data, rate = sf.read(f, dtype="float64", always_2d=True)
    return {
        "frames": len(data),
        "rate": rate,
        "rms": math.sqrt(float((data * data).mean())),
        "peak": float(np.abs(data).max()),
        "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
        "pid": os.getpid(),
        "kithara_before": imported_before,
        "kithara_after": "kithara_io" in sys.modules,
    }
