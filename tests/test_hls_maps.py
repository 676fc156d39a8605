"""``#EXT-X-MAP`` that changes between segments (issue #25): fMP4 runs of 44.1 kHz and 48 kHz
AAC, each with its own init segment written by FFmpeg's HLS muxer, joined by a playlist with
``#EXT-X-DISCONTINUITY`` and a second ``#EXT-X-MAP``. Each segment is read with the init
segment in force: the new one goes into the stream where it changes, at a restart offset, and
a demuxer re-opened there decodes each run as its own files decode."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import kithara_io
from kithara_io.events import Discontinuity
from kithara_io.playback.windows import RestartWindow
from kithara_io.sources.hls.plan import INIT, Plan
from kithara_io.sources.hls.playlist import parse_playlist
from tests.hls_parts import decode, decode_parts
from tests.servers.hls import HlsServer
from tests.servers.hls_maps import RUNS, make_map_media, run_bytes


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("maps").resolve()
    make_map_media(directory)
    return directory


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[HlsServer]:
    with HlsServer(root) as srv:
        yield srv


def _decode(data) -> tuple:
    _, rate, samples = decode(data, "mp4")
    return rate, samples


def test_the_stream_carries_each_init_segment_where_it_changes(server, root, no_leaks) -> None:
    a, b = (run_bytes(root, name) for name, _ in RUNS)
    seen = []
    with kithara_io.open(server.url("maps/index.m3u8"), on_event=lambda e: seen.append(e) if isinstance(e, Discontinuity) else None) as f:
        data = f.read()
        segments, bounds, restarts = f.hls.segments, f.hls.discontinuities, f.hls.restarts
    assert data == a + b
    assert restarts == [len(a)]  # the second init segment: a fresh demuxer starts there
    first_b = next(i for i, s in enumerate(segments) if s.discontinuity)
    assert first_b == 4 and [s.discontinuity for s in segments].count(True) == 1
    assert bounds == [(len(a), segments[first_b].start)]
    assert [(e.position, e.seconds) for e in seen] == bounds


def test_a_demuxer_per_run_decodes_each_run_as_its_own_files(server, root, no_leaks) -> None:
    with kithara_io.open(server.url("maps/index.m3u8")) as f:
        got = [(rate, samples) for _, rate, samples in decode_parts(f, "mp4", most=4)]  # two runs
    expected = [_decode(run_bytes(root, name)) for name, _ in RUNS]
    assert [rate for rate, _ in got] == [rate for _, rate in RUNS] == [rate for rate, _ in expected]
    for (_, samples), (_, own) in zip(got, expected):
        assert samples.shape == own.shape and np.array_equal(samples, own)
    assert len(got) == 2


def test_seeking_into_the_second_run_starts_at_its_init_segment(server, root, no_leaks) -> None:
    with kithara_io.open(server.url("maps/index.m3u8")) as f:
        (_, seconds), = f.hls.discontinuities
        offset = f.hls.offset_of(seconds + 1.0)  # waits for the sizes before it
        (boundary, _), = f.hls.discontinuities
        assert boundary == len(run_bytes(root, "a")) < offset
        f.hls.enable_restarts()
        f.seek(boundary)
        f.read(1)  # fixes the boundary: the part is fetched
        rate, samples = _decode(RestartWindow(f, boundary, lambda: f.hls.restarts))
    assert rate == 48000 and np.array_equal(samples, _decode(run_bytes(root, "b"))[1])


def _two_runs(prefix: str) -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f'#EXT-X-MAP:URI="{prefix}/a.mp4"']
    for i in range(4):
        if i == 2:
            lines += ["#EXT-X-DISCONTINUITY", f'#EXT-X-MAP:URI="{prefix}/b.mp4"']
        lines += ["#EXTINF:2.0,", f"{prefix}/s{i}.m4s"]
    return "\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n"


def test_the_plan_puts_an_init_part_where_the_map_changes_and_across_switches() -> None:
    media = {i: parse_playlist(_two_runs(name), f"http://h/{name}.m3u8") for i, name in enumerate("xy")}
    plan = Plan(media)
    plan.build(0, [0, 1, 2, 3])
    assert plan.parts == [(0, INIT), (0, 0), (0, 1), (0, INIT - 1), (0, 2), (0, 3)]
    assert plan.resource((0, INIT - 1)).uri == "http://h/x/b.mp4"
    assert [plan.restarts_at(i) for i in range(6)] == [False, False, False, True, False, False]
    assert plan.switch(2, 1) == 0  # before segment 1: variant 1's first init, then its second
    assert plan.parts == [(0, INIT), (0, 0), (1, INIT), (1, 1), (1, INIT - 1), (1, 2), (1, 3)]
    assert plan.switch(4, 0) == 1  # at the second run's init: variant 0's init of that run
    assert plan.parts == [(0, INIT), (0, 0), (1, INIT), (1, 1), (0, INIT - 1), (0, 2), (0, 3)]
    assert plan.switch(2, 0) == 1  # all back: no init part repeated, none left over
    assert plan.parts == [(0, INIT), (0, 0), (0, 1), (0, INIT - 1), (0, 2), (0, 3)]
    assert len(plan.layout) == len(plan.parts)


def test_select_across_a_map_change_reads_each_variants_init_in_force(server, root, no_leaks) -> None:
    """Variant 1 (the same media under other URIs) selected in the first run: its first init
    segment goes in at the switch, its second where its map changes."""
    base = root / "maps" / "a"
    init_a, seg = (base / "init.mp4").read_bytes(), [(base / f"seg{i:03d}.m4s").read_bytes() for i in range(4)]
    with kithara_io.open(server.url("maps/master.m3u8"), variant=0) as f:
        f.hls.enable_restarts()
        head = f.read(len(init_a) + len(seg[0]) + 10)  # the cursor in segment 1
        f.hls.select(1)
        rest = bytearray()
        for _ in range(10):  # bounded: reads stop at each of two restart offsets, then EOF
            piece = f.read()
            if not piece:
                break
            rest += piece
        variants = [s.variant for s in f.hls.segments]
        restarts = f.hls.restarts
    data = head + bytes(rest)
    first = init_a + seg[0] + seg[1]
    assert variants == [0, 0] + [1] * 6
    assert data == first + init_a + seg[2] + seg[3] + run_bytes(root, "b")
    assert restarts == [len(first), len(first) + len(init_a) + len(seg[2]) + len(seg[3])]
    assert np.array_equal(_decode(data[restarts[1]:])[1], _decode(run_bytes(root, "b"))[1])


def test_a_live_reload_that_changes_the_map_appends_the_new_init_part() -> None:
    def live(first: int, count: int) -> str:
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for seq in range(first, first + count):
            if seq in (first, 3):  # the map in force at the window's start, and a new one at 3
                lines += (["#EXT-X-DISCONTINUITY"] if seq == 3 else []) + [f'#EXT-X-MAP:URI="{"b" if seq >= 3 else "a"}.mp4"']
            lines += ["#EXTINF:2.0,", f"s{seq}.m4s"]
        return "\n".join(lines) + "\n"

    plan = Plan({0: parse_playlist(live(0, 3), "http://h/l.m3u8")})
    plan.build(0, [1, 2])  # joined the window at segment 1
    assert plan.parts == [(0, INIT), (0, 1), (0, 2)]
    fresh, gap = plan.merge(0, parse_playlist(live(2, 3), "http://h/l.m3u8"))
    assert [s.sequence for s in fresh] == [3, 4] and gap is None
    assert plan.parts == [(0, INIT), (0, 1), (0, 2), (0, INIT - 1), (0, 3), (0, 4)]
    assert plan.resource((0, INIT - 1)).uri == "http://h/b.mp4" and plan.discontinuities() == [(None, 4.0)]


@pytest.mark.timeout(60)
def test_the_player_plays_both_runs(server, root, no_leaks) -> None:
    """Through the Player (PyAV): run a (44.1 kHz), then run b resampled from 48 kHz, each as
    its own files decode up to its own end (its edit list; the AAC padding past it is not
    played). Run a's padding reached past its end within one read: the Player took that read's
    shortness for the end of the track and stopped after 6 of 12 s."""
    import io

    import av
    import soxr

    from kithara_io.playback import Player, State
    from kithara_io.playback.pyav import frame_to_float32
    from tests.audio_devices import ManualOutputs, pull_all

    out_rate = 44100
    expected = []
    for name, rate in RUNS:
        with av.open(io.BytesIO(run_bytes(root, name)), format="mp4") as container:
            stream = container.streams.audio[0]
            length = round(float(stream.duration * stream.time_base) * out_rate)
            frames = np.concatenate([frame_to_float32(f) for f in container.decode(stream)])
        resampled = soxr.resample(frames, rate, out_rate, quality="HQ") if rate != out_rate else frames
        expected.append(resampled[:length])
    outputs = ManualOutputs()
    with Player(server.url("maps/index.m3u8"), decoder="pyav", output=outputs, samplerate=out_rate, blocksize=512) as player:
        player.play()
        played = pull_all(player, outputs[0], limit=3000)
        assert player.status().state is State.FINISHED and player.status().error is None
    reference = np.concatenate(expected)
    assert len(played) >= len(reference) and not played[len(reference) :].any()
    assert np.array_equal(played[: len(reference)], reference)
