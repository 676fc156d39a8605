"""``kithara-io info`` and ``get`` on a live station (issue #14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kithara_io.cli.main import main
from tests.live_media import mp3_payload
from tests.servers.icy import IcyServer, Station, head_listeners, station_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def icy_server():
    with IcyServer() as server:
        yield server


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return mp3_payload(6.0)


def test_info_says_live_and_shows_the_icy_fields(icy_server, mp3, capsys, no_leaks):
    url = icy_server.add("/info.mp3", Station(payload=mp3, metaint=8000, titles=["Artist - Title"]))
    assert main(["info", url]) == 0
    text = capsys.readouterr().out
    assert "live          yes" in text
    for line in ("station       Kithara Test FM", "genre         Test", "bitrate       160 kbit/s",
                 "station url   http://radio.invalid/", "title         Artist - Title"):
        assert line in text
    assert main(["info", "--json", url]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["live"] is True and details["size"] is None
    assert details["metadata"]["title"] == "Artist - Title"
    assert details["metadata"]["description"] == "Sweeps and noise"


def test_get_records_for_the_duration(icy_server, mp3, tmp_path, capsys, no_leaks):
    rate = 40_000
    station = Station(payload=mp3, rate=rate, burst=8000, metaint=8000, title_every=20_000, titles=["One", "Two"])
    icy_server.add("/rec.mp3", station)
    out = tmp_path / "rec.mp3"
    started = time.monotonic()
    assert main(["get", icy_server.url("/rec.mp3"), "-o", str(out), "--duration", "1"]) == 0
    took = time.monotonic() - started
    assert 1.0 <= took < 3.0
    data = out.read_bytes()
    listener = head_listeners(icy_server.listeners("/rec.mp3"))[0]
    assert data == station_bytes(mp3, listener.joined_at, len(data))
    assert 8000 + 0.8 * rate <= len(data) <= 8000 + 2.5 * rate
    printed = capsys.readouterr().out
    shown = [line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("now playing: ")]
    assert shown and set(shown) <= {title for _, title in listener.titles}
    assert f"saved {out} ({len(data)} bytes)" in printed


def test_get_stops_cleanly_on_ctrl_c(icy_server, mp3, tmp_path):
    icy_server.add("/ctrlc.mp3", Station(payload=mp3, rate=50_000, burst=16_000))
    out = tmp_path / "ctrlc.mp3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kithara_io", "get", icy_server.url("/ctrlc.mp3"), "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        while not (out.exists() and out.stat().st_size >= 64 * 1024):  # recording is under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr.decode()
    data = out.read_bytes()
    assert data == station_bytes(mp3, head_listeners(icy_server.listeners("/ctrlc.mp3"))[0].joined_at, len(data))
    assert f"saved {out} ({len(data)} bytes)" in stdout.decode()


@pytest.mark.timeout(60)
def test_play_a_radio_station_on_a_device(icy_server, mp3):
    """``kithara-io play RADIO_URL``: PyAV decodes the live MP3 (libsndfile cannot read a
    pipe), the status line shows the elapsed time and the title, each title change is
    printed on a pipe, and Ctrl-C stops it (exit 130, one line)."""
    from tests.audio_devices import JackServer, jack_missing

    reason = jack_missing()
    if reason:
        pytest.skip(reason)
    rate = 20_000  # about the MP3's own byte rate (160 kbit/s): real time
    station = Station(payload=mp3, rate=rate, burst=8000, metaint=8000, title_every=30_000,
                      titles=["First Song", "Second Song"])  # fmt: skip
    url = icy_server.add("/play.mp3", station)
    with JackServer(f"kithara-live-{os.getpid()}", period=2048) as jack:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kithara_io", "play", url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **jack.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lines = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len([x for x in lines if x.startswith("now playing")]) < 2:
                line = proc.stdout.readline()  # the status line comes about once a second
                if not line:
                    break
                lines.append(line.rstrip("\n"))
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == 130, err
    assert err == "kithara-io: error: interrupted\n"
    assert lines[0] == url + ": MP3 160 kbit/s, live", lines  # the bitrate from icy-br
    titles = [line.split(": ", 1)[1] for line in lines if line.startswith("now playing: ")]
    assert len(titles) == 2 and set(titles) <= {"First Song", "Second Song"} and titles[0] != titles[1], lines
    status = [line for line in lines if line.startswith("playing ")]
    assert status and all(" live " in line and "underruns 0" in line for line in status), status
    assert any(titles[0] in line for line in status), status
