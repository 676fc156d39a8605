"""Packed audio HLS (RFC 8216 3.4, issue #25): MP3 / ADTS AAC / AC-3 segments, each led by an
ID3 timestamp tag (and FFmpeg's segment muxer's own tags). The stream is the segments' bytes
without their leading tags: PyAV decodes it as it decodes the segments joined without them
(before, FFmpeg's MP3 demuxer stopped at the second segment's tag: "Header missing"), and
``size``, ``offset_of`` and seeks count those bytes exactly."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kithara_io
from kithara_io.playback.windows import RestartWindow
from kithara_io.sources.hls.packed import HeadSkipper, may_be_tagged, probe, tags_length
from kithara_io.sources.hls.playlist import Resource
from kithara_io.sources.hls.transport import Abort, Transport
from tests.servers.hls import HlsServer, LiveConfig
from tests.servers.hls_packed import CASES, RATE, SECONDS, make_packed_media, segment_bytes, strip_id3, timestamp_tag


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_packed_media(tmp_path_factory.mktemp("packed").resolve())


@pytest.fixture(scope="module")
def server(packed: Path) -> Iterator[HlsServer]:
    with HlsServer(packed) as srv:
        yield srv


def _decode(data, fmt: str) -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(source, format=fmt) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


@pytest.mark.parametrize("playlist, fmt", CASES.items())
def test_packed_audio_decodes_like_its_segments_without_their_tags(server, packed, playlist, fmt, no_leaks) -> None:
    segments = segment_bytes(packed, playlist)
    assert len(segments) >= 4 and all(s[:3] == b"ID3" for s in segments)  # a tag leads every segment
    expected = b"".join(strip_id3(s) for s in segments)
    with kithara_io.open(server.url(playlist)) as f:
        got = _decode(f, fmt)
        assert f.size == len(expected)
        f.seek(0)
        assert f.read() == expected
    own = _decode(expected, fmt)
    assert own.shape[1] >= (SECONDS - 0.1) * RATE  # the whole signal, not the first segment
    assert np.array_equal(got, own)


@pytest.mark.parametrize("playlist, fmt", [("packed/mp3/index.m3u8", "mp3"), ("packed/aac/index.m3u8", "aac"), ("packed/mp3_byterange/index.m3u8", "mp3")])
def test_offset_of_and_seeks_count_the_stream_bytes(server, packed, playlist, fmt, no_leaks) -> None:
    stripped = [strip_id3(s) for s in segment_bytes(packed, playlist)]
    with kithara_io.open(server.url(playlist)) as f:
        offset = f.hls.offset_of(4.5)  # in the third segment
        assert offset == len(stripped[0]) + len(stripped[1])
        assert [s.offset for s in f.hls.segments][:3] == [0, len(stripped[0]), offset]
        f.seek(offset + 1000)
        assert f.read(700) == stripped[2][1000:1700]
        f.seek(-300, io.SEEK_END)
        assert f.read() == stripped[-1][-300:]
        window = RestartWindow(f, offset, lambda: [])
        got = _decode(window, fmt)
    assert np.array_equal(got, _decode(b"".join(stripped[2:]), fmt))


@pytest.mark.parametrize("playlist, fmt", [("packed/mp3/index.m3u8", "mp3"), ("packed/ac3/index.m3u8", "ac3")])
def test_player_plays_packed_audio(server, packed, playlist, fmt, no_leaks) -> None:
    """The Player's FFmpeg decoder probes the format itself: the stream starts with audio
    frames. (Not forced, libsndfile takes the MP3 stream first: mpg123 decodes it to the same
    length, samples not bit-equal to FFmpeg's.)"""
    from kithara_io.playback import Player, State
    from tests.audio_devices import ManualOutputs

    expected = _decode(b"".join(strip_id3(s) for s in segment_bytes(packed, playlist)), fmt).T.astype(np.float32)
    outputs = ManualOutputs()
    with Player(server.url(playlist), output=outputs, blocksize=1024, decoder="pyav") as player:
        player.play()
        blocks = []
        for _ in range(3000):  # 9 s of audio is ~390 blocks
            if outputs[0].finished:
                break
            assert player.wait_ready(10)
            blocks.append(outputs[0].pull())
        status = player.status()
    played = np.concatenate(blocks)
    assert status.state is State.FINISHED and status.error is None, status
    assert np.array_equal(played[: len(expected)], expected)
    assert not played[len(expected) :].any()


@pytest.mark.timeout(60)
def test_packed_audio_replays_from_the_disk_cache_offline(packed, tmp_path, no_leaks) -> None:
    """The segments' files are cached as they are (tags included); a replay with the server
    gone learns the tags' length from the disk copy and gives the same stream."""
    from kithara_io.disk import DiskCache

    playlist = "packed/mp3_dynamic/index.m3u8"  # sizes learned from first bytes, not HEADs
    expected = b"".join(strip_id3(s) for s in segment_bytes(packed, playlist))
    cache = DiskCache(tmp_path / "cache")
    with HlsServer(packed) as srv:
        url = srv.url(playlist)
        with kithara_io.open(url, cache=cache) as f:
            assert f.hls.offset_of(4.5) == sum(len(strip_id3(s)) for s in segment_bytes(packed, playlist)[:2])
            f.seek(0)
            assert f.read() == expected
    with kithara_io.open(url, cache=cache) as f:  # the server is gone
        assert f.size == len(expected) and f.read() == expected
        assert f.stats().bytes_from_disk > 0


@pytest.mark.timeout(60)
def test_live_packed_audio_is_read_without_its_tags(packed, tmp_path, no_leaks) -> None:
    """A live window of packed MP3 segments (published one per second), joined near the edge
    and read to ENDLIST: each segment's bytes without its tag."""
    live = tmp_path / "live"
    live.mkdir()
    segments = segment_bytes(packed, "packed/mp3/index.m3u8")
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    for index, data in enumerate(segments):
        (live / f"seg{index:03d}.mp3").write_bytes(data)
        lines += ["#EXTINF:2.0,", f"seg{index:03d}.mp3"]
    (live / "source.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST", ""]))
    with HlsServer(tmp_path, live=LiveConfig(window=3, period=1.0, publish=len(segments))) as srv:
        with kithara_io.open(srv.url("live/live.m3u8")) as f:
            assert f.size is None
            data = f.read()
            sequences = [s.sequence for s in f.hls.segments]
    assert sequences[0] > 0 and sequences == list(range(sequences[0], len(segments)))
    expected = b"".join(strip_id3(segments[i]) for i in sequences)
    assert data == expected
    assert np.array_equal(_decode(data, "mp3"), _decode(expected, "mp3"))


