"""MPEG-DASH end to end: MPDs and segments written by FFmpeg's ``dash`` muxer (and hand-written
MPDs around its files for SegmentBase and multiple Periods), served on 127.0.0.1, read through
``kithara_io.open`` and decoded by PyAV with ``format="mp4"``: bytes equal to the producer's
local files joined, samples equal to PyAV's decode of them."""

from __future__ import annotations

import io
import json
from typing import Iterator, List

import av
import numpy as np
import pytest

import kithara_io
from kithara_io.events import VariantSwitched
from kithara_io.sources.dash.reader import DashReader
from kithara_io.sources.hls.transport import USER_AGENT
from tests.servers.dash import DashServer, LiveDash
from tests.servers.dash_media import PERIOD_RUNS, DashMedia, make_dash_media
from tests.test_no_cyclic_garbage import left_to_the_collector


@pytest.fixture(scope="session")
def dash_media(tmp_path_factory: pytest.TempPathFactory) -> DashMedia:
    return make_dash_media(tmp_path_factory.mktemp("dash").resolve())


@pytest.fixture(scope="session")
def dash_server(dash_media: DashMedia) -> Iterator[DashServer]:
    with DashServer(dash_media.root) as srv:
        yield srv


@pytest.fixture
def server(dash_server: DashServer) -> Iterator[DashServer]:
    """The shared server with a fresh log; afterwards every request must be kithara-io's."""
    dash_server.reset_log()
    yield dash_server
    assert all(agent == USER_AGENT or agent.startswith("python-requests/") for _, agent in dash_server.agents), dash_server.agents


def decode(data, fmt: str = "mp4") -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(source, format=fmt) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


def single_file(dash_media: DashMedia, folder: str, name: str) -> bytes:
    return (dash_media.root / folder / name).read_bytes()


@pytest.mark.parametrize("folder", ["timeline", "number", "files"])
def test_segment_files_read_and_decode_like_the_local_files(server, dash_media, folder, no_leaks) -> None:
    """SegmentTemplate with a SegmentTimeline, with $Number$ and a duration, and a SegmentList
    of files: the stream is the init segment then every segment, as FFmpeg wrote them."""
    local = dash_media.local(folder)
    with kithara_io.open(server.url(f"{folder}/manifest.mpd"), variant=0) as stream:
        assert stream.dash is stream.hls and stream.dash.representation.codecs == "mp4a.40.2"
        assert len(stream.dash.segments) == len(dash_media.chunks(folder))
        data = stream.read()
        assert stream.size == len(local)
    assert data == local
    assert np.array_equal(decode(data), decode(local))


def test_number_template_counts_segments_from_the_presentation_duration(server, dash_media) -> None:
    """7 s in 2 s segments: four, the last one 1 s (FFmpeg wrote four files)."""
    with kithara_io.open(server.url("number/manifest.mpd")) as stream:
        durations = [s.duration for s in stream.dash.segments]
    assert durations == pytest.approx([2.0, 2.0, 2.0, 1.0])


def test_single_file_segment_list_of_byte_ranges(server, dash_media, no_leaks) -> None:
    """FFmpeg's single_file output: a SegmentList of mediaRanges into one file, with an
    Initialization range: the stream is the file, fetched as those ranges."""
    local = single_file(dash_media, "list", "manifest-stream0.mp4")
    with kithara_io.open(server.url("list/manifest.mpd")) as stream:
        data = stream.read()
    assert data == local
    assert np.array_equal(decode(data), decode(local))


def test_segment_base_reads_its_sidx(server, dash_media, no_leaks) -> None:
    """SegmentBase with an indexRange: the sidx box FFmpeg wrote gives the subsegments; the
    BaseURL of the MPD (``media/``) and of the Representation (the file) are joined."""
    local = single_file(dash_media, "base/media", "audio.mp4")
    with kithara_io.open(server.url("base/manifest.mpd")) as stream:
        segments = stream.dash.segments
        data = stream.read()
    assert len(segments) == 3 and sum(s.duration for s in segments) == pytest.approx(6.0, abs=0.03)
    paths = {r.path for r in server.requests}
    assert "/base/media/audio.mp4" in paths and not any(p.endswith(".m4s") for p in paths)
    # The stream is the init part (ftyp+moov) then the subsegments: the file less its sidx box.
    from tests.servers.dash_media import top_boxes

    sidx = next((at, size) for at, size, kind in top_boxes(local) if kind == "sidx")
    assert data == local[: sidx[0]] + local[sidx[0] + sidx[1] :]
    assert np.array_equal(decode(data), decode(local))


