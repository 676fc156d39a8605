"""``make demo``: generate a short piece of music, serve it from a local HTTP server, and play
it through the whole stack (HTTP ranges -> kithara_io.Stream -> soundfile -> ring buffer ->
sounddevice) with the live progress display, seeking once part-way.

With no sound device it says so and plays to a virtual device instead: a private JACK server
with the dummy driver (real-time, silent) when ``jackd`` is installed, else ALSA's null device
(silent, and not real-time: it takes audio as fast as it is decoded). PortAudio reads that
set-up when it starts, so the demo runs itself again in a child process with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

from _support import make_music, serve

CHILD = "KITHARA_DEMO_CHILD"  # set in the re-run with the virtual device
BARS = 15  # 30 s of music
SEEK_AT, SEEK_TO = 4.0, 20.0


def run_demo() -> int:
    from kithara_io.playback import Player, PlaybackError
    from kithara_io.cli.progress import BAR_LEGEND, LineWriter, RateMeter, format_bytes, playback_line

    with tempfile.TemporaryDirectory(prefix="kithara-demo-") as tmp:
        path = make_music(Path(tmp) / "demo.flac", bars=BARS)
        size = path.stat().st_size
        bandwidth = 1.5 * size / (2.0 * BARS)  # 1.5 times the music's bitrate
        print(f"generated {path.name}: {2 * BARS} s of music, FLAC, {format_bytes(size)}")
        with serve(Path(tmp), bandwidth=bandwidth) as base:
            url = f"{base}/{path.name}"
            print(f"serving it at {url}, throttled to {format_bytes(bandwidth)}/s per connection")
            print(BAR_LEGEND)
            writer, meter, seeked = LineWriter(sys.stdout), RateMeter(), False
            with Player(url) as player:
                try:
                    player.play()
                except PlaybackError as exc:
                    print(f"demo: {exc}", file=sys.stderr)
                    return 1
                stream = player.stream
                while not player.wait(0.1 if writer.tty else 0.5):  # until the end (or Ctrl-C)
                    status = player.status()
                    if not seeked and status.position >= SEEK_AT:
                        seeked = player.seek(SEEK_TO)
                        writer.message(f"seek 0:{SEEK_AT:02.0f} -> 0:{SEEK_TO:02.0f}: fetching from there on")
                    meter.add(time.monotonic(), stream.stats().bytes_fetched)
                    writer.update(_line(playback_line, status, stream, meter.rate()))
                writer.finish(_line(playback_line, player.status(), stream, meter.rate()))
                stats = stream.stats()
            print(f"{stats.requests} requests, {format_bytes(stats.bytes_fetched)} fetched of "
                  f"{format_bytes(size)}, {player.status().underruns} underruns")
    return 0


def _line(playback_line, status, stream, rate) -> str:
    return playback_line(
        state=status.state.value, position=status.position, duration=status.duration,
        ranges=stream.buffered(), size=stream.size, rate=rate, underruns=status.underruns,
        codec=status.codec, samplerate=status.samplerate, output_rate=status.output_samplerate,
        width=max(40, shutil.get_terminal_size((80, 24)).columns - 1) if sys.stdout.isatty() else 100,
    )  # fmt: skip


def has_output_device() -> Optional[bool]:
    """True/False, or None when PortAudio itself is missing (probed in a child process, so
    this process can still choose the set-up PortAudio starts with)."""
    probe = "import sys\ntry:\n import sounddevice as sd\nexcept OSError:\n sys.exit(3)\n"
    probe += "sd.query_devices(kind='output')"
    code = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60).returncode
    return None if code == 3 else code == 0


class VirtualDevice:
    """Starts a JACK dummy server (or prepares ALSA's null device); ``env`` selects it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env: Dict[str, str] = {}
        self.description = ""
        self._jackd: Optional[subprocess.Popen] = None

    def __enter__(self) -> "VirtualDevice":
        if shutil.which("jackd") and shutil.which("jack_wait") and self._start_jack():
            return self
        config = self.workdir / "alsa-null.conf"
        config.write_text("</usr/share/alsa/alsa.conf>\npcm.!default { type null }\n")
        self.env = {"ALSA_CONFIG_PATH": str(config), "JACK_NO_START_SERVER": "1"}
        self.description = "ALSA's null device (silent; not real-time, so it plays at decoding speed)"
        return self

    def _start_jack(self) -> bool:
        name = f"kithara-demo-{os.getpid()}"
        env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
        self._jackd = subprocess.Popen(
            ["jackd", "-n", name, "-d", "dummy", "-r", "44100", "-p", "1024"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        wait = subprocess.run(
            ["jack_wait", "-s", name, "-w", "-t", "10"], capture_output=True, env=env, timeout=20
        )
        if wait.returncode != 0:
            self._stop_jack()
            return False
        self.env = {"JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
        self.description = "a virtual JACK device (dummy driver: real-time clock, silent)"
        return True

    def _stop_jack(self) -> None:
        proc, self._jackd = self._jackd, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __exit__(self, *exc: object) -> None:
        self._stop_jack()


def run_in_child(env: Dict[str, str]) -> int:
    """Run this demo again with ``env``; Ctrl-C reaches both, and the child stops cleanly."""
    child = subprocess.Popen([sys.executable, __file__], env={**os.environ, **env, CHILD: "1"})
    try:
        return child.wait()
    except KeyboardInterrupt:
        try:
            return child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def main() -> int:
    if os.environ.get(CHILD):
        return run_demo()
    found = has_output_device()
    if found is None:
        print("demo: PortAudio is missing: apt-get install libportaudio2 (make deps does it as root)")
        return 1
    if found:
        return run_demo()
    with tempfile.TemporaryDirectory(prefix="kithara-demo-dev-") as tmp, VirtualDevice(Path(tmp)) as device:
        print(f"no sound device found: playing to {device.description} instead")
        return run_in_child(device.env)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the player, the server and jackd are stopped by now
        print("demo: interrupted", file=sys.stderr)
        sys.exit(130)