def test_a_dynamic_url_of_mpeg_ts_is_read_as_it_is(tmp_path, no_leaks) -> None:
    """A segment URI without an extension may be packed audio: its first bytes tell; MPEG-TS
    (no tag) is then delivered byte for byte, its size from a short GET instead of a HEAD."""
    ts = tmp_path / "ts"
    ts.mkdir()
    data = [bytes([0x47]) + bytes(range(i, i + 187)) * 30 for i in range(3)]
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i, body in enumerate(data):
        (ts / f"s{i}").write_bytes(body)
        lines += ["#EXTINF:2.0,", f"s{i}"]
    (ts / "index.m3u8").write_text("\n".join(lines + ["#EXT-X-ENDLIST", ""]))
    with HlsServer(tmp_path) as srv, kithara_io.open(srv.url("ts/index.m3u8")) as f:
        assert f.hls.offset_of(4.5) == 2 * len(data[0])
        assert f.read() == b"".join(data) and f.size == 3 * len(data[0])


def test_probe_reads_the_tags_length_from_the_first_bytes(server, packed, no_leaks) -> None:
    segment = segment_bytes(packed, "packed/mp3/index.m3u8")[1]
    transport = Transport()
    try:
        assert probe(transport, Resource(server.url("packed/mp3/seg001.mp3")), Abort()) == (len(segment), len(segment) - len(strip_id3(segment)))
        whole = (packed / "packed" / "mp3_byterange" / "all.mp3").read_bytes()
        at = len(segment_bytes(packed, "packed/mp3/index.m3u8")[0])
        assert probe(transport, Resource(server.url("packed/mp3_byterange/all.mp3"), (at, len(segment))), Abort()) == (len(segment), 73)
        assert whole[at : at + 3] == b"ID3"
    finally:
        transport.close()


