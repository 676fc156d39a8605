"""Station playlists (.pls / .m3u, issue #14): the pure parser and the resolution order."""

from __future__ import annotations

import pytest

from kithara_io import ConnectionFailedError, StreamError
from kithara_io.api import playlist_entries
from kithara_io.sources.live.stations import kind_by_name, parse_playlist, playlist_kind, resolve

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


# -- playlists of tracks (kithara-io play list.m3u, issue 27) --------------------------------


def test_kind_by_name():
    assert kind_by_name("/music/list.M3U") == "m3u" and kind_by_name("list.m3u8") == "m3u"
    assert kind_by_name("http://h/x/radio.pls?sid=1") == "pls"
    assert kind_by_name("http://h/list.m3u/stream.mp3") is None and kind_by_name("song.mp3") is None


def test_playlist_entries_of_local_files(tmp_path):
    (tmp_path / "list.m3u").write_text("#EXTM3U\n#EXTINF:3,One\none.wav\nsub dir/two.flac\n/abs/three.mp3\nhttp://h/4.mp3\n")
    assert playlist_entries(tmp_path / "list.m3u") == [
        str(tmp_path / "one.wav"), str(tmp_path / "sub dir/two.flac"), "/abs/three.mp3", "http://h/4.mp3",
    ]  # fmt: skip
    (tmp_path / "list.pls").write_text("[playlist]\nFile2=b.ogg\nFile1=a.ogg\n")
    assert playlist_entries(str(tmp_path / "list.pls")) == [str(tmp_path / "a.ogg"), str(tmp_path / "b.ogg")]
    (tmp_path / "live.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.ts\n")
    assert playlist_entries(tmp_path / "live.m3u8") is None  # HLS: played as one stream
    assert playlist_entries(tmp_path / "one.wav") is None  # not named like a playlist: not read
    with pytest.raises(StreamError):
        playlist_entries(tmp_path / "missing.m3u")


def test_playlist_entries_of_a_remote_m3u8_without_hls_tags_and_a_pls(tmp_path, no_leaks):
    from tests.servers.ranged import RangedServer

    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXTINF:1,a\na.mp3\nhttp://other.example/b.mp3\n")
    (tmp_path / "list.pls").write_text("[playlist]\nFile1=x/c.ogg\n")
    with RangedServer(tmp_path) as server:
        assert playlist_entries(server.url("list.m3u8")) == [server.url("a.mp3"), "http://other.example/b.mp3"]
        assert playlist_entries(server.url("list.pls")) == [server.url("x/c.ogg")]


def test_a_remote_playlist_never_names_local_files_a_local_one_may() -> None:
    text = "file:///etc/passwd\n/etc/hosts\nhttp://h/a.mp3\n"  # a path: on that server
    assert parse_playlist(text, "http://host/list.m3u") == ["http://host/etc/hosts", "http://h/a.mp3"]
    local = "a.wav\nfile:///x/b.wav\nhttp://h/c.mp3\n"
    assert parse_playlist(local, "/tmp/l/list.m3u") == ["/tmp/l/a.wav", "file:///x/b.wav", "http://h/c.mp3"]