def test_offset_of_seeks_to_a_segment(server, dash_media, no_leaks) -> None:
    local = dash_media.local("timeline", 1)
    chunks = dash_media.chunks("timeline", 1)
    init = len(local) - sum(len(c) for c in chunks)
    with kithara_io.open(server.url("timeline/manifest.mpd"), variant=1) as stream:
        offset = stream.dash.offset_of(4.5)  # in the third segment (from 4.03 s)
        assert offset == init + len(chunks[0]) + len(chunks[1])
        stream.seek(offset)
        tail = stream.read()
    assert tail == chunks[2]
    head = local[:init]
    assert np.array_equal(decode(head + tail), decode(head + chunks[2]))


def test_two_periods_at_two_rates_restart_at_the_boundary(server, dash_media, no_leaks) -> None:
    """Two Periods (44.1 kHz, then 48 kHz): the boundary is a discontinuity with the second
    period's init segment, and each part decodes like its own run's files."""
    from tests.hls_parts import decode_parts

    counts = [len(dash_media.chunks(f"periods/{name}")) for name, _ in PERIOD_RUNS]
    with kithara_io.open(server.url("periods/manifest.mpd")) as stream:
        assert [s.discontinuity for s in stream.dash.segments] == [False] * counts[0] + [True] + [False] * (counts[1] - 1)
        parts = decode_parts(stream, "mp4", 3)
        discontinuities = stream.dash.discontinuities
        assert len(stream.dash.periods) == 2
    first = dash_media.local("periods/a")
    assert discontinuities == [(len(first), pytest.approx(4.0, abs=0.05))]
    assert [(codec, rate) for codec, rate, _ in parts] == [("aac", r) for _, r in PERIOD_RUNS]
    for (name, _), (_, _, samples) in zip(PERIOD_RUNS, parts):
        assert np.array_equal(samples, decode(dash_media.local(f"periods/{name}")))


@pytest.mark.parametrize("audio, folder_rep", [(None, 1), ("eng", 1), ("deu", 2), ("2", 2)])
def test_audio_of_an_mpd_with_video_and_two_languages(server, dash_media, audio, folder_rep, no_leaks) -> None:
    """The video AdaptationSet is never read; ``audio=`` picks a set by lang or id."""
    with kithara_io.open(server.url("av/manifest.mpd"), audio=audio) as stream:
        assert [a.kind for a in stream.dash.adaptation_sets] == ["video", "audio", "audio"]
        assert stream.dash.adaptation_set.representations[0].id == str(folder_rep)
        data = stream.read()
    assert data == dash_media.local("av", folder_rep)
    assert not any("stream0" in r.path for r in server.requests)


def test_audio_that_matches_nothing_lists_the_choices(server) -> None:
    with pytest.raises(ValueError, match=r"no audio adaptation set matches 'fr'.*deu.*eng"):
        kithara_io.open(server.url("av/manifest.mpd"), audio="fr")


def test_mpd_found_by_its_body_at_another_url(dash_media, no_leaks) -> None:
    """An MPD behind a URL without .mpd (a body whose root is MPD): its BaseURLs resolve
    against the URL that answered."""
    import shutil

    shutil.copy(dash_media.root / "timeline" / "manifest.mpd", dash_media.root / "timeline" / "manifest.xml")
    with DashServer(dash_media.root) as srv:
        with kithara_io.open(srv.url("timeline/manifest.xml"), variant=0) as stream:
            assert stream.dash is not None
            assert stream.read() == dash_media.local("timeline", 0)


