"""The player on fixed-rate devices: JACK dummy servers at 48 kHz and 44.1 kHz, what reached
the device recorded from its loopback port and compared with a soxr resample of the local
decode; and ``kithara-io play`` of the formats people have (M4A with the moov at the end,
WebM/Opus, ALAC, MP3 with ID3v2) on the 48 kHz device."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.audio_devices import JackServer, jack_missing
from tests.av_media import AV_FORMATS, decode_all, encode
from tests.servers import RangedServer
from tests.servers.media import signal
from tests.test_playback import play_on_jack

REPO = Path(__file__).resolve().parent.parent
SECONDS = 1.0
_ids = itertools.count(1)


def jack_at(rate: int) -> Iterator[JackServer]:
    reason = jack_missing()
    if reason:
        pytest.skip(reason)
    with JackServer(f"kithara-dev-{os.getpid()}-{next(_ids)}", samplerate=rate, period=2048) as server:
        yield server


@pytest.fixture(scope="module")
def jack48() -> Iterator[JackServer]:
    yield from jack_at(48000)


@pytest.fixture(scope="module")
def jack44() -> Iterator[JackServer]:
    yield from jack_at(44100)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("device-media")
    made = {}
    for rate in (44100, 48000):
        made[f"{rate}.flac"] = directory / f"{rate}.flac"
        sf.write(made[f"{rate}.flac"], signal(SECONDS, rate), rate, format="FLAC", subtype="PCM_24")
    for name in ("aac-moov-end.m4a", "opus.webm", "alac.m4a", "id3v2.mp3"):
        codec, container, options, rate = AV_FORMATS[name]
        made[name] = encode(directory / name, signal(SECONDS, rate), rate, codec, container, options,
                            title="Test Title" if name.endswith(".mp3") else None)  # fmt: skip
    return made


@pytest.fixture(scope="module")
def server(files) -> Iterator[RangedServer]:
    with RangedServer(next(iter(files.values())).parent) as srv:
        yield srv


def aligned_snr(capture: np.ndarray, reference: np.ndarray) -> tuple:
    """Find ``reference`` in ``capture`` (cross-correlation of a loud window), then the SNR
    in dB of the captured frames against it, over the whole reference."""
    window = reference[8192 : 8192 + 4096, 0].astype(np.float64)
    correlation = np.correlate(capture[:, 0].astype(np.float64), window, mode="valid")
    start = int(np.argmax(correlation)) - 8192
    got = capture[start : start + len(reference)].astype(np.float64)
    assert start >= 0 and len(got) == len(reference), "the capture does not hold the whole track"
    noise = np.sum((got - reference) ** 2)
    return start, float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-30)))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, device", [("44100.flac", "jack48"), ("48000.flac", "jack44"), ("opus.webm", "jack44"), ("aac-moov-end.m4a", "jack48")])
def test_device_at_another_rate_receives_soxr_of_the_local_decode(request, files, server, tmp_path, name, device) -> None:
    jack = request.getfixturevalue(device)
    capture, result = play_on_jack(
        jack, tmp_path, timeout=SECONDS + 5, urls=[server.url(name)], capture_rate=jack.samplerate
    )
    result.pop("trace")
    path = files[name]
    local = decode_all(path) if not name.endswith(".flac") else sf.read(path, dtype="float32", always_2d=True)[0]
    rate = 48000 if name.startswith("48000") or name.endswith(".webm") else 44100
    assert (result["samplerate"], result["output_samplerate"]) == (rate, jack.samplerate)
    reference = soxr.resample(local, rate, jack.samplerate, quality="HQ")
    start, snr = aligned_snr(capture, reference)
    print(f"{name} on {jack.samplerate} Hz: SNR {snr:.1f} dB at frame {start}; {result}")
    assert snr > 60
    assert result["state"] == "finished" and result["underruns"] == 0


def run_play(jack: JackServer, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kithara_io", "play", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **jack.env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, codec", [
    ("aac-moov-end.m4a", r"AAC \d+ kbit/s 44\.1 kHz -> 48 kHz"),
    ("opus.webm", r"Opus \d+ kbit/s"),
    ("alac.m4a", r"ALAC \d+-bit 44\.1 kHz -> 48 kHz"),
    ("id3v2.mp3", r"MP3 \d+ kbit/s 44\.1 kHz -> 48 kHz"),
])  # fmt: skip
def test_kithara_io_play_of_what_people_have_on_a_48k_device(jack48, server, name, codec) -> None:
    proc = run_play(jack48, server.url(name))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(server.url(name) + ": ") and ", 0:01" in lines[0], lines[0]
    final = lines[-1]
    # 100 columns on a pipe: no room left for id3v2.mp3's title next to its resampled format
    assert final.startswith("finished  0:01 / 0:01 [") and final.endswith("underruns 0"), final
    assert re.search(rf"\] {codec} ", final), final
    assert proc.stderr == ""


@pytest.mark.timeout(60)
def test_kithara_io_play_a_playlist_with_crossfade_across_rates_and_decoders(jack48, tmp_path) -> None:
    names = ["44100.flac", "opus.webm", "aac-moov-end.m4a"]
    sf.write(tmp_path / names[0], signal(2.0), 44100, format="FLAC", subtype="PCM_24")
    for name in names[1:]:
        codec, container, options, rate = AV_FORMATS[name]
        encode(tmp_path / name, signal(2.0, rate), rate, codec, container, options)
    with RangedServer(tmp_path) as server:
        played, lines = play_playlist(jack48, server, names, crossfade=1.2)
    headers = [line for line in lines if line.startswith(server.base_url)]
    assert [h.split(": ")[0] for h in headers] == [server.url(n) for n in names]  # each one announced
    assert "FLAC 24-bit 44.1 kHz" in headers[0] and ": Opus " in headers[1] and ": AAC " in headers[2]
    final = lines[-1]
    assert final.startswith("finished  0:02 / 0:02 [") and final.endswith("underruns 0"), final
    print(f"3 x 2 s, crossfade 1.2 s: played for {played:.2f} s")
    # 3 x 2 s with two 1.2 s overlaps: 3.6 s of audio, not the 6 s of a gapless playlist.
    assert 3.3 < played < 5.3, played  # measured: 4.2-4.7 s; gapless 6.2-6.5 s


def play_playlist(jack: JackServer, server: RangedServer, names, crossfade: float) -> tuple:
    """Run ``kithara-io play URL... --crossfade``; returns (seconds from the first status line
    to the exit, stdout lines)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kithara_io", "play", *[server.url(n) for n in names], "--crossfade", str(crossfade)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **jack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, first_status = [], None
    try:
        for line in proc.stdout:  # ends when the process closes its output
            lines.append(line.rstrip("\n"))
            if first_status is None and not line.startswith(server.base_url):
                first_status = time.monotonic()  # the first status line: playback started
        code = proc.wait(10)
        played = time.monotonic() - first_status
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0, err
    return played, lines
