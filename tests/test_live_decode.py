"""PyAV decodes live MP3, AAC (ADTS) and Ogg Vorbis stations through a kithara-io stream,
sample for sample equal to the station's source from the join point on; the real Icecast 2
server with titles set through its admin URL (issue #14)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import kithara_io
from kithara_io.events import MetadataChanged
from tests.live_media import adts_payload, decode, find_join, mp3_payload, ogg_payload
from tests.servers.icecast import IcecastServer, find_icecast
from tests.servers.icy import IcyServer, Station

SECONDS = 12.0
LISTEN = 3 * 44100  # samples decoded from each station


@pytest.fixture(scope="module")
def icy_server():
    with IcyServer() as server:
        yield server


def _stations():
    header, pages, joins = ogg_payload(SECONDS)
    return {
        "mp3": (Station(payload=mp3_payload(SECONDS), content_type="audio/mpeg"), "mp3", b""),
        "aac": (Station(payload=adts_payload(SECONDS), content_type="audio/aac", icy_headers={"icy-br": "128"}), "aac", b""),
        # Ogg stations carry titles in Vorbis comments, not ICY blocks; a listener gets the
        # header pages, then pages from the live position on.
        "ogg": (Station(payload=pages, header=header, join_points=joins, metaint=None, content_type="audio/ogg"), "ogg", header),
    }


STATIONS = _stations()


def assert_equal_from_join(live: np.ndarray, reference: np.ndarray, frame: int) -> int:
    """``live`` matches ``reference`` exactly from two frames after the join (a decoder
    resyncs there: bit reservoir, overlap-add) to its end; returns the matched length."""
    skip = 2 * frame
    start = find_join(live, reference, skip)
    tail = live[skip:]
    n = min(len(tail), len(reference) - start)
    assert n >= LISTEN - 4 * frame
    np.testing.assert_array_equal(tail[:n], reference[start : start + n])
    return n


@pytest.mark.parametrize("kind", ["mp3", "aac", "ogg"])
def test_pyav_decodes_a_live_station_exactly(icy_server, kind, no_leaks):
    station, fmt, header = STATIONS[kind]
    station.rate = len(station.payload) / SECONDS * 4  # four times real time: a short test
    station.burst = 16 * 1024
    station.clock_start = len(station.payload) // 5  # join in the middle: not at a frame start
    url = icy_server.add(f"/decode.{kind}", station)
    with kithara_io.open(url) as f:
        assert f.size is None and not f.seekable()
        live = decode(f, fmt, limit=LISTEN)
    reference = decode(header + station.payload, fmt)
    frame = {"mp3": 1152, "aac": 1024, "ogg": 2048}[kind]
    assert_equal_from_join(live, reference, frame)


needs_icecast = pytest.mark.skipif(
    find_icecast() is None, reason="icecast2 is not installed (`make test` as root installs it)"
)


@needs_icecast
@pytest.mark.timeout(60)
def test_real_icecast_titles_and_exact_audio(no_leaks):
    payload = STATIONS["mp3"][0].payload
    rate = len(payload) / SECONDS  # real time, as a source client sends
    titles = []
    got_title = threading.Condition()

    def on_event(event) -> None:
        if isinstance(event, MetadataChanged):
            with got_title:
                titles.append(event)
                got_title.notify_all()

    def wait_title(title: str) -> MetadataChanged:
        with got_title:
            assert got_title.wait_for(lambda: any(e.metadata.get("title") == title for e in titles), timeout=10)
            return next(e for e in titles if e.metadata.get("title") == title)

    with IcecastServer() as icecast:
        icecast.start_source("/live.mp3", payload, rate)
        icecast.set_title("/live.mp3", "Artist - First Song")
        started = time.monotonic()
        with kithara_io.open(icecast.url("/live.mp3"), on_event=on_event) as f:
            opened = time.monotonic() - started
            assert opened < 2.0 and f.size is None and not f.seekable()
            assert f.metadata["name"] == "Kithara Icecast" and f.metadata["genre"] == "Test"
            first = wait_title("Artist - First Song")
            icecast.set_title("/live.mp3", "Artist - Second Song")
            live = decode(f, "mp3", limit=int(1.5 * 44100))
            second = wait_title("Artist - Second Song")
            assert first.position < second.position and second.position % 16000 == 0
            while f.tell() < second.position:  # the title shows once the reader is there
                assert f.metadata["title"] == "Artist - First Song"
                assert f.read(min(4096, second.position - f.tell()))
            assert f.metadata["title"] == "Artist - Second Song"
    reference = decode(payload * 2, "mp3")  # the source loops: a join may be in either copy
    skip = 2 * 1152
    start = find_join(live, reference, skip)
    n = len(live) - skip
    np.testing.assert_array_equal(live[skip:], reference[start : start + n])