# -- pure -------------------------------------------------------------------------------

def _tag(size: int, footer: bool = False) -> bytes:
    body = bytes(size)
    header = b"ID3\x04\x00" + (b"\x10" if footer else b"\x00") + bytes(((size >> s) & 0x7F) for s in (21, 14, 7, 0))
    return header + body + (b"3DI" + header[3:] if footer else b"")


def test_tags_length_of_one_two_and_no_tags() -> None:
    frames = b"\xff\xfb\x90\x64" + bytes(400)
    one = timestamp_tag(123456)
    assert len(one) == 73 and tags_length(one + frames, False) == (73, 0)
    assert tags_length(_tag(200) + _tag(5, footer=True) + frames, False) == (210 + 25, 0)
    assert tags_length(frames, False) == (0, 0)
    assert tags_length(b"\x47" + bytes(187), False) == (0, 0)  # MPEG-TS
    assert tags_length(b"ID", False) == (None, 10)  # may still become a tag
    assert tags_length(one[:50], False) == (None, 83)  # the tag's end, and whether another follows
    assert tags_length(one[:50], True) == (50, 0)  # a segment that ends within its tag
    assert tags_length(b"ID3\x04\x00\x00\x80\x00\x00\x00" + frames, False) == (0, 0)  # not syncsafe: no tag


def test_only_segments_that_may_be_packed_audio_are_looked_at() -> None:
    assert may_be_tagged("http://h/a/seg1.aac") and may_be_tagged("http://h/a/seg1.mp3?t=1") and may_be_tagged("http://h/seg?n=1")
    assert not may_be_tagged("http://h/a/seg1.ts?token=x") and not may_be_tagged("http://h/a/seg1.m4s")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), min_size=0, max_size=3), st.integers(0, 2000), st.lists(st.integers(1, 500), min_size=1, max_size=20), st.booleans())
def test_head_skipper_gives_the_bytes_after_the_tags_in_any_pieces(tags, body_len, pieces, total_known) -> None:
    raw = b"".join(_tag(n) for n in tags) + bytes((i * 7 + 1) % 251 for i in range(body_len))
    skipper = HeadSkipper(None)
    if total_known:
        skipper.total = len(raw)
    out, pos, index = bytearray(), 0, 0
    while pos < len(raw):
        n = pieces[index % len(pieces)]
        piece = skipper.feed(pos, raw[pos : pos + n])
        if piece is not None:
            assert piece[0] == len(out)
            out += piece[1]
        pos, index = pos + n, index + 1
    if skipper.skip is None:  # the part ended within what looked like a tag header
        skipper.total = len(raw)
        piece = skipper.feed(len(raw), b"")
        if piece is not None:
            out += piece[1]
    assert bytes(out) == strip_id3(raw) and skipper.skip == len(raw) - len(out)


def test_a_tagged_part_has_a_size_once_its_length_and_its_tags_are_known() -> None:
    from kithara_io.sources.hls.plan import Plan
    from kithara_io.sources.hls.playlist import parse_playlist

    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.mp3\n#EXTINF:2,\nb.ts\n#EXTINF:2,\n#EXT-X-BYTERANGE:800@0\nc\n#EXT-X-ENDLIST\n"
    plan = Plan({0: parse_playlist(text, "http://h/p.m3u8")})
    plan.build(0, [0, 1, 2])
    a, b, c = plan.parts
    assert plan.tagged(a) and not plan.tagged(b) and plan.tagged(c) and plan.skip(b) == 0
    assert plan.raw_size(c) == 800 and c not in plan.sizes  # BYTERANGE: its length in the file
    assert not plan.learn_raw(a, 1000) and plan.layout.offset(1) is None
    assert plan.learn_skip(a, 73) and plan.sizes[a] == 927 and plan.layout.offset(1) == 927
    assert plan.learn_raw(b, 500) and plan.layout.offset(2) == 1427 and plan.layout.total() is None
    assert plan.learn_skip(c, 0) and plan.layout.total() == 2227