@pytest.mark.parametrize("name", ["manifest.mpd", "stream"])
@pytest.mark.parametrize("location", ["relative", "absolute"])
def test_an_mpd_behind_a_redirect_resolves_against_the_final_url(dash_media, name, location, no_leaks) -> None:
    """The segments exist only beside the redirect target: BaseURL-less templates resolve
    against the URL that answered (after redirects), as players do."""
    from tests.servers.faults import Redirect, running_fault_server

    folder = dash_media.root / "timeline"
    with running_fault_server() as srv:
        for path in folder.iterdir():
            srv.add(f"/real/{path.name}", path.read_bytes())
        srv.add(f"/real/{name}", (folder / "manifest.mpd").read_bytes(), content_type="application/octet-stream")
        target = f"../real/{name}" if location == "relative" else srv.url(f"/real/{name}")
        srv.always(f"/moved/{name}", Redirect(target))
        with kithara_io.open(srv.url(f"/moved/{name}"), variant=1) as stream:
            assert stream.dash is not None
            assert stream.read() == dash_media.local("timeline", 1)


def test_an_absolute_base_url_at_the_representation_level(dash_media, no_leaks) -> None:
    """A Representation's absolute BaseURL wins over the MPD's URL (the files on another path)."""
    from tests.servers.faults import running_fault_server

    folder = dash_media.root / "timeline"
    with running_fault_server() as srv:
        for path in folder.iterdir():
            srv.add(f"/cdn/{path.name}", path.read_bytes())
        text = (folder / "manifest.mpd").read_text()
        text = text.replace("<SegmentTemplate", f"<BaseURL>{srv.url('/cdn/')}</BaseURL>\n<SegmentTemplate")
        srv.add("/site/manifest.mpd", text.encode(), content_type="application/dash+xml")
        with kithara_io.open(srv.url("/site/manifest.mpd"), variant=0) as stream:
            assert stream.dash.representation.base_url == srv.url("/cdn/")
            assert stream.read() == dash_media.local("timeline", 0)


def test_an_mpd_served_chunked_at_a_url_without_mpd_is_dash(dash_media, no_leaks) -> None:
    """Dynamic APIs answer with an MPD made on the fly: chunked, no length, no ranges, the
    ``application/dash+xml`` content type."""
    from tests.servers.faults import Chunked, IgnoreRange, running_fault_server

    folder = dash_media.root / "number"
    with running_fault_server() as srv:
        for path in folder.glob("*.m4s"):
            srv.add(f"/api/{path.name}", path.read_bytes())
        srv.add("/api/manifest", (folder / "manifest.mpd").read_bytes(), content_type="application/dash+xml")
        srv.always("/api/manifest", (IgnoreRange(), Chunked()))
        with kithara_io.open(srv.url("/api/manifest")) as stream:
            assert stream.dash is not None
            assert stream.read() == dash_media.local("number")


def test_a_small_xml_file_that_is_not_an_mpd_stays_a_file(dash_media, tmp_path, no_leaks) -> None:
    (dash_media.root / "other.xml").write_bytes(b'<?xml version="1.0"?>\n<feed><title>MPD</title></feed>\n')
    with DashServer(dash_media.root) as srv:
        with kithara_io.open(srv.url("other.xml")) as stream:
            assert stream.dash is None and stream.hls is None
            assert stream.read().startswith(b"<?xml")


