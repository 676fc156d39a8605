"""The player and ``kithara-io play`` when the network stalls and the user acts: a seek back
into downloaded audio resumes at once, ``q`` stops cleanly, Ctrl-C's message gets a line of
its own; and the play options that are usage errors."""

from __future__ import annotations

import gc
import signal as signals
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf

from kithara_io.playback import Player, State
from tests.audio_devices import ManualOutputs, jack  # noqa: F401 - fixture
from tests.servers import RangedServer
from tests.servers.media import signal
from kithara_io.cli.main import main
from tests.terminal import Terminal
from tests.interrupts import check_interrupt_wakes_a_waiting_read
from tests.servers.ranged import StallingBucket

RATE = 44100
BLOCK = 1024


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stall-media") / "10s.flac"
    sf.write(path, signal(10.0), RATE, format="FLAC", subtype="PCM_16")
    return path


@pytest.fixture
def stalling_server(long_flac) -> Iterator[RangedServer]:
    """Serves at 4x the FLAC's bitrate until a third of it went, then sends nothing for 60 s."""
    size = long_flac.stat().st_size
    rate = 4 * size / 10
    with RangedServer(long_flac.parent, bandwidth=rate) as server:
        config = server.httpd.config
        config.bucket = StallingBucket(rate, config.chunk_size, after=size // 3, stall=60.0)
        yield server


@pytest.mark.timeout(30)
def test_seek_back_after_a_stall_resumes_at_once_on_the_target_frame(stalling_server, long_flac) -> None:
    threads_before = set(threading.enumerate())
    expected = sf.read(long_flac, dtype="float32", always_2d=True)[0]
    outputs = ManualOutputs()
    player = Player(stalling_server.url(long_flac.name), output=outputs, blocksize=BLOCK)
    try:
        player.play()
        output = outputs[0]
        for _ in range(10 * RATE // BLOCK):  # bounded: the whole track
            player.wait_ready(0.05)
            output.pull()
            if player.status().underruns:
                break
        stalled = player.status()
        assert stalled.underruns == 1 and stalled.state is State.BUFFERING, stalled
        # The stall: a third of the file's bytes were sent, the tail and read-ahead fetches
        # included, so at least 2 s of audio from the start are downloaded and decoded.
        assert stalled.position > 2.0
        started = time.monotonic()
        assert player.seek(0.5)  # 0.5 s + one second played + 0.5 s prebuffer: within 2 s
        assert player.wait_ready(5), "a seek into downloaded audio must not wait for the stalled server"
        waited = time.monotonic() - started
        after = []
        for _ in range(RATE // BLOCK):  # one second, each block once the ring is ready
            assert player.wait_ready(5)
            after.append(output.pull())
        after = np.concatenate(after)
        status = player.status()
        print(f"stalled at {stalled.position:.2f} s; ready {waited * 1000:.0f} ms after the seek back")
        assert waited < 1.0
        assert status.state is State.PLAYING and status.underruns == 1 and status.error is None
        assert np.array_equal(after, expected[RATE // 2 : RATE // 2 + len(after)])  # exactly from 0.5 s on
    finally:
        started = time.monotonic()
        player.close()
        assert time.monotonic() - started < 5
    gc.collect()
    assert [t for t in threading.enumerate() if t not in threads_before and t.is_alive()
            and not t.name.startswith("test-server")] == []  # fmt: skip


@pytest.mark.timeout(40)
def test_q_during_a_stall_stops_cleanly(jack, stalling_server, long_flac) -> None:
    term = Terminal(["play", stalling_server.url(long_flac.name)], jack.env)
    try:
        term.expect("\rbuffering ", timeout=20)  # playing caught up with the stalled download
        term.type(b"q")
        term.expect("stopped ")
        code = term.proc.wait(10)
        err = term.proc.stderr.read().decode(errors="replace")
    finally:
        term.close()
    assert code == 0 and err == "", err


@pytest.mark.timeout(30)
def test_ctrl_c_message_starts_on_a_new_line(jack, ranged_server) -> None:
    term = Terminal(["play", ranged_server.url("tone.wav")], jack.env, shared_stderr=True)
    try:
        assert term.read_until("\rplaying ", 10), term.screen
        term.proc.send_signal(signals.SIGINT)
        assert term.read_until("kithara-io: error: interrupted", 10), term.screen
    finally:
        code = term.close()
    assert code == 130
    before = term.screen.split("kithara-io: error: interrupted")[0]
    assert before.endswith("\n"), repr(before[-120:])  # not glued to the status line


@pytest.mark.parametrize("args, option", [
    (["--volume", "nan"], "--volume"),
    (["--volume", "inf"], "--volume"),
    (["--start", "-5"], "--start"),
    (["--start", "nan"], "--start"),
    (["--crossfade", "-1"], "--crossfade"),
    (["--decoder", "ffmpeg"], "--decoder"),
    (["--samplerate", "0"], "--samplerate"),
])  # fmt: skip
def test_bad_play_options_are_usage_errors(media, args, option, capsys) -> None:
    assert main(["play", *args, str(media["tone.wav"])]) == 2  # in process: checked before any I/O
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kithara-io: error: ") and option in lines[0], lines


@pytest.mark.timeout(30)
def test_stream_interrupt_wakes_a_waiting_read_once_and_the_stream_stays_usable(stalling_server, long_flac) -> None:
    import kithara_io

    data = long_flac.read_bytes()
    size = len(data)
    config = stalling_server.httpd.config
    with kithara_io.open(stalling_server.url(long_flac.name)) as stream:
        assert stream.read(4096) == data[:4096]
        # From now on the server sends nothing (for 60 s): any read of a new range waits.
        config.bucket = StallingBucket(config.bucket.rate, config.chunk_size, after=0, stall=60.0)
        check_interrupt_wakes_a_waiting_read(stream, data[:4096], size // 2, lambda: stream.stats().waits > 0)
    gc.collect()
