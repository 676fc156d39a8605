"""Station playlists (.pls / .m3u, issue #14): the pure parser and the resolution order."""

from __future__ import annotations

import pytest

from kithara_io import ConnectionFailedError, StreamError
from kithara_io.sources.stations import parse_playlist, playlist_kind, resolve

BASE = "http://dir.example/stations/jazz.pls"


def test_pls_entries_in_number_order_relative_resolved():
    text = (
        "\ufeff[playlist]\r\nNumberOfEntries=3\r\nFile2=http://b.example:8000/live\r\nTitle2=B\r\n"
        "file1 = http://a.example/stream\r\nLength1=-1\r\nFILE3=mirror/3\r\nVersion=2\r\n"
    )
    assert parse_playlist(text, BASE) == [
        "http://a.example/stream",
        "http://b.example:8000/live",
        "http://dir.example/stations/mirror/3",
    ]


def test_m3u_plain_and_extended():
    text = "#EXTM3U\n#EXTINF:-1,Jazz FM\nhttp://a.example/jazz.mp3\n\n  # comment\nrelative.aac\n"
    assert parse_playlist(text, "http://dir.example/x/list.m3u") == [
        "http://a.example/jazz.mp3",
        "http://dir.example/x/relative.aac",
    ]


def test_hls_and_empty_are_not_station_playlists():
    hls = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.ts\n"
    assert parse_playlist(hls, BASE) is None
    assert parse_playlist("#EXTM3U\n", BASE) is None
    assert parse_playlist("[playlist]\nNumberOfEntries=0\n", BASE) is None


@pytest.mark.parametrize(
    "url, ctype, kind",
    [
        ("http://h/x", "audio/x-scpls", "pls"),
        ("http://h/x", "audio/x-mpegurl; charset=utf-8", "m3u"),
        ("http://h/listen.pls", "text/plain", "pls"),
        ("http://h/listen.m3u?sid=1", None, "m3u"),
        ("http://h/live.mp3", "audio/mpeg", None),
        ("http://h/index.m3u8", "application/vnd.apple.mpegurl", None),
        ("http://h/listen.pls", "audio/mpeg", None),  # the server says it is audio
    ],
)
def test_playlist_kind(url, ctype, kind):
    assert playlist_kind(url, ctype) == kind


def test_resolve_first_that_answers():
    tried = []

    def open_entry(url: str) -> str:
        tried.append(url)
        if url != "http://c":
            raise ConnectionFailedError("refused", url=url)
        return "stream:" + url

    assert resolve(BASE, ["http://a", "http://b", "http://c", "http://d"], open_entry) == "stream:http://c"
    assert tried == ["http://a", "http://b", "http://c"]


def test_resolve_all_fail_names_the_playlist():
    def open_entry(url: str) -> str:
        raise ConnectionFailedError("refused", url=url)

    with pytest.raises(StreamError) as info:
        resolve(BASE, ["http://a", "http://b"], open_entry)
    assert BASE in str(info.value) and "http://b" in str(info.value)
    assert isinstance(info.value.cause, ConnectionFailedError)
