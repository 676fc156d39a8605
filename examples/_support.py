"""Shared by the examples and the demo: a generated piece of music and a local HTTP server
with Range support (and optional bandwidth limit), so everything runs with no arguments."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import soundfile as sf

RATE = 44100
# A I-V-vi-IV progression in C (bass note, chord) and a melody (semitones above C5, None = rest).
CHORDS = [(48, (60, 64, 67)), (43, (59, 62, 67)), (45, (60, 64, 69)), (41, (60, 65, 69))]
MELODY = [7, 9, 7, 4, 2, 4, 7, None, 9, 11, 12, 11, 9, 7, 4, None]


def _note(midi: float, seconds: float, gain: float, decay: float) -> np.ndarray:
    """A plucked tone: a few harmonics under an exponential decay, with a short attack."""
    t = np.arange(int(seconds * RATE)) / RATE
    freq = 440.0 * 2 ** ((midi - 69) / 12)
    tone = sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in (1, 2, 3, 4))
    return gain * tone * np.exp(-t * decay) * np.minimum(1.0, t / 0.005)


def make_music(path: Path, bars: int = 6, variant: int = 0) -> Path:
    """Write a short stereo FLAC (2 s per bar): chords left, melody right, bass in the middle."""
    beat = 0.25
    out = np.zeros((int(bars * 2.0 * RATE) + RATE, 2))
    for bar in range(bars):
        bass, chord = CHORDS[(bar + variant) % len(CHORDS)]
        start = int(bar * 2.0 * RATE)
        low = _note(bass - 12, 2.0, 0.35, 2.0)
        out[start : start + len(low)] += low[:, None]
        for i, midi in enumerate(chord):
            note = _note(midi, 2.0, 0.12, 1.5 + i)
            out[start : start + len(note), 0] += note
        for step in range(8):
            midi = MELODY[(step + 8 * bar + 3 * variant) % len(MELODY)]
            if midi is not None:
                note = _note(72 + midi, beat * 1.8, 0.22, 5.0)
                at = start + int(step * beat * RATE)
                out[at : at + len(note), 1] += note
    out = out[: int(bars * 2.0 * RATE)]
    sf.write(path, 0.9 * out / np.abs(out).max(), RATE, format="FLAC", subtype="PCM_16")
    return path


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single byte ranges and a shared bandwidth limit."""

    protocol_version = "HTTP/1.1"
    bandwidth: Optional[float] = None

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if not os.path.isfile(path) or match is None:
            return super().send_head()
        f = open(path, "rb")
        size = os.fstat(f.fileno()).st_size
        first = int(match.group(1))
        last = min(int(match.group(2) or size - 1), size - 1)
        if first >= size:
            f.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f.seek(first)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self._remaining = last - first + 1
        return f

    def copyfile(self, source, outputfile) -> None:
        remaining = getattr(self, "_remaining", None)
        chunk = 16384
        while remaining is None or remaining > 0:
            data = source.read(chunk if remaining is None else min(chunk, remaining))
            if not data:
                return
            if self.bandwidth:
                time.sleep(len(data) / self.bandwidth)  # pacing a simulated slow link
            try:
                outputfile.write(data)
            except ConnectionError:  # the client cancelled this fetch (a seek, or close)
                self.close_connection = True
                return
            if remaining is not None:
                remaining -= len(data)


class _QuietServer(http.server.ThreadingHTTPServer):
    """A client that drops its connection (a cancelled fetch, a closed stream, a worker
    process ending) is normal here, not a traceback on the terminal."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(directory: Path, bandwidth: Optional[float] = None) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (``bandwidth`` bytes/s per connection); yields the
    base URL; stops the server and joins its thread on exit."""
    handler = type("Handler", (_RangeHandler,), {"bandwidth": bandwidth})
    server = _QuietServer(
        ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, name="demo-http-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@contextlib.contextmanager
def local_music(count: int = 1, bandwidth: Optional[float] = None) -> Iterator[List[str]]:
    """URLs of ``count`` generated tracks served locally, for examples run without arguments."""
    with tempfile.TemporaryDirectory(prefix="kithara-example-") as tmp:
        names = [make_music(Path(tmp) / f"track{i + 1}.flac", bars=3, variant=i).name for i in range(count)]
        with serve(Path(tmp), bandwidth) as base:
            yield [f"{base}/{name}" for name in names]
