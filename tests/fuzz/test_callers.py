"""The fuzzed parsers through their callers: ``kithara_io.open()`` against a local
FaultServer answering with hostile header values, malformed HLS playlists and station
playlists. ``open()`` (and a first read) may only return the right bytes or raise a
``StreamError`` subclass: a ``ValueError`` from ``int()``, ``bytes.fromhex`` or ``urljoin``
is a bug. The regression rows are plain tests; the hypothesis ones draw fewer examples than
the pure targets (each is a few requests). Modes: see ``harness.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest
from hypothesis import given

import kithara_io
from kithara_io.errors import HTTPStatusError, InvalidResponseError, StreamError
from kithara_io.retry import Retry, Timeout
from kithara_io.sources.hls.live import MIN_RELOAD
from kithara_io.sources.hls.transport import MAX_PLAYLIST_BYTES, MAX_SMALL_BYTES
from tests.servers.faults import BadContentRange, FaultServer, Header, NoContentLength, Status, running_fault_server

from .harness import NETWORK, TIMEOUT, corpus, mutated
from .strategies import HEADER_TEXT, HLS_TOKENS

pytestmark = TIMEOUT

FAST = dict(
    retry=Retry(attempts=2, backoff=0.01, max_backoff=0.05),
    timeout=Timeout(connect=2, read=3, open=10),
)
DATA = bytes(range(256)) * 64  # 16 KiB
HLS_TYPE = "application/vnd.apple.mpegurl"


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    """One server for the module (hypothesis runs many examples in one test); it fails the
    module's last test if it hit an error itself."""
    with running_fault_server() as srv:
        yield srv


def read_all_or_error(url: str, **options) -> object:
    """What a user gets: all the bytes, or the StreamError that ``open``/``read`` raised."""
    try:
        with kithara_io.open(url, **{**FAST, **options}) as stream:
            return stream.read()
    except StreamError as exc:
        return exc


# -- the row: a malformed IV= gives InvalidResponseError from open() ---------------------------

BAD_PLAYLISTS = {
    "iv-not-hex": '#EXT-X-KEY:METHOD=AES-128,URI="k.bin",IV=0xZZ',
    "iv-over-128-bits": '#EXT-X-KEY:METHOD=AES-128,URI="k.bin",IV=0x' + "00" * 17,
    "iv-spaces": '#EXT-X-KEY:METHOD=AES-128,URI="k.bin",IV=0x00 11',
    "byterange-not-a-number": "#EXT-X-BYTERANGE:x@y",
    "byterange-negative": "#EXT-X-BYTERANGE:-5@3",
    "byterange-superscript": "#EXT-X-BYTERANGE:\u00b2",
    "media-sequence-negative": "#EXT-X-MEDIA-SEQUENCE:-3",
    "duration-nan": "#EXT-X-TARGETDURATION:nan",
    "duration-past-timeouts": "#EXT-X-TARGETDURATION:99999999999",  # threading's wait() overflowed
}


@pytest.mark.parametrize("name", sorted(BAD_PLAYLISTS))
def test_malformed_hls_attribute_is_an_invalid_response(server: FaultServer, name: str, no_leaks) -> None:
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n{BAD_PLAYLISTS[name]}\n#EXTINF:4.0,\nseg0.ts\n#EXT-X-ENDLIST\n"
    url = server.add(f"/bad/{name}.m3u8", text.encode(), content_type=HLS_TYPE)
    with pytest.raises(InvalidResponseError) as caught:
        kithara_io.open(url, **FAST)
    assert url in str(caught.value)


def test_malformed_iv_behind_a_url_without_m3u8_is_an_invalid_response(server: FaultServer, no_leaks) -> None:
    """The same playlist found by sniffing the first bytes (``hls_entry.sniff``)."""
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n{BAD_PLAYLISTS['iv-not-hex']}\n#EXTINF:4.0,\nseg0.ts\n#EXT-X-ENDLIST\n"
    url = server.add("/bad/playlist", text.encode(), content_type="application/octet-stream")
    with pytest.raises(InvalidResponseError, match="IV"):
        kithara_io.open(url, **FAST)


