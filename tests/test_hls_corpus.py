"""Playlists as the world writes them (issue #25; ``tests/hls_corpus/``, see its README):
each opens through ``kithara_io.open`` and reads what exists, or fails with the StreamError
subclass its fault calls for; never another exception, never a hang (each case is bounded)."""

from __future__ import annotations

import shutil
import threading
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Type, Union

import av
import numpy as np
import pytest

import kithara_io
from kithara_io.errors import ConnectionFailedError, HTTPStatusError, InvalidResponseError, StreamError
from kithara_io.retry import Retry, Timeout
from tests.servers.hls import HlsServer

CORPUS = Path(__file__).parent / "hls_corpus"


class Live(list):
    """A live or EVENT playlist that does not grow: these files' bytes are read, then the
    read waits for a reload that brings more (it is interrupted)."""


Expected = Union[List[str], Type[StreamError]]

# name -> what must happen: the files whose bytes the stream is (Live: then it waits), or the error.
EXPECTED: Dict[str, Expected] = {
    "simple": ["ok.ts", "ok2.ts"],
    "live_window": Live(["ok.ts", "ok2.ts"]),  # 2 s listed: three target durations from the edge
    "titles": ["ok.ts", "ok2.ts"],
    "bom_crlf": ["ok.ts", "ok2.ts"],
    "unknown_tags": ["ok.ts"],
    "date_range_cue": ["ok.ts", "ok2.ts"],
    "discontinuity": ["ok.ts", "ok2.ts"],
    "byterange": ["ok.ts[:3008]"],
    "iframes_only": ["ok.ts[0:376]", "ok.ts[752:1128]"],
    "key_missing": HTTPStatusError,
    "key_sample_aes": StreamError,
    "key_none_then_aes": HTTPStatusError,
    "key_bad_iv": InvalidResponseError,
    "key_without_uri": InvalidResponseError,
    "map_missing": HTTPStatusError,
    "segment_missing": HTTPStatusError,
    "segment_other_host": ConnectionFailedError,
    "gap": HTTPStatusError,
    "master": ["ok.ts", "ok2.ts"],
    "master_full": ["ok.ts", "ok2.ts"],
    "master_audio_groups": ["ok.ts", "ok2.ts"],
    "master_variant_missing": HTTPStatusError,
    "master_no_bandwidth": InvalidResponseError,  # BANDWIDTH is REQUIRED
    "master_iframes_only": InvalidResponseError,
    "master_of_masters": InvalidResponseError,
    "master_bad_bandwidth": InvalidResponseError,
    "low_latency": Live(["ok.ts"]),  # its one full segment; parts are not read
    "negative_sequence": InvalidResponseError,
    "huge_sequence": ["ok.ts"],
    "no_target_duration": ["ok.ts"],
    "empty": InvalidResponseError,
    "html": InvalidResponseError,
    "header_only": Live([]),
    "endlist_only": InvalidResponseError,
    "bad_extinf": InvalidResponseError,
    "bad_byterange": InvalidResponseError,
    "byterange_past_end": StreamError,
    "negative_duration": ["ok.ts"],
    "version_99": ["ok.ts", "ok.ts"],
    "event": Live(["ok.ts"]),
    "vod_without_endlist": Live(["ok.ts"]),
    "plain_m3u": ConnectionFailedError,  # no ENDLIST: live, from its one (unreachable) entry
    "iptv_attributes": InvalidResponseError,
    "iptv_custom_tags": InvalidResponseError,
    "key_none_empty_uri": ["ok.ts"],
    "master_float_bandwidth_spaces": ["ok.ts", "ok2.ts"],
    "byterange_before_extinf": ["ok.ts[0:3008]"],
    "extinf_without_comma": ["ok.ts", "ok2.ts"],
    "junk_line": ["ok.ts"],  # m3u8 leaves out a line after a segment URI that is no tag
    "parts_only": Live([]),
    "map_without_segments": Live([]),
    "slash_in_query_trailing_extinf": ["ok.ts", "ok2.ts"],  # an EXTINF duration that is not a number
    "latin1_binary": ["ok.ts"],  # bytes that are not UTF-8 replaced; the control-byte line is no URI
}
LIVE_BOUND = 15.0  # seconds a Live case may take to read what is listed


def test_every_corpus_playlist_has_an_expectation() -> None:
    assert sorted(p.stem for p in CORPUS.glob("*.m3u8")) == sorted(EXPECTED)


def _ts(path: Path, freq: float) -> None:
    """One second of AAC in MPEG-TS."""
    rate = 44100
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        t = np.arange(rate) / rate
        pcm = np.stack([np.sin(2 * np.pi * freq * t)] * 2).astype(np.float32) * 0.5
        for start in range(0, rate, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start : start + 1024]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus").resolve()
    shutil.copytree(CORPUS, folder / "corpus")
    _ts(folder / "corpus" / "ok.ts", 440.0)
    _ts(folder / "corpus" / "ok2.ts", 660.0)
    return folder


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[HlsServer]:
    with HlsServer(root) as srv:
        yield srv


def _expected_bytes(root: Path, files: List[str]) -> bytes:
    out = bytearray()
    for spec in files:
        name, _, cut = spec.partition("[")
        data = (root / "corpus" / name).read_bytes()
        if cut:
            start, _, end = cut.rstrip("]").partition(":")
            data = data[int(start or 0) : int(end)]
        out += data
    return bytes(out)


def _read_live(f, want: int) -> Tuple[bytes, Optional[BaseException]]:
    """Read what a live stream lists (``want`` bytes), then interrupt the read that waits
    for more; bounded by LIVE_BOUND."""
    got = bytearray()
    outcome: List[BaseException] = []
    enough, done = threading.Event(), threading.Event()

    def reader() -> None:
        try:
            while True:
                if len(got) >= want:
                    enough.set()
                chunk = f.read(188)  # a read waits until it is full: one TS packet at a time
                if not chunk:
                    return
                got.extend(chunk)
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)
        finally:
            done.set()
            enough.set()

    thread = threading.Thread(target=reader, name="corpus-live-reader")
    thread.start()
    enough.wait(LIVE_BOUND)
    f.interrupt()  # the read waiting for a reload raises InterruptedError
    thread.join(LIVE_BOUND)
    assert not thread.is_alive(), "a live read did not stop after interrupt()"
    return bytes(got), (outcome[0] if outcome else None)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_playlist_opens_or_fails_with_a_stream_error(server, root, name, no_leaks) -> None:
    expected = EXPECTED[name]
    options = dict(timeout=Timeout(connect=2.0, read=5.0, open=10.0), retry=Retry(attempts=2, backoff=0.01, max_backoff=0.05))
    url = server.url(f"corpus/{name}.m3u8")
    try:
        with kithara_io.open(url, **options) as f:
            if isinstance(expected, Live):
                data, error = _read_live(f, len(_expected_bytes(root, expected)))
                assert isinstance(error, InterruptedError), repr(error)
                assert data == _expected_bytes(root, expected)
                return
            data = f.read()
    except StreamError as exc:
        assert isinstance(expected, type), f"{name}: {exc!r}"
        assert isinstance(exc, expected), f"{name}: {exc!r} is not a {expected.__name__}"
        assert exc.url and str(exc)
        return
    assert isinstance(expected, list), f"{name}: opened and read {len(data)} bytes, expected {expected}"
    assert data == _expected_bytes(root, expected)