@pytest.mark.timeout(60)
def test_auto_switches_down_on_a_throttled_link(dash_media, no_leaks) -> None:
    """128 and 64 kbit/s Representations (in that order: ``auto`` starts with the first) on a
    100 kbit/s link, for a reader that re-opens its demuxer at init segments: ABR moves to
    64 kbit/s after the first segment, the switch puts its init segment in, and each part
    decodes like the producer's files of its Representation."""
    with DashServer(dash_media.root, bandwidth=100_000 / 8) as slow:
        switches: List[VariantSwitched] = []
        on_event = lambda e: switches.append(e) if isinstance(e, VariantSwitched) else None  # noqa: E731
        with kithara_io.open(slow.url("abr/manifest.mpd"), on_event=on_event) as stream:
            assert [r.bandwidth for r in stream.dash.representations] == [128484, 64544]
            stream.dash.enable_restarts()
            data = bytearray()
            for _ in range(1000):  # sequential reads, as a player's (bounded: 50 KB)
                piece = stream.read(16 * 1024)
                if not piece:
                    break
                data += piece
            segments, restarts = stream.dash.segments, stream.dash.restarts
        assert {agent for _, agent in slow.agents} == {USER_AGENT}
    bounds = [0] + restarts + [len(data)]
    parts = [decode(bytes(data[a:b])) for a, b in zip(bounds, bounds[1:])]
    assert switches[0] == VariantSwitched(0, 1, "throughput"), switches
    j = next(i for i, s in enumerate(segments) if s.variant == 1)
    assert j >= 1 and [s.variant for s in segments] == [0] * j + [1] * (len(segments) - j)
    high, low = dash_media.chunks("timeline", 1), dash_media.chunks("timeline", 0)
    init_high = dash_media.local("timeline", 1)[: -sum(len(c) for c in high)]
    init_low = dash_media.local("timeline", 0)[: -sum(len(c) for c in low)]
    assert bytes(data) == init_high + b"".join(high[:j]) + init_low + b"".join(low[j:])
    assert len(parts) == 2
    assert np.array_equal(parts[0], decode(init_high + b"".join(high[:j])))
    assert np.array_equal(parts[1], decode(init_low + b"".join(low[j:])))


def test_select_pins_a_representation(server, dash_media, no_leaks) -> None:
    switches: List[VariantSwitched] = []
    on_event = lambda e: switches.append(e) if isinstance(e, VariantSwitched) else None  # noqa: E731
    with kithara_io.open(server.url("timeline/manifest.mpd"), on_event=on_event) as stream:
        stream.dash.enable_restarts()
        stream.dash.select(1)  # from the next part on: the first segment
        data = stream.read()
        data += stream.read()  # the read stopped before the restart offset
        segments, restarts = stream.dash.segments, stream.dash.restarts
    assert switches == [VariantSwitched(0, 1, "selected")]
    assert [s.variant for s in segments] == [1] * len(segments)
    assert data[restarts[0] :] == dash_media.local("timeline", 1)


@pytest.mark.timeout(60)
def test_disk_cache_replays_offline(dash_media, tmp_path, no_leaks) -> None:
    from kithara_io.disk import DiskCache

    cache = DiskCache(tmp_path / "cache")
    local = single_file(dash_media, "base/media", "audio.mp4")
    with DashServer(dash_media.root) as srv:
        url = srv.url("base/manifest.mpd")
        with kithara_io.open(url, cache=cache) as stream:
            first = stream.read()
        srv.reset_log()
        with kithara_io.open(url, cache=cache) as stream:  # replay: no media asked
            assert stream.read() == first
            stats = stream.stats()
        assert not [r for r in srv.requests if r.path.endswith(".mp4")] and stats.bytes_fetched == 0, stats
    with kithara_io.open(url, cache=cache) as stream:  # server gone: MPD, index and media from disk
        assert stream.read() == first
    assert np.array_equal(decode(first), decode(local))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "config",
    [LiveDash(window=3), LiveDash(window=3, timeline=False), LiveDash(window=3, timeline=False, skew=3600.0, utc_timing="http")],
    ids=["timeline", "number", "number-server-clock"],
)
def test_live_mpd_joined_near_the_edge_and_read_to_its_end(dash_media, config, no_leaks) -> None:
    """FFmpeg's low-latency (``streaming``, ``ldash``) output published as a dynamic MPD, one
    1 s segment a second, a 3-segment window: the stream starts near the live edge
    (suggestedPresentationDelay 2 s), follows the reloads and ends when the MPD turns static;
    its bytes are the init segment and the segments from there on, as FFmpeg wrote them.
    ``number-server-clock``: a bare ``$Number$`` template from a server whose clock is an hour
    ahead, told by UTCTiming (by the local clock, no segment would be out for an hour)."""
    chunks = dash_media.chunks("live")
    init = dash_media.local("live")[: -sum(len(c) for c in chunks)]
    with DashServer(dash_media.root, live=config) as srv:
        with kithara_io.open(srv.url("live/live.mpd")) as stream:
            assert not stream.seekable() and stream.size is None
            assert stream.dash.mpd.dynamic
            first = stream.dash.segments[0].sequence
            data = bytearray()
            for _ in range(10_000):  # bounded: the run ends after 8 segments
                piece = stream.read(64 * 1024)
                if not piece:
                    break
                data += piece
        served = srv.live_mpd.served
    assert 1 <= first - 1 <= 2, first  # joined 2 s before the edge of 3 segments out
    assert bytes(data) == init + b"".join(chunks[first - 1 :])
    assert len(served) >= 3 and served[-1][2]  # reloaded until the MPD turned static
    assert np.array_equal(decode(bytes(data)), decode(init + b"".join(chunks[first - 1 :])))


