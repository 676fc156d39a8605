"""``kithara-io play`` with playlists, queue options and keys (issue 27 rows 1, 2 and 9), on
the JACK dummy device in real time, through pipes and a pseudo-terminal. The samples of a
queue are compared in tests/test_playback_queue.py; here what the user sees: one line per
track as it starts playing, in the order it plays."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf

from tests.audio_devices import jack  # noqa: F401 - fixture
from tests.live_media import mp3_payload
from tests.servers.icy import IcyServer, Station
from tests.servers.ranged import RangedServer
from tests.terminal import Terminal

REPO = Path(__file__).resolve().parent.parent
RATE = 44100
TRACK_LINE = re.compile(r"^(\S+): WAV 32-bit float 44.1 kHz, 0:0\d$")


def make_tracks(directory: Path, count: int = 3, seconds: float = 1.0) -> List[Path]:
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for k in range(count):
        tone = 0.2 * np.sin(2 * np.pi * (300 + 200 * k) * t)
        path = directory / f"track{k}.wav"
        sf.write(path, np.stack([tone, tone], axis=1).astype(np.float32), RATE, subtype="FLOAT")
        paths.append(path)
    return paths


def run_play(*args: str, env, timeout: float = 40) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kithara_io", "play", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def played(stdout: str) -> List[str]:
    """The file names of the track lines, in order."""
    names = []
    for line in stdout.splitlines():
        match = TRACK_LINE.match(line)
        if match:
            names.append(match.group(1).rsplit("/", 1)[-1])
    return names


@pytest.mark.timeout(60)
@pytest.mark.parametrize("options", [[], ["--crossfade", "0.3"]])
def test_a_local_m3u_plays_every_entry_in_turn_skipping_a_missing_one(jack, tmp_path, options) -> None:
    paths = make_tracks(tmp_path)
    playlist = tmp_path / "list.m3u"
    # Relative, absolute and missing entries, with the #EXTINF lines players write.
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,zero\ntrack0.wav\nmissing.wav\n{paths[1]}\n#EXTINF:1,two\ntrack2.wav\n")
    proc = run_play(*options, str(playlist), env=jack.env)
    assert proc.returncode == 0, proc.stderr
    assert f"{playlist}: 4 entries" in proc.stdout
    assert re.search(r"skipping \S*missing\.wav: ", proc.stdout), proc.stdout
    assert played(proc.stdout) == ["track0.wav", "track1.wav", "track2.wav"], proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("finished  0:01 / 0:01")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, text", [
    ("list.m3u8", "#EXTM3U\ntrack0.wav\ntrack1.wav\ntrack2.wav\n"),  # not HLS: no #EXT-X- tag
    ("list.pls", "[playlist]\nFile3=track2.wav\nFile1=track0.wav\nFile2=track1.wav\nNumberOfEntries=3\n"),
])  # fmt: skip
def test_a_remote_playlist_plays_every_entry_in_turn(jack, tmp_path, name, text) -> None:
    make_tracks(tmp_path)
    (tmp_path / name).write_text(text)
    with RangedServer(tmp_path) as server:
        proc = run_play(server.url(name), env=jack.env)
    assert proc.returncode == 0, proc.stderr
    assert played(proc.stdout) == ["track0.wav", "track1.wav", "track2.wav"], proc.stdout


@pytest.mark.timeout(60)
def test_shuffle_plays_each_source_once(jack, tmp_path) -> None:
    paths = make_tracks(tmp_path, count=3, seconds=0.8)
    proc = run_play("--shuffle", *map(str, paths), env=jack.env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(played(proc.stdout)) == ["track0.wav", "track1.wav", "track2.wav"], proc.stdout


@pytest.mark.timeout(60)
def test_loop_playlist_starts_over_until_ctrl_c(jack, tmp_path) -> None:
    paths = make_tracks(tmp_path, count=2, seconds=0.8)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kithara_io", "play", "--loop-playlist", *map(str, paths)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **jack.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: List[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(played("\n".join(lines))) < 4:
            line = proc.stdout.readline()  # a status line comes about once a second
            if not line:
                break
            lines.append(line.rstrip("\n"))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert played("\n".join(lines)) == ["track0.wav", "track1.wav", "track0.wav", "track1.wav"], lines
    assert proc.returncode == 130, err


def transient(term: Terminal, text: str) -> None:
    """``text`` is shown in the status line (drawn in place), never as a line of its own."""
    term.expect(text + "\x1b[K")
    assert text + "\r\n" not in term.screen


@pytest.mark.timeout(60)
def test_keys_next_previous_long_seek_volume_mute(jack, tmp_path) -> None:
    paths = make_tracks(tmp_path, count=3, seconds=4.0)
    term = Terminal(["play", *map(str, paths)], jack.env)
    try:
        term.expect("n/p next/previous")
        term.expect("\rplaying ")
        term.type(b"n")
        term.expect("track1.wav: WAV")
        term.expect("\rplaying ")
        term.type(b"p")
        term.expect("track0.wav: WAV")
        term.type(b"9")
        transient(term, "volume 95% (-0.4 dB)")
        term.type(b"*")
        transient(term, "volume 100% (0.0 dB)")
        term.type(b"m")
        transient(term, "muted")
        term.type(b"\x1b[A")  # up: +60 s, past the end of the track: the next one
        transient(term, "seek +60 s")
        term.expect("track1.wav: WAV")
        term.type(b"\x1b[B")  # down: -60 s, to the start
        transient(term, "seek -60 s")
        term.type(b"n")
        term.expect("track2.wav: WAV")
        term.type(b"n")
        transient(term, "last track: nothing follows")
        term.type(b"q")
        term.expect("stopped ")
    finally:
        code = term.close()
    assert code == 0
    assert "seek +10 s\r\n" not in term.screen


@pytest.mark.timeout(60)
def test_a_station_says_connecting_at_once_and_that_it_cannot_seek(jack) -> None:
    with IcyServer() as server:
        url = server.add("/keys.mp3", Station(payload=mp3_payload(4.0), rate=20_000, burst=8000, metaint=8000))
        term = Terminal(["play", url], jack.env)
        try:
            term.expect("connecting to " + url)
            term.expect("\rplaying ")
            term.type(b"\x1b[C")
            transient(term, "cannot seek: live stream")
            term.type(b"q")
            term.expect("stopped ")
        finally:
            code = term.close()
    assert code == 0


@pytest.mark.timeout(60)
def test_the_next_entry_is_opened_while_the_current_one_plays_not_all_at_once(jack, tmp_path) -> None:
    make_tracks(tmp_path, count=3, seconds=3.0)
    (tmp_path / "list.m3u").write_text("track0.wav\ntrack1.wav\ntrack2.wav\n")
    with RangedServer(tmp_path) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kithara_io", "play", server.url("list.m3u")],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **jack.env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            lines = [proc.stdout.readline() for _ in range(3)]  # entries, track 0, first status
            requested = {record.path for record in server.requests}
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        finally_requested = {record.path for record in server.requests}
    assert proc.returncode == 0, err
    assert lines[2].startswith(("buffering", "playing")), lines
    # While track 0 plays (3 s), track 1 preloads; track 2 waits for its turn.
    assert "/track0.wav" in requested and "/track2.wav" not in requested, requested
    assert "/track2.wav" in finally_requested
    assert played("".join(lines) + out) == ["track0.wav", "track1.wav", "track2.wav"]
