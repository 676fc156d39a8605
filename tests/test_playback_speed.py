"""Player speed (the tempo changed, the pitch kept): what reaches the device compared with
FFmpeg's ``atempo`` run offline, here, on the local decode of the same file.

The tolerance: ``atempo`` gives the same samples however its input is cut into blocks,
except what it flushes at the end (up to one window, 1/24 s at 48 kHz: 2,000 frames). So the
frames before the last ``WINDOW`` must be equal, and the lengths may differ by a window.
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter
import numpy as np
import pytest
import soundfile as sf
import soxr

from kithara_io.playback import PlaybackError, Player, State
from tests.audio_devices import ManualOutputs, pull_all
from tests.av_media import encode
from tests.test_decoders import Unseekable
from tests.servers.media import signal

RATE = 48000
BLOCK = 512
WINDOW = RATE // 20  # atempo's window is 1/24 s: a margin over it


def atempo_offline(data: np.ndarray, rate: int, speed: float) -> np.ndarray:
    """The whole of ``data`` (frames x 2, float32) through abuffer -> atempo -> abuffersink
    in one frame: the reference, independent of the player's code."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=rate, layout="stereo", time_base=Fraction(1, rate))
    tempo = graph.add("atempo", str(speed))
    sink = graph.add("abuffersink")
    source.link_to(tempo)
    tempo.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, dtype=np.float32).reshape(1, -1), format="flt", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    source.push(frame)
    source.push(None)
    pieces = []
    for _ in range(100_000):  # bounded: one pass per frame the filter made
        try:
            out = sink.pull()
        except (BlockingIOError, av.error.EOFError):
            break
        assert out.format.name == "flt"
        pieces.append(out.to_ndarray().reshape(-1, 2))
    return np.concatenate(pieces)


def assert_stretched_alike(played: np.ndarray, reference: np.ndarray) -> None:
    """Equal but for the filter's last window; then silence (the device after the end)."""
    end = len(reference) - WINDOW
    diff = np.flatnonzero(np.any(played[:end] != reference[:end], axis=1))
    assert not len(diff), f"first difference at frame {diff[0]} of {end}"
    sound = np.flatnonzero(np.any(played != 0, axis=1))
    assert abs(int(sound[-1]) + 1 - len(reference)) <= WINDOW, (sound[-1], len(reference))


