"""Player as a queue (issue 27 row 2): every track in order, shuffle, repeat, next/previous,
volume and mute; what reached a hand-driven output compared with the files' samples."""

from __future__ import annotations

import random
from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf

from kithara_io.playback import Player, State
from kithara_io.playback.queue import PlayOrder
from tests.audio_devices import ManualOutputs, pull_all
from tests.servers import RangedServer

RATE = 44100
BLOCK = 512


def make_tracks(directory: Path, count: int = 3, seconds: float = 0.3) -> List[Path]:
    """Short float WAVs, each a different tone on a different offset: no zero frame, and no
    frame of one equal to a frame of another."""
    paths = []
    t = np.arange(int(seconds * RATE)) / RATE
    for k in range(count):
        tone = 0.2 * np.sin(2 * np.pi * (300 + 200 * k) * t)
        data = np.stack([tone + 0.3 + 0.1 * k, -tone - 0.3 - 0.1 * k], axis=1).astype(np.float32)
        path = directory / f"track{k}.wav"
        sf.write(path, data, RATE, subtype="FLOAT")
        paths.append(path)
    return paths


def frames_of(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


def nonsilent(frames: np.ndarray) -> np.ndarray:
    return frames[np.any(frames != 0, axis=1)]


def pull(player: Player, output, blocks: int) -> np.ndarray:
    out = []
    for _ in range(blocks):
        assert player.wait_ready(10)
        out.append(output.pull())
    return np.concatenate(out)


def test_every_track_plays_in_order_gapless(tmp_path, no_leaks) -> None:
    paths = make_tracks(tmp_path)
    outputs = ManualOutputs()
    with Player(paths[0], output=outputs, blocksize=BLOCK) as player:
        for path in paths[1:]:
            player.enqueue(path)
        player.play()
        played = pull_all(player, outputs[0], limit=1000)
        assert player.status().state is State.FINISHED
    expected = np.concatenate([frames_of(p) for p in paths])
    assert np.array_equal(played[: len(expected)], expected)
    assert not played[len(expected) :].any()


def test_more_coming_waits_for_tracks_enqueued_after_the_last_one_played(tmp_path, no_leaks) -> None:
    """The device plays all of the first track before the others are enqueued (the CLI
    enqueues a playlist's entries while the first plays; a fast device, a slow server):
    with ``more_coming`` that is an underrun, not the end, and they follow."""
    paths = make_tracks(tmp_path)
    first = frames_of(paths[0])
    outputs = ManualOutputs()
    with Player(paths[0], output=outputs, blocksize=BLOCK, prebuffer_seconds=0.1) as player:
        player.more_coming = True
        player.play()
        head = pull(player, outputs[0], -(-len(first) // BLOCK))  # all of it, and a bit of silence
        assert player.status().underruns == 1
        for path in paths[1:]:
            player.enqueue(path)
        player.more_coming = False
        played = np.concatenate([head, pull_all(player, outputs[0], limit=1000)])
        assert player.status().state is State.FINISHED
    assert np.array_equal(nonsilent(played), np.concatenate([frames_of(p) for p in paths]))


def test_shuffle_plays_a_permutation(tmp_path, no_leaks) -> None:
    paths = make_tracks(tmp_path, count=4)
    outputs = ManualOutputs()
    with Player(paths[0], output=outputs, blocksize=BLOCK, shuffle=True, rng=random.Random(7)) as player:
        for path in paths[1:]:
            player.enqueue(path)
        order = player.order
        player.play()
        played = pull_all(player, outputs[0], limit=1000)
    assert sorted(order) == [0, 1, 2, 3] and order[0] == 0 and order != [0, 1, 2, 3], order
    expected = np.concatenate([frames_of(paths[i]) for i in order])
    assert np.array_equal(played[: len(expected)], expected)


def test_shuffle_off_returns_to_the_enqueued_order() -> None:
    order = PlayOrder(random.Random(1))
    for _ in range(5):
        order.append(0)
    order.set_shuffle(True, 0)
    assert sorted(order.order) == list(range(6)) and order.order[0] == 0
    order.set_shuffle(False, 0)
    assert order.order == list(range(6))


@pytest.mark.parametrize("repeat, expected_order", [("track", [0, 0, 0]), ("playlist", [0, 1, 0, 1])])
def test_repeat_track_and_playlist(tmp_path, repeat, expected_order, no_leaks) -> None:
    paths = make_tracks(tmp_path, count=2)
    outputs = ManualOutputs()
    expected = np.concatenate([frames_of(paths[i]) for i in expected_order])
    with Player(paths[0], output=outputs, blocksize=BLOCK, repeat=repeat) as player:
        player.enqueue(paths[1])
        player.play()
        played = pull(player, outputs[0], len(expected) // BLOCK + 1)
        assert player.status().state is State.PLAYING  # it goes on
        player.repeat = "off"
    assert np.array_equal(played[: len(expected)], expected)


def test_next_and_previous_jump_to_the_start_of_a_track(tmp_path, no_leaks) -> None:
    paths = make_tracks(tmp_path)
    tracks = [frames_of(p) for p in paths]
    outputs = ManualOutputs()
    with Player(paths[0], output=outputs, blocksize=BLOCK, prebuffer_seconds=0.05) as player:
        for path in paths[1:]:
            player.enqueue(path)
        player.play()
        first = pull(player, outputs[0], 4)
        assert np.array_equal(first, tracks[0][: len(first)])
        assert player.next()
        after_next = nonsilent(pull(player, outputs[0], 6))
        assert np.array_equal(after_next, tracks[1][: len(after_next)]) and len(after_next) > 0
        assert player.status().track == 1
        assert player.previous()
        after_previous = nonsilent(pull(player, outputs[0], 6))
        assert np.array_equal(after_previous, tracks[0][: len(after_previous)]) and len(after_previous) > 0
        assert player.previous()  # at the first track: its start again
        again = nonsilent(pull(player, outputs[0], 4))
        assert np.array_equal(again, tracks[0][: len(again)]) and len(again) > 0
        assert player.next() and player.next()
        last = nonsilent(pull(player, outputs[0], 4))
        assert np.array_equal(last, tracks[2][: len(last)]) and len(last) > 0
        assert not player.next()  # the last track: nothing follows
        rest = pull_all(player, outputs[0], limit=1000)
    assert np.array_equal(nonsilent(np.concatenate([last, rest])), tracks[2])


def test_volume_and_mute_change_while_playing(tmp_path, no_leaks) -> None:
    paths = make_tracks(tmp_path, count=1, seconds=0.5)
    data = frames_of(paths[0])
    outputs = ManualOutputs()
    with Player(paths[0], output=outputs, blocksize=BLOCK) as player:
        player.play()
        plain = pull(player, outputs[0], 2)
        player.muted = True
        muted = pull(player, outputs[0], 2)
        player.muted = False
        player.volume = 0.5
        half = pull(player, outputs[0], 2)
    n = len(plain)
    assert np.array_equal(plain, data[:n])
    assert not muted.any()
    assert np.array_equal(half, data[2 * n : 3 * n] * np.float32(0.5))


@pytest.mark.timeout(60)
def test_enqueued_tracks_open_at_low_priority_and_rise_when_they_play(tmp_path, no_leaks) -> None:
    paths = make_tracks(tmp_path, count=2)
    outputs = ManualOutputs()
    with RangedServer(tmp_path) as server:
        with Player(server.url(paths[0].name), output=outputs, blocksize=BLOCK) as player:
            player.enqueue(server.url(paths[1].name))
            upcoming = player.tracks[1].stream
            assert upcoming.priority.name == "LOW"
            player.play()
            pull_all(player, outputs[0], limit=1000)
            assert upcoming.priority.name == "HIGH"


class _CtrlCAfter:
    """A file whose ``n``-th read is where a Ctrl-C lands (KeyboardInterrupt inside it)."""

    def __init__(self, path: Path, n: int) -> None:
        self._file = open(path, "rb")
        self._left = n
        self.name = str(path)

    def readinto(self, buffer) -> int:
        self._left -= 1
        if self._left == 0:
            raise KeyboardInterrupt
        return self._file.readinto(buffer)

    def read(self, size: int = -1) -> bytes:
        buf = bytearray(size if size >= 0 else 1 << 20)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


@pytest.mark.parametrize("n", [1, 5, 20, 30])
def test_a_ctrl_c_while_a_track_opens_is_not_lost(tmp_path, n) -> None:
    """The decoder reads through a callback that swallows exceptions (libsndfile's): a
    Ctrl-C landing in such a read reaches the caller as KeyboardInterrupt, not as an
    unreadable track the queue would skip (the CLI then never stopped on Ctrl-C)."""
    from kithara_io.playback.track import Track

    path = make_tracks(tmp_path, count=1)[0]
    with pytest.raises(KeyboardInterrupt):
        Track(_CtrlCAfter(path, n))  # 20, 30: in the probe by libsndfile, which then fails
