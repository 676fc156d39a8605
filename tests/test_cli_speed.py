"""``kithara-io play --speed`` and the ``[``/``]`` keys (issue 27 row 11), on the JACK dummy
device in real time, through pipes and a pseudo-terminal. The samples at a speed are compared
with FFmpeg's atempo run offline in tests/test_playback_speed.py; here what the user sees
and how long playing takes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audio_devices import jack  # noqa: F401 - fixture
from tests.live_media import mp3_payload
from tests.servers.icy import IcyServer, Station
from tests.terminal import Terminal
from tests.test_cli_playlists import make_tracks, transient

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(60)
def test_speed_keys_change_the_speed_in_tenths_within_half_to_three(jack, tmp_path) -> None:
    path = make_tracks(tmp_path, count=1, seconds=20.0)[0]
    term = Terminal(["play", str(path)], jack.env)
    try:
        term.expect("[/] speed -/+0.1")
        term.expect("\rplaying ")
        term.type(b"]")
        transient(term, "speed 1.1x")
        term.type(b"[[")
        transient(term, "speed 0.9x")
        term.expect("0.9x\x1b[K", timeout=5)  # once the message is gone: the speed stays shown
        term.type(b"[" * 6)
        transient(term, "speed 0.5x")  # not below
        term.type(b"]" * 30)
        transient(term, "speed 3x")  # not above
        term.type(b"q")
        term.expect("stopped ")
    finally:
        code = term.close()
    assert code == 0


@pytest.mark.timeout(60)
def test_a_station_cannot_change_speed(jack) -> None:
    with IcyServer() as server:
        url = server.add("/speed.mp3", Station(payload=mp3_payload(4.0), rate=20_000, burst=8000, metaint=8000))
        term = Terminal(["play", url], jack.env)
        try:
            term.expect("\rplaying ")
            term.type(b"]")
            transient(term, "cannot change speed: live stream")
            term.type(b"q")
            term.expect("stopped ")
        finally:
            code = term.close()
    assert code == 0


@pytest.mark.timeout(60)
def test_a_station_at_another_speed_is_a_usage_error(jack) -> None:
    with IcyServer() as server:
        url = server.add("/fast.mp3", Station(payload=mp3_payload(4.0), rate=20_000, burst=8000, metaint=8000))
        proc = subprocess.run(
            [sys.executable, "-m", "kithara_io", "play", "--speed", "1.5", url],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **jack.env},
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"kithara-io: error: --speed: {url} is a live stream; it plays at its own pace\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("speed, low, high", [("2", 1.4, 3.3), ("0.8", 4.7, 7.0)])
def test_play_at_a_speed_takes_the_time_it_should_and_shows_media_time(jack, tmp_path, speed, low, high) -> None:
    path = make_tracks(tmp_path, count=1, seconds=4.0)[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kithara_io", "play", "--speed", speed, str(path)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **jack.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines, first_status = [], None
    try:
        for line in proc.stdout:  # ends when the process closes its output
            lines.append(line.rstrip("\n"))
            if first_status is None and line.startswith("playing"):
                first_status = time.monotonic()
        code = proc.wait(10)
        elapsed = time.monotonic() - first_status
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0, err
    print(f"4 s at {speed}x: {elapsed:.2f} s")
    assert low < elapsed < high, elapsed  # 4 s / speed (the first status line comes ~0.1-0.5 s in)
    assert lines[-1].startswith("finished  0:04 / 0:04 ["), lines[-1]  # media time, not wall time
    assert f"{float(speed):g}x" in lines[1], lines[1]


@pytest.mark.parametrize("value", ["0.4", "3.5", "nan", "fast"])
def test_speed_outside_half_to_three_is_a_usage_error(tmp_path, value) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kithara_io", "play", "--speed", value, str(tmp_path / "x.wav")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"kithara-io: error: argument --speed: must be a number from 0.5 to 3.0, not {value!r} (see kithara-io --help)"
    ]
