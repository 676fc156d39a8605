"""HLS end to end: playlists written by FFmpeg's HLS muxer, served on 127.0.0.1, read through
``kithara_io.open`` and decoded by PyAV with ``format=`` given (so FFmpeg never fetches
anything itself: the server's User-Agent log proves every request came from kithara-io)."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
from typing import Iterator, List

import av
import m3u8
import numpy as np
import pytest

import kithara_io
from kithara_io.events import ReaderWaiting, RequestCancelled, RequestEnqueued, VariantSwitched
from kithara_io.reading.planning import Priority
from kithara_io.sources.hls.fetch import PartFetcher
from kithara_io.sources.hls.reader import HlsReader
from kithara_io.sources.hls.transport import USER_AGENT
from tests.servers.hls import HlsServer, LiveConfig
from tests.servers.hls_media import BITRATES, MASTER_ORDER, HlsMedia, make_hls_media
from tests.interrupts import check_interrupt_wakes_a_waiting_read
from tests.servers.ranged import StallingBucket
from tests.test_no_cyclic_garbage import left_to_the_collector


@pytest.fixture(scope="session")
def hls_media(tmp_path_factory: pytest.TempPathFactory) -> HlsMedia:
    return make_hls_media(tmp_path_factory.mktemp("hls").resolve())


@pytest.fixture(scope="session")
def hls_server(hls_media: HlsMedia) -> Iterator[HlsServer]:
    with HlsServer(hls_media.root) as srv:
        yield srv


@pytest.fixture
def server(hls_server: HlsServer) -> Iterator[HlsServer]:
    """The shared server with a fresh log; afterwards, every request must be kithara-io's:
    its HLS transport, or (for a URL that does not say .m3u8) its HTTP source, never FFmpeg."""
    hls_server.reset_log()
    yield hls_server
    assert all(agent == USER_AGENT or agent.startswith("python-requests/") for _, agent in hls_server.agents), hls_server.agents


def decode(data, fmt: str) -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(source, format=fmt) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


def variant_bytes(media: HlsMedia, kind: str, variant: int, segments: List[int]) -> bytes:
    """The local files of ``segments`` of one variant (``kind`` ts), joined."""
    base = media.root / kind / f"v{variant}"
    return b"".join((base / f"seg{i:03d}.ts").read_bytes() for i in segments)


MEDIA_CASES = [
    ("ts/v0/index.m3u8", "mpegts"),
    ("ts/v2/index.m3u8", "mpegts"),
    ("fmp4/v1/index.m3u8", "mp4"),
    ("single_ts/index.m3u8", "mpegts"),  # EXT-X-BYTERANGE into one file
    ("single_fmp4/index.m3u8", "mp4"),  # BYTERANGE, and an EXT-X-MAP with a BYTERANGE
    ("aes/index.m3u8", "mpegts"),  # AES-128
]


@pytest.mark.parametrize("playlist, fmt", MEDIA_CASES)
def test_media_playlist_decodes_like_the_local_segments(server, hls_media, playlist, fmt, no_leaks) -> None:
    local = hls_media.local_bytes(playlist)
    with kithara_io.open(server.url(playlist)) as stream:
        got = decode(stream, fmt)
        assert stream.size == len(local)
        assert stream.hls is not None and len(stream.hls.variants) == 1
        stream.seek(0)
        assert stream.read() == local
    assert np.array_equal(got, decode(local, fmt))
    assert got.shape[1] > 29 * 44100
    assert {agent for _, agent in server.agents} == {USER_AGENT}  # FFmpeg fetched nothing


def test_byterange_and_aes_need_no_size_requests(server, hls_media) -> None:
    with kithara_io.open(server.url("single_ts/index.m3u8")) as stream:
        assert stream.size == len(hls_media.local_bytes("single_ts/index.m3u8"))  # from BYTERANGE
        stream.read()
    methods = {r.method for r in server.requests}
    assert methods == {"GET"}
    assert {r.path for r in server.requests} == {"/single_ts/index.m3u8", "/single_ts/index.ts"}


def test_aes_key_fetched_once(server, hls_media) -> None:
    with kithara_io.open(server.url("aes/index.m3u8")) as stream:
        stream.read()
    assert [r.path for r in server.requests].count("/aes/key.bin") == 1


@pytest.mark.parametrize("choice, variant_index", [("lowest", 1), ("highest", 2), (0, 0), (2, 2)])
def test_master_playlist_variant_choice(server, hls_media, choice, variant_index) -> None:
    local_variant = MASTER_ORDER[variant_index]
    with kithara_io.open(server.url("ts/master.m3u8"), variant=choice) as stream:
        info = stream.hls
        assert [(v.bandwidth, v.codecs) for v in info.variants] == [(BITRATES[i] + 8000, "mp4a.40.2") for i in MASTER_ORDER]
        assert info.variants[0].uri == server.url("ts/v1/index.m3u8")
        assert info.variant == variant_index
        data = stream.read()
    assert data == hls_media.local_bytes(f"ts/v{local_variant}/index.m3u8")
    fetched = {r.path.split("/")[2] for r in server.requests if r.path.endswith(".ts")}
    assert fetched == {f"v{local_variant}"}  # one variant's segments only


def test_bad_variant_choice_is_refused(server) -> None:
    with pytest.raises(ValueError, match="out of range"):
        kithara_io.open(server.url("ts/master.m3u8"), variant=3)
    with pytest.raises(ValueError):
        kithara_io.open(server.url("ts/master.m3u8"), variant="best")


def test_seek_fetches_only_the_segments_it_needs(server, hls_media, no_leaks) -> None:
    """container.seek(20 s) on a 30 s, 8-segment variant: well under half the bytes."""
    local = hls_media.local_bytes("ts/v2/index.m3u8")

    def frames_after_seek(source) -> np.ndarray:
        with av.open(source, format="mpegts") as container:
            audio = container.streams.audio[0]
            container.seek(int(20 / audio.time_base), stream=audio)
            frames = []
            for frame in container.decode(audio):
                frames.append(frame.to_ndarray())
                if len(frames) == 40:
                    break
            return np.concatenate(frames, axis=1)

    downloader = kithara_io.Downloader()
    try:
        with kithara_io.open(server.url("ts/v2/index.m3u8"), downloader=downloader) as stream:
            got = frames_after_seek(stream)
            assert downloader.wait_idle(10)  # the read-ahead it started is counted too
            fetched = stream.stats().bytes_fetched
    finally:
        downloader.close()
    assert np.array_equal(got, frames_after_seek(io.BytesIO(local)))
    sent = sum(r.bytes_sent for r in server.requests if r.path.endswith(".ts"))
    assert fetched <= sent  # a cancelled fetch's bytes in flight are sent, not stored
    print(f"seek to 20 s: server sent {sent} of {len(local)} bytes ({sent / len(local):.2f})")
    assert sent < 0.45 * len(local)
    whole = {r.path for r in server.requests if r.method == "GET" and r.range is None and r.path.endswith(".ts")}
    assert not whole  # sub-ranges only: no segment was pulled whole for a seek


def test_eof_only_when_proven_and_sizes_learned(server, hls_media) -> None:
    local = hls_media.local_bytes("ts/v1/index.m3u8")
    with kithara_io.open(server.url("ts/v1/index.m3u8")) as stream:
        # A read far into the stream before any size is known: placed right, not an early EOF.
        stream.seek(len(local) - 100)
        assert stream.read(1000) == local[-100:]
        assert stream.read(10) == b""
        stream.seek(len(local) + 5000)
        assert stream.read(10) == b""
        assert stream.size == len(local)
        offsets = [s.offset for s in stream.hls.segments]
        assert offsets == list(np.cumsum([0] + [(hls_media.root / f"ts/v1/seg{i:03d}.ts").stat().st_size for i in range(7)]))
        assert stream.hls.offset_of(20.5) == offsets[5]
        assert stream.hls.offset_of(0) == 0
        durations = [s.duration for s in stream.hls.segments]
        assert len(durations) == 8 and abs(sum(durations) - 30) < 0.1
    assert any(r.method == "HEAD" for r in server.requests)  # sizes learned in the background


def test_segment_under_the_cursor_high_prefetch_low(server) -> None:
    enqueued: List[RequestEnqueued] = []
    with kithara_io.open(server.url("ts/v2/index.m3u8"), on_event=lambda e: enqueued.append(e) if isinstance(e, RequestEnqueued) else None) as stream:
        while stream.read(32 * 1024):
            pass
    segment = [e for e in enqueued if e.url.endswith(".ts")]
    assert {e.priority for e in segment} == {Priority.HIGH, Priority.LOW}
    assert segment[0].priority is Priority.HIGH and segment[0].url.endswith("seg000.ts")


@pytest.mark.timeout(60)
def test_far_seek_cancels_prefetches(hls_media, no_leaks) -> None:
    with HlsServer(hls_media.root, bandwidth=200_000) as slow:
        cancelled: List[RequestCancelled] = []
        with kithara_io.open(slow.url("ts/v2/index.m3u8"), on_event=lambda e: cancelled.append(e) if isinstance(e, RequestCancelled) else None) as stream:
            for _ in range(4):
                stream.read(32 * 1024)  # a sequential reader: prefetch runs at Low
            stream.seek(stream.hls.offset_of(26))
            assert stream.read(1000)
        assert cancelled, "the prefetch near the start was not cancelled"


def test_sample_aes_is_a_clear_error(server, hls_media) -> None:
    target = hls_media.root / "sample_aes"
    target.mkdir(exist_ok=True)
    text = (hls_media.root / "aes" / "index.m3u8").read_text().replace("METHOD=AES-128", "METHOD=SAMPLE-AES")
    (target / "index.m3u8").write_text(text.replace("seg0", "../aes/seg0").replace('URI="key.bin"', 'URI="../aes/key.bin"'))
    with pytest.raises(kithara_io.StreamError, match=r"SAMPLE-AES is not supported.*sample_aes/index.m3u8"):
        kithara_io.open(server.url("sample_aes/index.m3u8"))


def test_playlist_found_by_its_body(server, hls_media) -> None:
    """A playlist at a URL that does not end in .m3u8 is still recognised."""
    shutil.copy(hls_media.root / "ts" / "v0" / "index.m3u8", hls_media.root / "ts" / "v0" / "playlist")
    with kithara_io.open(server.url("ts/v0/playlist")) as stream:
        assert stream.hls is not None
        assert stream.read() == hls_media.local_bytes("ts/v0/index.m3u8")


@pytest.mark.parametrize("name", ["index.m3u8", "playlist"])
@pytest.mark.parametrize("location", ["relative", "absolute"])
def test_a_playlist_behind_a_redirect_resolves_its_uris_against_the_final_url(hls_media, name, location, no_leaks) -> None:
    """RFC 8216 4.1 (and every player): a playlist's URIs are relative to the URL that
    answered. Here the segments exist only beside the redirect target."""
    from tests.servers.faults import Redirect, running_fault_server

    folder = hls_media.root / "ts" / "v0"
    with running_fault_server() as srv:
        for path in folder.iterdir():
            srv.add(f"/real/{path.name}", path.read_bytes())
        srv.add(f"/real/{name}", (folder / "index.m3u8").read_bytes(), content_type="application/octet-stream")
        target = f"../real/{name}" if location == "relative" else srv.url(f"/real/{name}")
        srv.always(f"/moved/{name}", Redirect(target))
        with kithara_io.open(srv.url(f"/moved/{name}")) as stream:
            assert stream.hls is not None
            assert stream.read() == hls_media.local_bytes("ts/v0/index.m3u8")


def test_a_playlist_served_chunked_at_a_url_without_m3u8_is_hls(hls_media, no_leaks) -> None:
    """Dynamic APIs answer with a playlist made on the fly: chunked, no length, no ranges."""
    from tests.servers.faults import Chunked, IgnoreRange, running_fault_server

    folder = hls_media.root / "ts" / "v0"
    with running_fault_server() as srv:
        for path in folder.glob("seg*.ts"):
            srv.add(f"/api/{path.name}", path.read_bytes())
        srv.add("/api/playlist", (folder / "index.m3u8").read_bytes(), content_type="application/octet-stream")
        srv.always("/api/playlist", (IgnoreRange(), Chunked()))
        with kithara_io.open(srv.url("/api/playlist")) as stream:
            assert stream.hls is not None
            assert stream.read() == hls_media.local_bytes("ts/v0/index.m3u8")


def test_not_hls_has_no_hls_info(server, hls_media) -> None:
    with kithara_io.open(server.url("ts/v0/seg000.ts")) as stream:
        assert stream.hls is None
        assert stream.read() == (hls_media.root / "ts/v0/seg000.ts").read_bytes()


def _played(stream, hls_media, kind: str = "ts") -> bytes:
    """The local bytes of the segments the stream planned, variant by variant."""
    return b"".join(
        (hls_media.root / kind / f"v{MASTER_ORDER[s.variant]}" / f"seg{s.sequence:03d}.ts").read_bytes()
        for s in stream.hls.segments
    )


def test_auto_switches_up_with_segments_smaller_than_one_sample(server, hls_media, no_leaks) -> None:
    """Half-second audio segments of 4-19 KB: each alone is too small to time a link, pooled
    they still feed the estimate (they left ABR on the first variant forever)."""
    sizes = [p.stat().st_size for p in (hls_media.root / "short" / "v1").glob("seg*.ts")]
    assert max(sizes) < 16 * 1024  # the variant it starts on never gave one sample alone
    with kithara_io.open(server.url("short/master.m3u8")) as stream:
        data = stream.read()
        variants = [s.variant for s in stream.hls.segments]
        assert data == _played(stream, hls_media, "short")
    assert variants[0] == 0 and variants[-1] == 2, variants
    decode(data, "mpegts")


def test_auto_switches_up_on_a_fast_link(server, hls_media, no_leaks) -> None:
    switches: List[VariantSwitched] = []
    with kithara_io.open(server.url("ts/master.m3u8"), on_event=lambda e: switches.append(e) if isinstance(e, VariantSwitched) else None) as stream:
        assert stream.hls.variant == 0  # RFC 8216: the first listed variant starts
        got = decode(stream, "mpegts")
        stream.seek(0)
        data = stream.read()
        assert data == _played(stream, hls_media)
        variants = [s.variant for s in stream.hls.segments]
    assert switches and switches[0] == VariantSwitched(0, 2, "throughput")
    assert variants[0] == 0 and variants[-1] == 2  # 308 kbit/s is the highest
    assert np.array_equal(got, decode(data, "mpegts"))  # decodable across the switch
    assert got.shape[1] > 29 * 44100


@pytest.mark.timeout(60)
def test_auto_settles_on_the_lowest_on_a_120_kbit_link(hls_media, no_leaks) -> None:
    """Variants of 72/168/308 kbit/s (64/160/300 kbit/s audio) on a 120 kbit/s link."""
    with HlsServer(hls_media.root, bandwidth=120_000 / 8) as slow:
        switches: List[VariantSwitched] = []
        with kithara_io.open(slow.url("ts/master.m3u8"), on_event=lambda e: switches.append(e) if isinstance(e, VariantSwitched) else None) as stream:
            started = time.monotonic()
            data = bytearray()
            while len([s for s in stream.hls.segments if s.offset is not None and s.offset < len(data)]) < 3:
                piece = stream.read(16 * 1024)  # read on into the third segment
                assert piece
                data += piece
            segments = stream.hls.segments
            elapsed = time.monotonic() - started
        assert switches[0] == VariantSwitched(0, 1, "throughput"), switches
        assert [s.variant for s in segments[:3]] == [0, 1, 1]
        assert all(s.variant == 1 for s in segments[1:])  # settled: no switch back up
        expected = _played_prefix(hls_media, segments, len(data))
        assert bytes(data) == expected
        assert decode(bytes(data), "mpegts").shape[1] > 8 * 44100  # playback continues
        print(f"120 kbit/s: switched to 72 kbit/s after segment 0, 3 segments in {elapsed:.1f} s")
        assert {agent for _, agent in slow.agents} == {USER_AGENT}


def _played_prefix(hls_media, segments, length: int) -> bytes:
    data = b"".join(
        (hls_media.root / "ts" / f"v{MASTER_ORDER[s.variant]}" / f"seg{s.sequence:03d}.ts").read_bytes() for s in segments
    )
    return data[:length]


def test_select_pins_a_variant(server, hls_media) -> None:
    switches: List[VariantSwitched] = []
    with kithara_io.open(server.url("ts/master.m3u8"), variant="lowest", on_event=lambda e: switches.append(e) if isinstance(e, VariantSwitched) else None) as stream:
        head = stream.read(10_000)  # inside segment 0
        stream.hls.select(2)
        rest = stream.read()
        variants = [s.variant for s in stream.hls.segments]
        assert head + rest == _played(stream, hls_media)
    assert switches == [VariantSwitched(1, 2, "selected")]
    assert variants == [1] + [2] * 7
    decode(head + rest, "mpegts")


@pytest.mark.timeout(40)
@pytest.mark.parametrize("low_latency", [False, True])
def test_live_sliding_window(hls_media, no_leaks, low_latency) -> None:
    """Joined near the live edge, read to the end; an LL-HLS playlist plays its full
    segments (parts and preload hints are not segments)."""
    config = LiveConfig(window=5, period=1.0, publish=10, low_latency=low_latency)
    with HlsServer(hls_media.root, live=config) as live:
        started = time.monotonic()
        with kithara_io.open(live.url("live/live.m3u8")) as stream:
            assert stream.size is None and not stream.seekable()
            with pytest.raises(io.UnsupportedOperation):
                stream.seek(0, io.SEEK_END)
            data = stream.read()  # until #EXT-X-ENDLIST and the last segment
            sequences = [s.sequence for s in stream.hls.segments]
        elapsed = time.monotonic() - started
        # Started three target durations (3 s) from the live edge of the first window (0-4).
        durations = [s.duration for s in m3u8.load(str(hls_media.root / "live" / "source.m3u8")).segments]
        first = max(i for i in range(5) if sum(durations[i:5]) >= 3 * config.period)
        assert first in (1, 2)
        assert sequences == list(range(first, 10))
        base = hls_media.root / "live"
        assert data == b"".join((base / f"seg{i:03d}.ts").read_bytes() for i in sequences)
        reloads = [r for r in live.requests if r.path == "/live/live.m3u8"]
        assert 5 <= len(reloads) <= 16, len(reloads)  # about one per target duration
        assert 4.0 <= elapsed < 15, elapsed
        assert live.live.served_windows[-1][2]  # ended
        decode(data, "mpegts")


@pytest.mark.timeout(40)
def test_a_live_playlist_that_stops_growing_fails_a_waiting_read(hls_media, no_leaks) -> None:
    """Its segments are read; then the reload keeps answering the same list: a read
    waiting for more fails after Timeout.read (and three target durations), never hangs."""
    from kithara_io import ConnectionFailedError, Timeout
    from tests.servers.faults import running_fault_server

    folder = hls_media.root / "live"
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    for name in ("seg000.ts", "seg001.ts"):
        lines += ["#EXTINF:1.0,", name]
    with running_fault_server() as srv:
        for name in ("seg000.ts", "seg001.ts"):
            srv.add(f"/stuck/{name}", (folder / name).read_bytes())
        url = srv.add("/stuck/live.m3u8", ("\n".join(lines) + "\n").encode(), content_type="application/vnd.apple.mpegurl")
        stream = kithara_io.open(url, live_start="start", timeout=Timeout(read=1))
        got = bytearray()
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="listed nothing new"):
            for _ in range(100):  # bounded
                piece = stream.read(64 * 1024)
                assert piece, "a live stream that has not ended returned EOF"
                got += piece
        assert time.monotonic() - started < 10
        assert bytes(got) == b"".join((folder / n).read_bytes() for n in ("seg000.ts", "seg001.ts"))
        with pytest.raises(ConnectionFailedError):  # stored: close() tells it too
            stream.close()


@pytest.mark.timeout(40)
def test_event_playlist_seeks_within_what_it_lists(hls_media, no_leaks) -> None:
    """An EVENT playlist (append-only, then ENDLIST): reloaded like live, but it starts at
    the first segment, seeks within what it lists, and has a size once it ends."""
    config = LiveConfig(window=3, period=1.0, publish=8, event=True)
    local = [(hls_media.root / "live" / f"seg{i:03d}.ts").read_bytes() for i in range(8)]
    with HlsServer(hls_media.root, live=config) as event:
        with kithara_io.open(event.url("live/live.m3u8")) as stream:
            assert stream.seekable() and stream.size is None
            with pytest.raises(io.UnsupportedOperation):
                stream.seek(0, io.SEEK_END)  # no end yet
            assert [s.sequence for s in stream.hls.segments] == [0, 1, 2]  # from the first one
            listed = sum(len(b) for b in local[:3])
            head = stream.read(listed + 1000)  # past what is listed: waits for a reload
            assert head == b"".join(local)[: listed + 1000]
            assert len(stream.hls.segments) >= 4 and stream.size is None  # not ended yet
            second = stream.hls.segments[1]
            assert stream.hls.offset_of(second.start + 0.5) == second.offset == len(local[0])
            assert stream.seek(second.offset) == len(local[0])  # back to segment 1
            rest = stream.read()  # until ENDLIST and its last segment: EOF only when proven
            assert stream.read(10) == b""
            assert stream.size == sum(len(b) for b in local)
            assert [s.sequence for s in stream.hls.segments] == list(range(8))
            stream.seek(0)
            whole = decode(stream, "mpegts")
        assert event.live.served_windows[-1] == (0, 7, True)
        assert {agent for _, agent in event.agents} == {USER_AGENT}
    assert rest == b"".join(local[1:])
    assert np.array_equal(decode(rest, "mpegts"), decode(b"".join(local[1:]), "mpegts"))
    assert np.array_equal(whole, decode(b"".join(local), "mpegts"))


@pytest.mark.timeout(40)
def test_player_plays_an_event_playlist_before_it_ends(hls_media, no_leaks) -> None:
    """Until ENDLIST an EVENT stream has no end to ask for: the Player plays it as a live
    stream, from its first segment to the last one listed once it ends."""
    from kithara_io.playback import Player, State
    from tests.audio_devices import ManualOutputs

    local = b"".join((hls_media.root / "live" / f"seg{i:03d}.ts").read_bytes() for i in range(8))
    with HlsServer(hls_media.root, live=LiveConfig(window=3, period=1.0, publish=8, event=True)) as event:
        outputs = ManualOutputs()
        with Player(event.url("live/live.m3u8"), output=outputs, blocksize=1024) as player:
            assert player.duration is None  # not ended: no length yet
            player.play()
            blocks = []
            for _ in range(2000):  # 8 s of audio is ~350 blocks
                if outputs[0].finished:
                    break
                assert player.wait_ready(10)
                blocks.append(outputs[0].pull())
            status = player.status()
    assert status.state is State.FINISHED and status.error is None, status
    played, expected = np.concatenate(blocks), decode(local, "mpegts").T.astype(np.float32)
    assert np.array_equal(played[: len(expected)], expected)
    assert not played[len(expected) :].any()


def test_cli_info_lists_the_variants_and_the_chosen_one(server, capsys) -> None:
    from kithara_io.cli.main import main

    assert main(["info", server.url("ts/master.m3u8"), "--variant", "2"]) == 0
    text = capsys.readouterr().out
    assert "format        HLS" in text and "8 segments" in text
    assert f"variant 2     308000 bit/s mp4a.40.2 {server.url('ts/v2/index.m3u8')} (chosen)" in text
    assert main(["info", server.url("ts/master.m3u8"), "--variant", "lowest", "--json"]) == 0
    details = json.loads(capsys.readouterr().out)
    assert details["variant"] == 1 and [v["bandwidth"] for v in details["variants"]] == [168000, 72000, 308000]


def test_cli_get_downloads_one_variant(server, hls_media, tmp_path, capsys) -> None:
    from kithara_io.cli.main import main

    out = tmp_path / "media.ts"
    assert main(["get", server.url("ts/master.m3u8"), "--variant", "0", "-o", str(out)]) == 0
    assert out.read_bytes() == hls_media.local_bytes("ts/v1/index.m3u8")
    out2 = tmp_path / "highest.ts"
    assert main(["get", server.url("ts/master.m3u8"), "-o", str(out2)]) == 0  # default: highest
    assert out2.read_bytes() == hls_media.local_bytes("ts/v2/index.m3u8")


@pytest.mark.timeout(30)
def test_stream_interrupt_wakes_a_waiting_hls_read_once(hls_media, no_leaks) -> None:
    """Stream.interrupt on an HLS stream: a read waiting on a stalled server raises
    InterruptedError at once; the stream stays usable (what it read reads as before), and
    with nobody waiting the next read that has to wait raises, once."""
    local = hls_media.local_bytes("ts/v1/index.m3u8")
    far = len(local) - 10_000  # in the last segment
    with HlsServer(hls_media.root) as srv:
        config = srv.httpd.config
        waiting = threading.Event()
        with kithara_io.open(srv.url("ts/v1/index.m3u8"), on_event=lambda e: waiting.set() if isinstance(e, ReaderWaiting) and e.position >= far else None) as stream:
            assert stream.read(4096) == local[:4096]
            # From now on the server sends nothing (for 60 s): the read at ``far`` must wait.
            # (A stall after a byte count raced the far fetch: under load it could come first.)
            config.bucket = StallingBucket(50e6, config.chunk_size, after=0, stall=60.0)
            check_interrupt_wakes_a_waiting_read(stream, local[:4096], far, waiting.is_set)
            assert stream.tell() == far


def test_missing_segment_is_an_error_naming_it(server, hls_media) -> None:
    target = hls_media.root / "missing"
    target.mkdir(exist_ok=True)
    text = (hls_media.root / "ts" / "v0" / "index.m3u8").read_text().replace("seg", "../ts/v0/seg").replace("../ts/v0/seg003.ts", "gone.ts")
    (target / "index.m3u8").write_text(text)
    stream = kithara_io.open(server.url("missing/index.m3u8"))
    assert stream.read(1000)  # segments 0-2 are there
    with pytest.raises(kithara_io.HTTPStatusError, match=r"404.*missing/gone.ts"):
        while stream.read(64 * 1024):
            pass
    with pytest.raises(kithara_io.HTTPStatusError):  # stored, raised again by close()
        stream.close()


def test_fmp4_master_auto_stays_on_one_variant(server, hls_media) -> None:
    """A reader that did not ``enable_restarts`` (one plain mp4 demuxer): auto does not switch fMP4."""
    with kithara_io.open(server.url("fmp4/master.m3u8")) as stream:
        got = decode(stream, "mp4")
        assert {s.variant for s in stream.hls.segments} == {0}
    assert np.array_equal(got, decode(hls_media.local_bytes("fmp4/v1/index.m3u8"), "mp4"))


def _fmp4_local(hls_media, variant: int, sequences: List[int]) -> bytes:
    """The local init segment and ``sequences`` of one master variant (fMP4), joined."""
    base = hls_media.root / "fmp4" / f"v{MASTER_ORDER[variant]}"
    return (base / "init.mp4").read_bytes() + b"".join((base / f"seg{i:03d}.m4s").read_bytes() for i in sequences)


def decode_restarting(data: bytes, restarts: List[int]) -> np.ndarray:
    """What a reader that opens a fresh mp4 demuxer at every restart offset decodes."""
    bounds = [0] + restarts + [len(data)]
    return np.concatenate([decode(data[a:b], "mp4") for a, b in zip(bounds, bounds[1:])], axis=1)


@pytest.mark.timeout(60)
def test_fmp4_auto_switches_with_restarts_on_a_120_kbit_link(hls_media, no_leaks) -> None:
    """fMP4 variants of 72/168/308 kbit/s on a 120 kbit/s link, for a reader that re-opens its
    demuxer at each init segment: the switch puts the new init segment in, at a restart offset."""
    with HlsServer(hls_media.root, bandwidth=120_000 / 8) as slow:
        switches: List[VariantSwitched] = []
        with kithara_io.open(slow.url("fmp4/master.m3u8"), on_event=lambda e: switches.append(e) if isinstance(e, VariantSwitched) else None) as stream:
            stream.hls.enable_restarts()
            data, short = bytearray(), 0
            while True:  # until two segments of the variant switched to are read (bounded: timeout)
                segments = stream.hls.segments
                moved = [i for i, s in enumerate(segments) if s.variant != 0][:1]
                if moved and moved[0] + 2 < len(segments) and segments[moved[0] + 2].offset is not None:
                    if len(data) >= segments[moved[0] + 2].offset:
                        break
                piece = stream.read(16 * 1024)
                assert piece
                short += len(piece) < 16 * 1024
                data += piece
            restarts = stream.hls.restarts
        assert switches[0] == VariantSwitched(0, 1, "throughput"), switches
        j = moved[0]  # the first segment read from the 72 kbit/s variant
        assert j == 1  # read-ahead waited at the first boundary for a throughput sample
        assert [s.variant for s in segments] == [0] * j + [1] * (len(segments) - j)  # settled
        first, second = _fmp4_local(hls_media, 0, list(range(j))), _fmp4_local(hls_media, 1, [j, j + 1])
        assert restarts[0] == len(first) and segments[j].offset == len(first) + len(_fmp4_local(hls_media, 1, []))
        assert short >= 1  # the read before the restart offset stopped there
        end = len(first) + len(second)
        assert bytes(data[:end]) == first + second
        got = decode_restarting(bytes(data[:end]), [r for r in restarts if r < end])
        assert np.array_equal(got, np.concatenate([decode(first, "mp4"), decode(second, "mp4")], axis=1))
        assert got.shape[1] > (j + 2) * 3.9 * 44100
        print(f"fMP4 at 120 kbit/s: switched to 72 kbit/s before segment {j}, restarts at {restarts}")
        assert {agent for _, agent in slow.agents} == {USER_AGENT}


@pytest.mark.timeout(60)
def test_disk_cache_replays_offline(hls_media, tmp_path, no_leaks) -> None:
    from kithara_io.disk import DiskCache

    cache = DiskCache(tmp_path / "cache")
    local = hls_media.local_bytes("ts/v0/index.m3u8")
    with HlsServer(hls_media.root) as srv:
        url = srv.url("ts/master.m3u8")
        with kithara_io.open(url, variant="lowest", cache=cache) as stream:
            assert stream.read() == local
            assert stream.stats().bytes_from_disk == 0
        with kithara_io.open(url, variant="lowest", cache=cache) as stream:  # replay: no segment asked
            srv.reset_log()
            got = decode(stream, "mpegts")
            stats = stream.stats()
        asked = [(r.method, r.path, r.range) for r in srv.requests if r.path.endswith(".ts")]
        assert not asked and stats.bytes_fetched == 0 and stats.bytes_from_disk >= len(local), (asked, stats)
    # Server gone: playlists and segments from the disk copy.
    with kithara_io.open(url, variant="lowest", cache=cache) as stream:
        assert stream.read() == local
    assert np.array_equal(got, decode(local, "mpegts"))


def test_transient_segment_failure_is_retried(server, hls_media) -> None:
    from kithara_io.events import RequestRetrying

    server.fail_once("/ts/v0/seg002.ts", 503)
    retries: List[RequestRetrying] = []
    with kithara_io.open(server.url("ts/v0/index.m3u8"), on_event=lambda e: retries.append(e) if isinstance(e, RequestRetrying) else None) as stream:
        assert stream.read() == hls_media.local_bytes("ts/v0/index.m3u8")
        assert stream.stats().retries == 1
    assert [(r.attempt, r.url) for r in retries] == [(2, server.url("ts/v0/seg002.ts"))]
    assert "503" in retries[0].cause


def test_stream_priority_applies_to_segment_fetches(server) -> None:
    enqueued: List[RequestEnqueued] = []
    with kithara_io.open(server.url("ts/v1/index.m3u8"), priority="low", on_event=lambda e: enqueued.append(e) if isinstance(e, RequestEnqueued) else None) as stream:
        stream.read(50_000)
        assert stream.priority is Priority.LOW
        stream.priority = "high"
        count = len(enqueued)
        stream.read()
    assert enqueued[:count] and all(e.stream_priority is Priority.LOW for e in enqueued[:count])
    assert enqueued[count:] and all(e.stream_priority is Priority.HIGH for e in enqueued[count:])


def test_request_events_reach_the_downloader_bus(server, no_leaks) -> None:
    from kithara_io.events import RequestCompleted

    downloader = kithara_io.Downloader()
    seen: List[RequestCompleted] = []
    downloader.subscribe(lambda e: seen.append(e) if isinstance(e, RequestCompleted) else None)
    try:
        with kithara_io.open(server.url("ts/v0/index.m3u8"), downloader=downloader) as stream:
            stream.read()
    finally:
        downloader.close()
    assert seen and all(e.url.startswith(server.url("ts/v0/seg")) for e in seen)


def test_open_of_an_unreachable_playlist_fails_within_timeout_open(no_leaks) -> None:
    import socket

    with socket.socket() as s:  # bound, never listening: every connect is refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/x/master.m3u8"
        started = time.monotonic()
        with pytest.raises(kithara_io.ConnectionFailedError, match="master.m3u8"):
            kithara_io.open(url, retry=kithara_io.Retry(attempts=50, backoff=0.2, jitter=0), timeout=kithara_io.Timeout(open=1.0))
        assert time.monotonic() - started < 2.5


def test_player_plays_an_hls_stream(server, hls_media, no_leaks) -> None:
    """The Player (PyAV decoder) plays HLS: the samples PyAV decodes from the local segments."""
    from kithara_io.playback import Player, State
    from tests.audio_devices import ManualOutputs

    outputs = ManualOutputs()
    with Player(server.url("ts/master.m3u8"), output=outputs, blocksize=1024, variant="lowest") as player:
        player.play()
        blocks = []
        for _ in range(3000):
            if outputs[0].finished:
                break
            assert player.wait_ready(10)
            blocks.append(outputs[0].pull())
        state = player.status().state
    played = np.concatenate(blocks)
    expected = decode(hls_media.local_bytes("ts/v0/index.m3u8"), "mpegts").T.astype(np.float32)
    assert state is State.FINISHED
    assert np.array_equal(played[: len(expected)], expected)
    assert not played[len(expected) :].any()


@pytest.mark.timeout(60)
def test_player_plays_fmp4_auto_across_a_switch(server, hls_media, no_leaks) -> None:
    """The Player re-opens its demuxer at each restart offset: an fMP4 auto stream that
    switches plays through, the samples PyAV decodes from the local files of the variants read
    (init segment and segments of each run), with no underrun at a device pulling at 4x real time."""
    from kithara_io.playback import Player, State
    from tests.audio_devices import ManualOutputs

    outputs, switches = ManualOutputs(), []
    on_event = lambda e: switches.append(e) if isinstance(e, VariantSwitched) else None  # noqa: E731
    with Player(server.url("fmp4/master.m3u8"), output=outputs, blocksize=1024, on_event=on_event) as player:
        player.play()
        assert player.wait_ready(10)
        blocks, period, tick = [], 1024 / 44100 / 4, time.monotonic()
        for _ in range(3000):  # 30 s of audio is ~1300 blocks
            if outputs[0].finished:
                break
            blocks.append(outputs[0].pull())
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))  # the device's clock, 4x real time
        status = player.status()
        segments, restarts = player.stream.hls.segments, player.stream.hls.restarts
    assert status.state is State.FINISHED and status.error is None
    assert status.underruns == 0, status
    assert switches and switches[0].reason == "throughput", switches
    runs: List[List] = []
    for s in segments:  # consecutive segments of one variant: one demuxer's window
        if runs and runs[-1][0].variant == s.variant:
            runs[-1].append(s)
        else:
            runs.append([s])
    assert len(runs) >= 2 and len(restarts) == len(runs) - 1
    expected = np.concatenate([decode(_fmp4_local(hls_media, r[0].variant, [s.sequence for s in r]), "mp4") for r in runs], axis=1).T
    played = np.concatenate(blocks)
    frames = int(round(sum(s.duration for s in segments) * 44100))  # the mp4 length (edit list)
    assert np.array_equal(played[:frames], expected[:frames].astype(np.float32))
    assert not played[frames:].any()
    print(f"Player fMP4 auto: variants {[r[0].variant for r in runs]}, restarts at {restarts}")


@pytest.mark.timeout(60)
def test_a_closed_hls_stream_leaves_no_cyclic_garbage(server, hls_media, no_leaks) -> None:
    """Freed as it is dropped (see test_no_cyclic_garbage.py): AES-128, so the key store's
    callback is made, and ``stream.hls`` looked at, which holds the reader."""
    local = hls_media.local_bytes("aes/index.m3u8")

    def open_read_close() -> None:
        for _ in range(2):
            with kithara_io.open(server.url("aes/index.m3u8")) as stream:
                assert stream.hls is stream.hls and len(stream.hls.variants) == 1
                assert stream.read(100_000) == local[:100_000]
                stream.seek(len(local) // 2)
                assert stream.read(1000) == local[len(local) // 2 : len(local) // 2 + 1000]

    assert left_to_the_collector(open_read_close, (HlsReader, PartFetcher)) == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "playlist, missing", [("ts/master.m3u8", "/ts/v1/index.m3u8"), ("fmp4/master.m3u8", "/fmp4/v1/index.m3u8")]
)
def test_a_failed_open_leaves_nothing_to_the_garbage_collector(server, playlist, missing, no_leaks):
    """An open that fails (the first variant's playlist answers 404) raises its error and
    leaves no reader or part fetcher in a reference cycle."""

    def failed_open() -> None:
        server.fail_once(missing, 404)
        with pytest.raises(kithara_io.StreamError, match="404"):
            kithara_io.open(server.url(playlist))

    assert left_to_the_collector(failed_open, (HlsReader, PartFetcher)) == []