@pytest.mark.timeout(90)
def test_gstreamer_dashsink_mpeg_ts_segments(tmp_path, no_leaks) -> None:
    """GStreamer's dashsink: a SegmentTemplate of MPEG-TS segments (no init segment); the
    stream is its segment files joined, and decodes like them."""
    from tests.servers.dash_media import gstreamer_missing, make_gstreamer_dash

    why = gstreamer_missing()
    if why is not None:
        pytest.skip(why)
    manifest = make_gstreamer_dash(tmp_path)
    files = sorted(manifest.parent.glob("audio_0_*.ts"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    local = b"".join(p.read_bytes() for p in files)
    with DashServer(tmp_path) as srv:
        with kithara_io.open(srv.url("gst-dash/manifest.mpd")) as stream:
            assert len(stream.dash.segments) == len(files) and stream.dash.mpd.periods[0].adaptation_sets[0].kind == "audio"
            data = stream.read()
    assert data == local
    assert np.array_equal(decode(data, "mpegts"), decode(local, "mpegts"))


def test_cli_info_and_get_on_an_mpd(server, dash_media, tmp_path, capsys) -> None:
    from kithara_io.cli.main import main

    assert main(["info", server.url("timeline/manifest.mpd"), "--json"]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["format"] == "DASH" and [v["bandwidth"] for v in details["variants"]] == [64544, 128484]
    out = tmp_path / "audio.mp4"
    assert main(["get", server.url("timeline/manifest.mpd"), "-o", str(out)]) == 0
    assert out.read_bytes() == dash_media.local("timeline", 1)  # get: the highest


@pytest.mark.timeout(60)
def test_cli_play_an_mpd(server, tmp_path) -> None:
    """``kithara-io play URL.mpd`` to ALSA's null device (no sound card; decoding speed)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.audio_devices import alsa_config

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "ALSA_CONFIG_PATH": str(alsa_config(tmp_path, "null")),
           "JACK_DEFAULT_SERVER": "kithara-io-no-such-server", "JACK_NO_START_SERVER": "1"}
    proc = subprocess.run([sys.executable, "-m", "kithara_io", "play", server.url("number/manifest.mpd")],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("manifest.mpd: AAC 68 kbit/s, 0:07"), lines[0]
    assert lines[-1].startswith("finished  0:07 / 0:07 ["), lines[-1]


def test_player_plays_an_mpd(server, dash_media, no_leaks) -> None:
    """The Player (PyAV decoder) plays the MPD's 7 s: the samples PyAV decodes from the local
    files, up to the presentation's duration (an MP4's length: the AAC padding after it is
    not played)."""
    from kithara_io.playback import Player, State
    from tests.audio_devices import ManualOutputs

    outputs = ManualOutputs()
    with Player(server.url("number/manifest.mpd"), output=outputs, blocksize=1024) as player:
        player.play()
        blocks = []
        for _ in range(3000):
            if outputs[0].finished:
                break
            assert player.wait_ready(10)
            blocks.append(outputs[0].pull())
        state = player.status().state
    played = np.concatenate(blocks)
    expected = decode(dash_media.local("number")).T.astype(np.float32)[: 7 * 44100]
    assert state is State.FINISHED
    assert np.array_equal(played[: len(expected)], expected)
    assert not played[len(expected) :].any()


@pytest.mark.timeout(60)
def test_player_seeks_into_the_second_period(server, dash_media, no_leaks) -> None:
    """A seek to 6 s: into the second Period, whose own timestamps start again at 0 (its 2nd
    second) and whose 48 kHz frames are resampled. The Player plays the last 2 s from there:
    placed at the target by the pass's first timestamp (equal to the whole period's resampled
    decode up to the resampler's phase: it restarts at the landing packet). Before, the seek
    went 6 s into the period's own time, past its end, and nothing played."""
    import soxr

    from kithara_io.playback import Player, State
    from kithara_io.playback.pyav import frame_to_float32
    from tests.audio_devices import ManualOutputs, pull_all

    name, rate = PERIOD_RUNS[1]
    with av.open(io.BytesIO(dash_media.local(f"periods/{name}")), format="mp4") as container:
        frames = np.concatenate([frame_to_float32(f) for f in container.decode(audio=0)])
    expected = soxr.resample(frames, rate, 44100, quality="HQ")[2 * 44100 : 4 * 44100]
    outputs = ManualOutputs()
    with Player(server.url("periods/manifest.mpd"), decoder="pyav", output=outputs, samplerate=44100, blocksize=512) as player:
        player.play()
        assert player.wait_ready(10)
        outputs[0].pull()
        assert player.seek(6.0)
        played = pull_all(player, outputs[0], limit=2000)
        assert player.status().state is State.FINISHED and player.status().error is None
    sounding = played[np.abs(played).sum(axis=1) > 0]
    assert len(sounding) == len(expected)  # from 6 s to the end, no more, no less
    assert np.corrcoef(sounding[:, 0], expected[:, 0])[0, 1] > 0.99
    assert np.abs(sounding - expected).mean() < 0.05


@pytest.mark.timeout(60)
def test_player_plays_both_periods_at_their_rates(server, dash_media, no_leaks) -> None:
    """Through the Player (PyAV): the 44.1 kHz period, then the 48 kHz one resampled to the
    output rate (soxr), each as its own files decode, each up to its period's 4 s (the edit
    list's end: the AAC padding after it is not played). The second period's timestamps start
    again at 0: the track's end moves on by its length (the Player stopped after the first)."""
    import soxr

    from kithara_io.playback import Player, State
    from kithara_io.playback.pyav import frame_to_float32
    from tests.audio_devices import ManualOutputs, pull_all

    out_rate = 44100
    expected = []
    for name, rate in PERIOD_RUNS:
        with av.open(io.BytesIO(dash_media.local(f"periods/{name}")), format="mp4") as container:
            frames = np.concatenate([frame_to_float32(f) for f in container.decode(audio=0)])
        resampled = soxr.resample(frames, rate, out_rate, quality="HQ") if rate != out_rate else frames
        expected.append(resampled[: 4 * out_rate])
    outputs = ManualOutputs()
    with Player(server.url("periods/manifest.mpd"), decoder="pyav", output=outputs, samplerate=out_rate, blocksize=512) as player:
        player.play()
        played = pull_all(player, outputs[0], limit=2000)
        assert player.status().state is State.FINISHED and player.status().error is None
    reference = np.concatenate(expected)
    assert len(played) >= len(reference) and not played[len(reference) :].any()
    assert np.array_equal(played[: len(reference)], reference)


@pytest.mark.timeout(60)
def test_a_closed_dash_stream_leaves_no_cyclic_garbage(server, dash_media, no_leaks) -> None:
    """Freed as it is dropped (see test_no_cyclic_garbage.py), ``stream.dash`` looked at."""
    local = dash_media.local("timeline")

    def open_read_close() -> None:
        for _ in range(2):
            with kithara_io.open(server.url("timeline/manifest.mpd"), variant=0) as stream:
                assert stream.dash is stream.hls and stream.dash.representation.codecs == "mp4a.40.2"
                assert stream.read(100_000) == local[:100_000]

    assert left_to_the_collector(open_read_close, (DashReader,)) == []