def test_malformed_segment_uri_is_an_invalid_response(server: FaultServer, no_leaks) -> None:
    url = server.add("/bad/uri.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nhttp://[::1/a.ts\n#EXT-X-ENDLIST\n", content_type=HLS_TYPE)
    with pytest.raises(InvalidResponseError, match="malformed URI"):
        kithara_io.open(url, **FAST)


HLS_SEEDS = [data for name, data in corpus("hls").items() if name.startswith(("ffmpeg", "master"))]  # relative URIs only


@TIMEOUT
@NETWORK
@given(data=mutated(HLS_SEEDS, [t for t in HLS_TOKENS if b"http" not in t]))
def test_open_mutated_hls(server: FaultServer, data: bytes) -> None:
    url = server.add("/fuzz/index.m3u8", data, content_type=HLS_TYPE)
    try:
        with kithara_io.open(url, **FAST) as stream:
            stream.read(4096)  # its segments are missing: a StreamError, or nothing
    except StreamError:
        pass


# -- header values: Content-Length, Content-Range, Retry-After, icy-metaint --------------------

HOSTILE = ["\u00b2", "\u00b9\u00b2\u00b3", "9" * 5000, "-1", "+16384", " 16384 ", "1e4", "0x4000"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_content_length(server: FaultServer, value: str, no_leaks) -> None:
    url = server.add("/cl.bin", DATA)
    server.always("/cl.bin", [NoContentLength(), Header("Content-Length", value)])
    got = read_all_or_error(url)
    assert got == DATA or (value == "9" * 5000 and isinstance(got, InvalidResponseError)), got


@pytest.mark.parametrize("value", [f"bytes 0-16383/{v}" for v in HOSTILE] + ["bytes \u00b2-\u00b3/16384", "bytes 0-65535/14999"])
def test_hostile_content_range(server: FaultServer, value: str, no_leaks) -> None:
    url = server.add("/cr.bin", DATA)
    server.always("/cr.bin", BadContentRange(value))
    got = read_all_or_error(url)
    assert got == DATA or isinstance(got, InvalidResponseError), got


@pytest.mark.parametrize("value", HOSTILE + ["Mon, 01 Jan 99999 00:00:00 GMT"])
def test_hostile_retry_after(server: FaultServer, value: str, no_leaks) -> None:
    """``Retry-After: ²`` once raised ValueError out of the 503's handling."""
    url = server.add("/ra.bin", DATA)
    server.script("/ra.bin", [Status(503, retry_after=value)])
    assert read_all_or_error(url) == DATA  # waited (at most max_backoff), then served


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_icy_metaint(server: FaultServer, value: str, no_leaks) -> None:
    """A body without a length is a live stream; a metaint it cannot read means no titles."""
    url = server.add("/radio", DATA, content_type="audio/mpeg")
    server.always("/radio", [NoContentLength(), Header("icy-metaint", value), Header("icy-name", "x")])
    got = read_all_or_error(url)
    assert got == DATA or isinstance(got, StreamError)


def _sendable(value: str) -> bool:
    """What a server can put on a header line: Latin-1, no line break."""
    return "\r" not in value and "\n" not in value and all(ord(c) < 256 for c in value)


SAFE_HEADER_TEXT = HEADER_TEXT.filter(_sendable)


@TIMEOUT
@NETWORK
@given(length=SAFE_HEADER_TEXT, content_range=SAFE_HEADER_TEXT, retry_after=SAFE_HEADER_TEXT)
def test_open_with_fuzzed_headers(server: FaultServer, length: str, content_range: str, retry_after: str) -> None:
    server.add("/h.bin", DATA)
    server.script("/h.bin", [Status(503, retry_after=retry_after)])
    server.always("/h.bin", [NoContentLength(), Header("Content-Length", length)])
    got = read_all_or_error(server.url("/h.bin"))
    assert got == DATA or isinstance(got, StreamError)
    server.clear_faults("/h.bin")
    server.always("/h.bin", BadContentRange(content_range))
    got = read_all_or_error(server.url("/h.bin"))
    assert got == DATA or isinstance(got, StreamError)
    server.clear_faults("/h.bin")


# -- station playlists -------------------------------------------------------------------------


def test_station_playlist_of_unusable_entries_is_an_invalid_response(server: FaultServer, no_leaks) -> None:
    """Entries that ``open`` refuses with ValueError (a port out of range, no host) were tried
    as streams: the ValueError escaped ``open()`` of the playlist."""
    url = server.add("/bad.pls", b"[playlist]\nFile1=http://h:99999/\nFile2=file:///etc/passwd\n", content_type="audio/x-scpls")
    with pytest.raises(InvalidResponseError, match="names no http"):
        kithara_io.open(url, **FAST)


def test_station_playlist_skips_malformed_entries(server: FaultServer, no_leaks) -> None:
    stream_url = server.add("/stream.bin", DATA)
    text = f"#EXTM3U\nhttp://[bad/\nhttp://h:0/x\n{stream_url}\n"
    url = server.add("/list.m3u", text.encode(), content_type="audio/x-mpegurl")
    assert read_all_or_error(url) == DATA


# The corpus names example hosts: here they are a closed local port (refused at once).
STATION_SEEDS = [d.replace(b"https://", b"http://").replace(b"http://", b"http://127.0.0.1:1/") for d in corpus("stations").values()]


@TIMEOUT
@NETWORK
@given(data=mutated(STATION_SEEDS, [b"http://[", b"http://h:99999/", b"file:///x", b"\n", b"File1=", b"[playlist]\n"]))
def test_open_mutated_station_playlist(server: FaultServer, data: bytes) -> None:
    """The stream behind the last entry, the playlist itself (not one, or nested too deep),
    or a StreamError: the entries before it are refused, missing or malformed."""
    stream_url = server.add("/s.bin", DATA)
    served = data + b"\n" + stream_url.encode() + b"\n"
    url = server.add("/fuzz.m3u", served, content_type="audio/x-mpegurl")
    got = read_all_or_error(url, retry=Retry(attempts=1))
    assert got in (DATA, served) or isinstance(got, StreamError)


def test_hostile_status_is_a_stream_error_not_a_parse_error(server: FaultServer, no_leaks) -> None:
    url = server.add("/st.bin", DATA)
    server.always("/st.bin", Status(404, retry_after="\u00b2"))
    assert isinstance(read_all_or_error(url), HTTPStatusError)


# -- sizes: what a parser is fed stays bounded ------------------------------------------------


def test_oversized_hls_playlist_is_refused(server: FaultServer, no_leaks) -> None:
    """A playlist is read up to MAX_PLAYLIST_BYTES, not into memory whole (it was)."""
    line = b"#EXTINF:4.0,\nseg.ts\n"
    data = b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n" + line * (MAX_PLAYLIST_BYTES // len(line) + 1)
    url = server.add("/huge.m3u8", data, content_type=HLS_TYPE)
    with pytest.raises(InvalidResponseError, match="longer than"):
        kithara_io.open(url, **FAST)


def test_oversized_hls_key_is_refused(server: FaultServer, no_leaks) -> None:
    server.add("/k/key.bin", bytes(MAX_SMALL_BYTES + 1))
    server.add("/k/seg0.ts", bytes(32))
    text = b'#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI="key.bin"\n#EXTINF:4,\nseg0.ts\n#EXT-X-ENDLIST\n'
    url = server.add("/k/index.m3u8", text, content_type=HLS_TYPE)
    with pytest.raises(InvalidResponseError, match="longer than"):
        with kithara_io.open(url, **FAST) as stream:
            stream.read()


def test_zero_target_duration_does_not_reload_in_a_loop(server: FaultServer, no_leaks) -> None:
    """A live playlist of 0 s segments parses (durations >= 0 are valid values); its reload
    period was 0: the watcher asked for it in a busy loop. Now at most every MIN_RELOAD."""
    server.add("/z/seg0.ts", bytes(188))
    text = b"#EXTM3U\n#EXT-X-TARGETDURATION:0\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:0,\nseg0.ts\n"
    url = server.add("/z/live.m3u8", text, content_type=HLS_TYPE)
    with kithara_io.open(url, **FAST):
        first = server.count("/z/live.m3u8")
        started = time.monotonic()
        threading.Event().wait(4 * MIN_RELOAD)  # a window to count reloads in, not a sync
        reloads = server.count("/z/live.m3u8") - first
        elapsed = time.monotonic() - started
    assert reloads <= elapsed / MIN_RELOAD + 1, (reloads, elapsed)
