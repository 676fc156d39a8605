"""HLS from GStreamer (issue #25: real producers beyond FFmpeg): ``hlssink2`` MPEG-TS of AAC
and of MP3, and ``hlscmafsink`` fMP4 where installed. Read through ``kithara_io.open``,
decoded by PyAV; the samples equal PyAV's decode of GStreamer's own segment files joined,
from the start and from a segment found by ``stream.hls.offset_of``. Skipped, with the reason,
only where GStreamer or one of its elements is missing (``make test`` installs them)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Dict, Iterator

import av
import numpy as np
import pytest

import kithara_io
from kithara_io.playback.windows import RestartWindow
from tests.servers.hls import HlsServer
from tests.servers.hls_gstreamer import SECONDS, local_parts, make_gstreamer_media, missing

CASES = [("aac", "mpegts"), ("mp3", "mpegts"), ("fmp4", "mp4")]


@pytest.fixture(scope="session")
def gst_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gst").resolve()


@pytest.fixture(scope="session")
def made(gst_root: Path) -> Dict[str, object]:
    """Each case's playlist, written once per session (or why it cannot be)."""
    return {}


@pytest.fixture(scope="module")
def server(gst_root: Path) -> Iterator[HlsServer]:
    with HlsServer(gst_root) as srv:
        yield srv


def _playlist(made: Dict[str, object], gst_root: Path, case: str) -> Path:
    if case not in made:
        reason = missing(case)
        made[case] = reason if reason is not None else make_gstreamer_media(gst_root, case)
    if isinstance(made[case], str):
        pytest.skip(str(made[case]))
    return made[case]  # type: ignore[return-value]


def _decode(data, fmt: str) -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(source, format=fmt) as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case, fmt", CASES)
def test_gstreamer_hls_decodes_like_its_segment_files(server, made, gst_root, case, fmt, no_leaks) -> None:
    playlist = _playlist(made, gst_root, case)
    local = b"".join(local_parts(playlist))
    with kithara_io.open(server.url(f"gst/{case}/index.m3u8")) as f:
        got = _decode(f, fmt)
        assert f.size == len(local)
        f.seek(0)
        assert f.read() == local
    own = _decode(local, fmt)
    assert own.shape[1] >= (SECONDS - 0.5) * 44100
    assert np.array_equal(got, own)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case, fmt", CASES[:2])
def test_gstreamer_hls_seeks_to_a_segment_by_its_time(server, made, gst_root, case, fmt, no_leaks) -> None:
    playlist = _playlist(made, gst_root, case)
    parts = local_parts(playlist)
    with kithara_io.open(server.url(f"gst/{case}/index.m3u8")) as f:
        starts = list(itertools.accumulate([0.0] + [s.duration for s in f.hls.segments]))
        index = next(i for i, start in enumerate(starts) if start > 2.5) - 1  # the segment holding 2.5 s
        offset = f.hls.offset_of(2.5)
        assert index >= 1 and offset == sum(len(p) for p in parts[:index])
        window = RestartWindow(f, offset, lambda: [])
        got = _decode(window, fmt)
    assert np.array_equal(got, _decode(b"".join(parts[index:]), fmt))
