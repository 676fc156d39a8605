"""``#EXT-X-DISCONTINUITY`` (issue #25): a playlist stitched from 44.1 kHz AAC, 48 kHz AAC and
MP3, each part written by FFmpeg. The boundaries are exposed (offsets, times, events), and a
demuxer re-opened at each (the documented PyAV pattern: ``enable_restarts`` and
``RestartWindow``) decodes every part exactly as its own files decode."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator, List

import av
import numpy as np
import pytest

import kithara_io
from kithara_io.events import Discontinuity
from kithara_io.playback.windows import RestartWindow
from tests.hls_parts import decode, decode_parts
from tests.servers.hls import HlsServer
from tests.servers.hls_discontinuity import make_stitched_media


@pytest.fixture(scope="module")
def stitched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stitched").resolve()
    make_stitched_media(root)
    return root


@pytest.fixture(scope="module")
def server(stitched: Path) -> Iterator[HlsServer]:
    with HlsServer(stitched) as srv:
        yield srv


def _part_bytes(root: Path, name: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((root / "stitched").glob(f"{name}[0-9][0-9][0-9].ts")))


def _decode(data) -> tuple:
    return decode(data, "mpegts")


def test_boundaries_are_exposed_with_offsets_times_and_events(server, stitched, no_leaks) -> None:
    parts = [_part_bytes(stitched, n) for n in "abc"]
    seen: List[Discontinuity] = []
    with kithara_io.open(server.url("stitched/index.m3u8"), on_event=lambda e: seen.append(e) if isinstance(e, Discontinuity) else None) as f:
        data = f.read()
        bounds = f.hls.discontinuities
        segments = f.hls.segments
    assert data == b"".join(parts)
    offsets = [len(parts[0]), len(parts[0]) + len(parts[1])]
    assert [offset for offset, _ in bounds] == offsets
    starts = [s.start for s in segments if s.discontinuity]
    assert [seconds for _, seconds in bounds] == starts and len(starts) == 2
    assert [(e.position, e.seconds) for e in seen] == list(bounds)


def test_a_demuxer_per_part_decodes_each_part_as_its_own_files(server, stitched, no_leaks) -> None:
    """The documented PyAV pattern: one demuxer per window between restart offsets."""
    with kithara_io.open(server.url("stitched/index.m3u8")) as f:
        got = decode_parts(f, "mpegts", most=5)  # three parts
    expected = [_decode(_part_bytes(stitched, n)) for n in "abc"]
    assert [(codec, rate) for codec, rate, _ in got] == [("aac", 44100), ("aac", 48000), ("mp3float", 44100)]
    for (_, _, samples), (_, _, own) in zip(got, expected):
        assert np.array_equal(samples, own)
    assert len(got) == 3


def test_seeking_into_a_later_part_starts_at_its_boundary(server, stitched, no_leaks) -> None:
    with kithara_io.open(server.url("stitched/index.m3u8")) as f:
        (_, b_start), (_, c_start) = f.hls.discontinuities  # offsets None: sizes still unknown
        c_offset = f.hls.offset_of(c_start + 0.5)  # waits for the sizes before it
        assert f.hls.discontinuities[1] == (c_offset, c_start)
        f.hls.enable_restarts()
        window = RestartWindow(f, c_offset, lambda: f.hls.restarts)
        codec, rate, samples = _decode(window)
    assert (codec, rate) == ("mp3float", 44100)
    assert np.array_equal(samples, _decode(_part_bytes(stitched, "c"))[2])


@pytest.mark.timeout(60)
def test_the_player_reopens_its_decoder_at_each_part(server, stitched, no_leaks) -> None:
    """Through the Player (PyAV): each part decoded as its own files decode, resampled to
    the output rate (soxr) at its own rate: 44.1 kHz AAC, 48 kHz AAC, MP3."""
    import soxr

    from kithara_io.playback import Player, State
    from kithara_io.playback.pyav import frame_to_float32
    from tests.audio_devices import ManualOutputs, pull_all

    out_rate = 44100
    expected = []
    for name in "abc":
        with av.open(io.BytesIO(_part_bytes(stitched, name)), format="mpegts") as container:
            stream = container.streams.audio[0]
            frames = np.concatenate([frame_to_float32(f) for f in container.decode(stream)])
            expected.append(soxr.resample(frames, stream.rate, out_rate, quality="HQ") if stream.rate != out_rate else frames)
    outputs = ManualOutputs()
    with Player(server.url("stitched/index.m3u8"), decoder="pyav", output=outputs, samplerate=out_rate, blocksize=512) as player:
        player.play()
        played = pull_all(player, outputs[0], limit=2000)
        assert player.status().state is State.FINISHED
    reference = np.concatenate(expected)
    assert len(played) >= len(reference) and not played[len(reference) :].any()
    assert np.array_equal(played[: len(reference)], reference)