@pytest.fixture(scope="module")
def wav48(tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "48k.wav"
    sf.write(path, signal(3.0, RATE).astype(np.float32), RATE, subtype="FLOAT")
    return path


@pytest.mark.parametrize("speed", [0.5, 0.7, 1.5, 3.0])
def test_speed_output_equals_atempo_of_the_local_decode(wav48, speed, no_leaks) -> None:
    local = sf.read(wav48, dtype="float32", always_2d=True)[0]
    outputs = ManualOutputs()
    with Player(wav48, output=outputs, samplerate=RATE, blocksize=BLOCK, speed=speed) as player:
        assert player.speed == speed
        player.play()
        played = pull_all(player, outputs[0], limit=4000)
        status = player.status()
    assert status.state is State.FINISHED
    assert status.position == pytest.approx(3.0, abs=1 / RATE)  # media time: the end is the duration
    assert status.duration == 3.0
    reference = atempo_offline(local, RATE, speed)
    assert abs(len(reference) - len(local) / speed) < WINDOW  # the tempo changed
    assert_stretched_alike(played, reference)


def test_speed_after_resampling_equals_atempo_of_soxr_of_the_local_decode(tmp_path, no_leaks) -> None:
    data = signal(2.0, 44100).astype(np.float32)
    sf.write(tmp_path / "44k.wav", data, 44100, subtype="FLOAT")
    outputs = ManualOutputs()
    with Player(tmp_path / "44k.wav", output=outputs, samplerate=RATE, blocksize=BLOCK, speed=1.25) as player:
        player.play()
        played = pull_all(player, outputs[0], limit=4000)
    reference = atempo_offline(soxr.resample(data, 44100, RATE, quality="HQ"), RATE, 1.25)
    assert_stretched_alike(played, reference)


def test_speed_set_while_playing_takes_effect_at_once_from_the_frame_playing(wav48, no_leaks) -> None:
    local = sf.read(wav48, dtype="float32", always_2d=True)[0]
    outputs = ManualOutputs()
    with Player(wav48, output=outputs, samplerate=RATE, blocksize=BLOCK) as player:
        player.play()
        before = []
        for _ in range(100):  # 100 blocks at 1.0: 1.07 s
            assert player.wait_ready(10)
            before.append(outputs[0].pull())
        position = player.position
        assert position == pytest.approx(100 * BLOCK / RATE)
        player.speed = 2.0
        assert player.speed == 2.0 and player.position == pytest.approx(position)  # media time goes on
        assert player.wait_ready(10)
        first = outputs[0].pull()
        assert player.position == pytest.approx(position + 2.0 * BLOCK / RATE)  # two frames a frame
        after = np.concatenate([first, pull_all(player, outputs[0], limit=4000)])
        assert player.status().position == pytest.approx(3.0, abs=1 / RATE)
    head = np.concatenate(before)
    frame = len(head)
    assert np.array_equal(head, local[:frame])  # at 1.0: the file's own samples
    assert_stretched_alike(after, atempo_offline(local[frame:], RATE, 2.0))


def test_speed_back_to_one_plays_the_samples_unchanged(wav48, no_leaks) -> None:
    local = sf.read(wav48, dtype="float32", always_2d=True)[0]
    outputs = ManualOutputs()
    with Player(wav48, output=outputs, samplerate=RATE, blocksize=BLOCK, speed=1.5) as player:
        player.play()
        assert player.wait_ready(10)
        outputs[0].pull()
        position = player.position
        player.speed = 1.0
        played = pull_all(player, outputs[0], limit=4000)
    frame = round(position * RATE)
    assert frame == round(1.5 * BLOCK)
    assert np.array_equal(played[: len(local) - frame], local[frame:])


def test_enqueued_tracks_at_a_speed_follow_each_other_at_their_media_length(wav48, no_leaks) -> None:
    """Each track's stretched length is cut or padded to its own length over the speed, so
    the next one starts exactly there (and the position counts media time across them)."""
    local = sf.read(wav48, dtype="float32", always_2d=True)[0]
    outputs = ManualOutputs()
    with Player(wav48, output=outputs, samplerate=RATE, blocksize=BLOCK, speed=1.5) as player:
        player.enqueue(wav48)
        player.play()
        played = pull_all(player, outputs[0], limit=4000)
        status = player.status()
    assert status.track == 1 and status.position == pytest.approx(3.0, abs=1 / RATE)
    reference, length = atempo_offline(local, RATE, 1.5), round(len(local) / 1.5)
    assert_stretched_alike(played[:length], reference)
    assert_stretched_alike(played[length:], reference)


@pytest.mark.parametrize("bad", [0.49, 3.01, 0, -1, float("nan"), float("inf")])
def test_speed_outside_half_to_three_is_refused(wav48, bad, no_leaks) -> None:
    with pytest.raises(ValueError, match="speed must be a number from 0.5 to 3.0"):
        Player(wav48, output=ManualOutputs(), speed=bad)
    with Player(wav48, output=ManualOutputs()) as player:
        with pytest.raises(ValueError, match="speed must be a number from 0.5 to 3.0"):
            player.speed = bad
        assert player.speed == 1.0


def test_a_live_stream_plays_at_its_own_speed(tmp_path, no_leaks) -> None:
    path = encode(tmp_path / "live.adts", signal(1.0, RATE), RATE, "aac", "adts")
    outputs = ManualOutputs()
    with Player(Unseekable(path.read_bytes()), output=outputs, blocksize=BLOCK) as player:
        assert player.duration is None
        player.play()
        with pytest.raises(PlaybackError, match="a live stream plays at its own speed"):
            player.speed = 1.5
        assert player.speed == 1.0
        pull_all(player, outputs[0], limit=4000)
