"""Where an HLS stream starts and how it moves (issue #25): ``#EXT-X-START``, ``live_start``
(edge, start of the window, seconds), seeking within a sliding live window, and PyAV
decoding an EVENT playlist while it grows (``stream.hls.pipe()``). Every live test is
bounded: the server writes ENDLIST after ``publish`` segments."""

from __future__ import annotations

import io
from typing import List

import av
import m3u8
import numpy as np
import pytest

import kithara_io
from kithara_io.sources.hls.kind import PlaylistKind
from kithara_io.sources.hls.playlist import parse_playlist
from kithara_io.sources.hls.start import choose
from tests.servers.hls import HlsServer, LiveConfig
from tests.servers.hls_media import HlsMedia, make_hls_media


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> HlsMedia:
    return make_hls_media(tmp_path_factory.mktemp("hls_live").resolve())


@pytest.fixture(scope="module")
def local(media: HlsMedia) -> List[bytes]:
    """The live source's segment files, in order."""
    source = m3u8.load(str(media.root / "live" / "source.m3u8"))
    return [(media.root / "live" / s.uri).read_bytes() for s in source.segments]


@pytest.fixture(scope="module")
def durations(media: HlsMedia) -> List[float]:
    return [s.duration for s in m3u8.load(str(media.root / "live" / "source.m3u8")).segments]


def decode(data) -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(source, format="mpegts") as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


def holding(durations: List[float], offset: float) -> int:
    """Index of the segment holding ``offset`` s of ``durations`` (negative: from the end)."""
    point = sum(durations) + offset if offset < 0 else offset
    elapsed = 0.0
    for index, duration in enumerate(durations):
        elapsed += duration
        if point < elapsed:
            return index
    return len(durations) - 1


# -- #EXT-X-START and live_start on a live window --------------------------------------------

LIVE_STARTS = [
    # (live_start, the server's EXT-X-START, first segment in the first window 0-4 (a function of its durations))
    (None, "TIME-OFFSET=-4.5,PRECISE=YES", lambda d: holding(d, -4.5)),  # a live playlist joins where it says
    ("playlist", "TIME-OFFSET=1.5", lambda d: holding(d, 1.5)),
    ("edge", "TIME-OFFSET=-4.5", lambda d: max(i for i in range(5) if sum(d[i:]) >= 3.0)),  # the caller overrides
    (None, None, lambda d: max(i for i in range(5) if sum(d[i:]) >= 3.0)),  # no EXT-X-START: the edge
    ("start", None, lambda d: 0),  # --hls-live-restart
    (2.5, None, lambda d: holding(d, 2.5)),  # seconds from the start of the window
    (-1.5, None, lambda d: holding(d, -1.5)),  # ... or back from its end
    (99.0, None, lambda d: 4),  # beyond the end: the last segment (RFC 8216 4.4.2.2)
]


@pytest.mark.timeout(40)
@pytest.mark.parametrize("live_start,tag,first", LIVE_STARTS)
def test_live_starts_where_asked(media, local, durations, live_start, tag, first, no_leaks) -> None:
    config = LiveConfig(window=5, period=1.0, publish=7, start=tag)
    with HlsServer(media.root, live=config) as live:
        with kithara_io.open(live.url("live/live.m3u8"), live_start=live_start) as stream:
            assert stream.size is None and not stream.seekable()
            data = stream.read()  # until ENDLIST and the last segment
            sequences = [s.sequence for s in stream.hls.segments]
            info = stream.hls
            offset, precise, skip = info.start_offset, info.start_precise, info.start_skip
        assert live.live.served_windows[0][:2] == (0, 4)  # the window joined
        assert live.live.served_windows[-1][2]
    expected = first(durations[:5])
    assert sequences == list(range(expected, 7))
    assert data == b"".join(local[expected:7])
    declared = None if tag is None else float(tag.split("=")[1].split(",")[0])
    assert offset == declared and precise == (tag is not None and "PRECISE=YES" in tag)
    if precise or isinstance(live_start, float):  # the exact point asked, within the first segment
        asked = declared if precise else live_start
        point = min(max(sum(durations[:5]) + asked if asked < 0 else asked, 0.0), sum(durations[:5]))
        assert skip == pytest.approx(point - sum(durations[:expected]))
    else:
        assert skip == 0.0
    assert np.array_equal(decode(data), decode(b"".join(local[expected:7])))


def test_vod_starts_at_ext_x_start_only_when_asked(media, local, durations, no_leaks) -> None:
    """A VOD playlist plays from its first segment (``start_offset`` tells the tag);
    ``live_start="playlist"`` makes it start at the segment holding the offset."""
    text = (media.root / "live" / "source.m3u8").read_text()
    (media.root / "live" / "vod_start.m3u8").write_text(text.replace("#EXTM3U\n", "#EXTM3U\n#EXT-X-START:TIME-OFFSET=3.5\n", 1))
    first = holding(durations, 3.5)
    with HlsServer(media.root) as server:
        url = server.url("live/vod_start.m3u8")
        with kithara_io.open(url) as stream:
            assert stream.hls.start_offset == 3.5 and not stream.hls.start_precise
            assert stream.hls.segments[0].sequence == 0
            assert stream.read(len(local[0])) == local[0]
        with kithara_io.open(url, live_start="playlist") as stream:
            assert stream.hls.segments[0].sequence == first and stream.hls.start_skip == 0.0
            assert stream.hls.window == (0.0, pytest.approx(sum(durations[first:])))
            assert stream.size == sum(len(b) for b in local[first:])
            data = stream.read()
            stream.seek(0)
            samples = decode(stream)
    assert data == b"".join(local[first:])
    assert np.array_equal(samples, decode(b"".join(local[first:])))


