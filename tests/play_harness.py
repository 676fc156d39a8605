"""Subprocess harness: play URLs with a Player on the JACK ``loopback`` device and record
what reached the device, from the device itself.

    python -m tests.play_harness CONFIG.json

CONFIG: ``urls`` (the first is played, the others enqueued at Low priority), ``out``
(directory for ``capture.npy`` and ``result.json``), ``capture_seconds``, ``timeout``,
optional ``capture_rate`` (the JACK server's rate, default 44100),
optional ``seek`` ``[at, to]`` (seconds), ``player`` (Player keyword arguments) and
``open_options`` (kithara_io.open keyword arguments). PortAudio is initialised here, in a
process of its own, after the test has set ``JACK_DEFAULT_SERVER``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

PERIOD = 1024


def main(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    import sounddevice as sd

    from kithara_io.playback import Player

    rate = cfg.get("capture_rate", 44100)
    capture = np.zeros((int(cfg["capture_seconds"] * rate), 2), dtype=np.float32)
    written = [0]
    tail = {"target": None}
    tail_reached = threading.Event()

    def record(indata, frames, time_info, status):
        n = min(frames, len(capture) - written[0])
        capture[written[0] : written[0] + n] = indata[:n]
        written[0] += n
        if tail["target"] is not None and written[0] >= tail["target"]:
            tail_reached.set()

    result: dict = {"seek_at": None}
    with sd.InputStream(device="loopback", channels=2, samplerate=rate, dtype="float32", callback=record):
        options = {**cfg.get("player", {}), **cfg.get("open_options", {})}
        player = Player(cfg["urls"][0], device="loopback", **options)
        try:
            for url in cfg["urls"][1:]:
                player.enqueue(url, priority="low")
            started = time.monotonic()
            deadline = started + cfg["timeout"]
            player.play()
            seek = cfg.get("seek")
            # Bounded: ends at the deadline; each pass waits up to 5 ms for the end of playback.
            while seek and not player.wait(0.005) and time.monotonic() < deadline:
                position = player.position
                if position >= seek[0]:
                    result["seek_at"] = position
                    player.seek(seek[1])
                    break
            # Bounded by the deadline: a trace of the ring level, every 0.1 s, for diagnosis.
            trace = result["trace"] = []
            while not player.wait(0.1) and time.monotonic() < deadline:
                s = player.status()
                trace.append((round(time.monotonic() - started, 2), round(s.position, 2), round(s.buffered, 2)))
            result["finished_in_time"] = player.wait(max(0.0, deadline - time.monotonic()))
            result["elapsed"] = time.monotonic() - started
            status = player.status()
        finally:
            player.close()
        # The loopback delivers one period late: record a few more before stopping.
        tail["target"] = written[0] + 4 * PERIOD
        result["tail_recorded"] = tail_reached.wait(5.0)
    result.update(
        state=status.state.value,
        samplerate=status.samplerate,
        output_samplerate=status.output_samplerate,
        underruns=status.underruns,
        silence=status.silence,
        device_underflows=status.device_underflows,
        error=None if status.error is None else repr(status.error),
        threads_after_close=[t.name for t in threading.enumerate() if t is not threading.main_thread()],
    )
    out = Path(cfg["out"])
    np.save(out / "capture.npy", capture[: written[0]])
    (out / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
