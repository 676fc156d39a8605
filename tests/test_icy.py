"""The pure ICY code (issue #14): station headers, metadata blocks, and the demuxer fed in
random pieces (hypothesis) against a body built independently by ``tests.servers.icy``."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_io.sources.live.icy import IcyDemuxer, metaint, parse_block, station_metadata
from tests.servers.icy import encode_block, icy_body


def test_parse_block_title_and_url_with_padding():
    block = encode_block({"StreamTitle": "Artist - Song", "StreamUrl": "http://x/y"})
    assert len(block) % 16 == 0 and block.endswith(b"\0")
    assert parse_block(block) == {"title": "Artist - Song", "url": "http://x/y"}


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"StreamTitle='Guns N' Roses - Don't Cry';", {"title": "Guns N' Roses - Don't Cry"}),
        (b"StreamTitle='a;b';StreamUrl='';", {"title": "a;b", "url": ""}),
        (b"StreamTitle='';", {"title": ""}),
        ("StreamTitle='Sigur Rós - Hoppípolla';".encode("utf-8"), {"title": "Sigur Rós - Hoppípolla"}),
        ("StreamTitle='Café';".encode("latin-1"), {"title": "Café"}),  # not UTF-8: Latin-1
        (b"StreamTitle='x';adw_ad='true';", {"title": "x", "adw_ad": "true"}),
        (b"\0" * 32, {}),
        (b"garbage without fields", {}),
    ],
)
def test_parse_block_cases(raw: bytes, expected: Dict[str, str]):
    assert parse_block(raw) == expected


def test_station_metadata_from_headers():
    headers = {
        "Content-Type": "audio/mpeg",
        "icy-name": "Test FM",
        "ICY-GENRE": "Jazz",
        "icy-description": "All jazz, all day",
        "icy-br": "128, 128",
        "icy-url": "http://station.example",
        "icy-pub": "1",
    }
    assert station_metadata(headers) == {
        "name": "Test FM",
        "genre": "Jazz",
        "description": "All jazz, all day",
        "bitrate": 128,
        "station_url": "http://station.example",
    }
    assert station_metadata({"icy-br": "", "icy-name": " "}) == {}


def test_metaint_header():
    assert metaint({"icy-metaint": "16000"}) == 16000
    assert metaint({"Icy-MetaInt": " 8192 "}) == 8192
    assert metaint({"icy-metaint": "0"}) is None
    assert metaint({"icy-metaint": "x"}) is None
    assert metaint({}) is None


def _demux(body: bytes, interval: int, sizes: List[int]) -> Tuple[bytes, List[Tuple[int, Dict[str, str]]]]:
    demuxer = IcyDemuxer(interval)
    audio = bytearray()
    changes: List[Tuple[int, Dict[str, str]]] = []
    pos = 0
    for size in sizes:
        piece, found = demuxer.feed(body[pos : pos + size])
        audio += piece
        changes += found
        pos += size
    piece, found = demuxer.feed(body[pos:])
    audio += piece
    changes += found
    assert demuxer.audio_bytes == len(audio)
    return bytes(audio), changes


def test_demuxer_one_piece_and_no_change_blocks():
    audio = bytes(range(256)) * 40  # 10240 bytes
    titles: List[Optional[str]] = ["one", None, "one", "two", None]
    body = icy_body(audio, 2048, titles)
    out, changes = _demux(body, 2048, [])
    assert out == audio
    # Block 3 repeats "one": no change. None blocks are L = 0.
    assert changes == [(2048, {"title": "one"}), (4 * 2048, {"title": "two"})]


def test_demuxer_rejects_bad_interval():
    with pytest.raises(ValueError):
        IcyDemuxer(0)


@st.composite
def _bodies(draw):
    interval = draw(st.integers(1, 300))
    length = draw(st.integers(0, 3000))
    audio = draw(st.binary(min_size=length, max_size=length))
    blocks = length // interval
    titles = draw(
        st.lists(
            st.one_of(st.none(), st.text(alphabet="abc' ;-é", max_size=40)),
            min_size=blocks,
            max_size=blocks,
        )
    )
    body = icy_body(audio, interval, titles)
    sizes = draw(st.lists(st.integers(1, 700), max_size=40))
    return interval, audio, titles, body, sizes


@settings(max_examples=150, deadline=None)
@given(_bodies())
def test_demuxer_any_piece_sizes(case):
    interval, audio, titles, body, sizes = case
    out, changes = _demux(body, interval, sizes)
    assert out == audio
    expected = []
    last = None
    for k, title in enumerate(titles, start=1):
        if title is not None and title != last:
            expected.append((k * interval, {"title": title}))
            last = title
    assert changes == expected