def test_bad_live_start_is_refused() -> None:
    for bad in ("middle", True, float("nan"), [1]):
        with pytest.raises(ValueError, match="live_start"):
            kithara_io.open("http://127.0.0.1:9/x.m3u8", live_start=bad)


def test_ext_x_start_parsed_and_clamped() -> None:
    head = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
    body = "".join(f"#EXTINF:2.0,\ns{i}.ts\n" for i in range(5))  # 10 s
    for tag, start, index, skip in [
        ("#EXT-X-START:TIME-OFFSET=-3,PRECISE=YES\n", (-3.0, True), 3, 1.0),
        ("#EXT-X-START:TIME-OFFSET=4.5\n", (4.5, False), 2, 0.0),  # not precise: the segment's start
        ("#EXT-X-START:TIME-OFFSET=-25,PRECISE=YES\n", (-25.0, True), 0, 0.0),  # before the start: the start
        ("#EXT-X-START:TIME-OFFSET=30,PRECISE=YES\n", (30.0, True), 4, 2.0),  # after the end: the end
        ("", None, 2, 0.0),  # none: the live edge, three target durations (6 s) before the end
    ]:
        playlist = parse_playlist(head + tag + body, "http://h/p.m3u8")
        assert playlist.start == start
        point = choose(playlist, PlaylistKind.LIVE, None)
        assert (point.index, point.skip) == (index, skip), tag
        assert choose(playlist, PlaylistKind.VOD, None).index == 0  # VOD: only when asked
        assert choose(playlist, PlaylistKind.LIVE, "start").index == 0
    master = parse_playlist('#EXTM3U\n#EXT-X-START:TIME-OFFSET=-6\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n', "http://h/m.m3u8")
    assert master.start == (-6.0, False)


# -- seeking within a live window ---------------------------------------------------------------


@pytest.mark.timeout(40)
def test_live_seeks_within_the_window(media, local, durations, no_leaks) -> None:
    """A live stream never says it seeks, but a caller jumps within what its window lists:
    forward to a segment not fetched yet while it runs, back to one still listed after it
    ended; a place that left the window is a clear error."""
    config = LiveConfig(window=4, period=1.0, publish=9)
    with HlsServer(media.root, live=config) as live:
        with kithara_io.open(live.url("live/live.m3u8"), live_start="start") as stream:
            assert not stream.seekable()
            assert stream.read(len(local[0])) == local[0]
            assert stream.hls.window[0] == 0.0  # segment 0 still listed
            third = stream.hls.segments[3]
            assert third.sequence == 3
            target = stream.hls.offset_of(third.start + 0.2)  # sizes of 1-2 learned for it
            assert target == sum(len(b) for b in local[:3])
            assert stream.seek(target) == target and stream.tell() == target
            rest = stream.read()  # to ENDLIST
            assert rest == b"".join(local[3:9])
            assert not stream.seekable()  # constant over the stream's life
            last_window = live.live.served_windows[-1]
            assert last_window == (5, 8, True)
            starts = [s.start for s in stream.hls.segments]
            assert stream.hls.window == (starts[5], pytest.approx(starts[8] + durations[8]))
            # Back to segment 6, still listed by the last window.
            sixth = stream.hls.segments[6]
            assert stream.hls.offset_of(sixth.start) == sum(len(b) for b in local[:6])
            stream.seek(-len(b"".join(local[6:9])), io.SEEK_CUR)
            again = decode(stream)  # PyAV reads the live stream from there, as a pipe
            # Segment 2 left the window: neither its time nor its bytes.
            with pytest.raises(kithara_io.LiveWindowError, match="left the live window") as gone:
                stream.seek(sum(len(b) for b in local[:2]) + 10)
            assert isinstance(gone.value, io.UnsupportedOperation) and gone.value.url == live.url("live/live.m3u8")
            with pytest.raises(kithara_io.LiveWindowError):
                stream.hls.offset_of(stream.hls.segments[2].start + 0.1)
            with pytest.raises(kithara_io.LiveWindowError, match="past"):
                stream.seek(sum(len(b) for b in local[:9]) + 1)
            with pytest.raises(io.UnsupportedOperation):
                stream.seek(0, io.SEEK_END)
            assert stream.tell() == sum(len(b) for b in local[:9])  # failed seeks moved nothing
    assert np.array_equal(again, decode(b"".join(local[6:9])))
    assert np.array_equal(decode(rest), decode(b"".join(local[3:9])))


# -- an EVENT playlist decoded by PyAV while it grows -------------------------------------------


@pytest.mark.timeout(40)
def test_pyav_decodes_an_event_playlist_while_it_grows(media, local, no_leaks) -> None:
    config = LiveConfig(window=3, period=1.0, publish=8, event=True)
    with HlsServer(media.root, live=config) as event:
        with kithara_io.open(event.url("live/live.m3u8")) as stream:
            assert stream.seekable() and stream.size is None  # no end yet
            pipe = stream.hls.pipe()
            assert not pipe.seekable()
            frames, ended_at_first_frame = [], None
            with av.open(pipe, format="mpegts") as container:
                for frame in container.decode(audio=0):
                    if ended_at_first_frame is None:
                        ended_at_first_frame = event.live.served_windows[-1][2]
                    frames.append(frame.to_ndarray())
            pipe.close()
            assert not stream.closed and stream.size == sum(len(b) for b in local[:8])  # ended now
            assert stream.read(len(local[0])) == local[0]  # the stream's own cursor did not move
    assert ended_at_first_frame is False  # decoding began before ENDLIST
    assert np.array_equal(np.concatenate(frames, axis=1), decode(b"".join(local[:8])))
