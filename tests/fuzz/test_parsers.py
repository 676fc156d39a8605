"""Fuzzing every parser of what a server or a disk hands us (issue 23), with hypothesis.

Targets: ``Content-Length``/``Content-Range``/``Retry-After`` values (``kithara_io.headers``),
``icy-*`` headers, ICY metadata blocks and the demuxer (``sources/live/icy.py``), the head of an
``ICY 200 OK`` answer (``sources/shoutcast.py``), ``.pls``/``.m3u`` station playlists
(``sources/stations.py``), HLS playlists and their attributes (``sources/hls/playlist.py``
over ``m3u8``, and what consumes its output: IVs, live start, kinds), the disk index and its
checksum (``disk/index.py``). Inputs are random bytes, structured strategies, and mutations
of the real inputs in ``tests/fuzz/corpus/<target>/`` (origins in its README).

Allowed outcomes, per call: a parsed value that meets the target's invariants, or the error
the parser documents (a ``StreamError`` subclass; ``CorruptIndex``, a ``ValueError``, for the
index); never another exception, never more than ``CALL_CPU`` seconds of CPU, and outputs
bounded by the input's size. Fixed bugs stay as ``@example``s.

Short run (``make test``): ``CI_EXAMPLES`` examples per target. Long run, by hand:
``KITHARA_FUZZ=long .venv/bin/python -m pytest tests/fuzz -q`` (see ``harness.py``).
Coverage-guided, by hand: ``python -m tests.fuzz.run_atheris TARGET`` (see its docstring).
"""

from __future__ import annotations

import hashlib
import io
import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kithara_io import headers
from kithara_io.api import _check_http_url
from kithara_io.disk.index import MAX_INDEX_BYTES, CorruptIndex, Index, decode, encode, read_index
from kithara_io.errors import InvalidResponseError, StreamError
from kithara_io.sources.base import Validators
from kithara_io.sources.hls.keys import check_supported, segment_iv
from kithara_io.sources.hls.kind import PlaylistKind
from kithara_io.sources.hls.playlist import (
    MAX_OFFSET,
    MAX_SECONDS,
    MAX_SEQUENCE,
    MasterPlaylist,
    MediaPlaylist,
    live_start,
    looks_like_playlist,
    parse_playlist,
)
from kithara_io.sources.live.icy import IcyDemuxer, metaint, parse_block, station_metadata
from kithara_io.sources.live.shoutcast import parse_head
from kithara_io.sources.live.stations import MAX_PLAYLIST_BYTES, read_playlist

from .harness import FUZZ, TIMEOUT, corpus, mutated, outcome
from .strategies import HEADER_TEXT, HLS_TOKENS, NUMBERS

pytestmark = TIMEOUT

# -- Content-Length, Content-Range, Retry-After ---------------------------------------------


@FUZZ
@given(value=HEADER_TEXT)
@example(value="\xb2")  # "²".isdigit() is True, int("²") a ValueError: once out of _content_length
@example(value="9" * 5000)  # more digits than int() reads: once a ValueError
@example(value="\u0663")
def test_content_length(value: str) -> None:
    length, _ = outcome(lambda: headers.content_length(value), ())
    assert length is None or (type(length) is int and 0 <= length <= headers.HUGE)
    if length is not None:
        assert value.strip(" \t\r\n").isascii()


@FUZZ
@given(value=st.one_of(st.none(), HEADER_TEXT))
@example(value=None)
@example(value=" \t")
@example(value=" GZip ")
def test_content_coding(value) -> None:
    coding, _ = outcome(lambda: headers.content_coding(value), ())
    assert coding == coding.strip().lower() and coding
    assert (coding == "identity") == ((value or "").strip().lower() in ("", "identity"))


@FUZZ
@given(value=HEADER_TEXT)
@example(value="bytes \xb2-\xb3/\xb9")  # Latin-1 superscripts matched \d: int() refused them
@example(value="bytes 0-1/" + "9" * 5000)  # too long for int(): once a ValueError out of open()
@example(value="bytes 0-65535/14999")
def test_content_range(value: str) -> None:
    parsed, _ = outcome(lambda: headers.content_range(value), ())
    if parsed is not None:
        first, last, total = parsed
        assert all(type(n) is int and 0 <= n <= headers.HUGE for n in (first, last))
        assert total is None or 0 <= total <= headers.HUGE
    unsatisfied, _ = outcome(lambda: headers.unsatisfied_range(value), ())
    assert unsatisfied is None or 0 <= unsatisfied <= headers.HUGE


@FUZZ
@given(value=st.one_of(HEADER_TEXT, st.builds("{}, {} {} {} {}:{}:{} {}".format, *[NUMBERS] * 8)))
@example(value="\xb2")  # "²".isdigit(): float("²") raised ValueError out of the 503 handling
@example(value="Mon, 01 Jan 99999 00:00:00 GMT")
@example(value="Mon, 01 Jan 2020 00:00:00 +9999")
def test_retry_after(value: str) -> None:
    seconds, _ = outcome(lambda: headers.retry_after(value, now=1e9), ())
    assert seconds is None or (0.0 <= seconds and math.isfinite(seconds))


# -- icy-* headers, metadata blocks, the demuxer, an ICY 200 OK head ----------------------------

ICY_NAMES = ["icy-name", "icy-genre", "icy-description", "icy-br", "icy-url", "icy-metaint", "Icy-MetaInt", "x"]


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(ICY_NAMES), st.one_of(HEADER_TEXT, NUMBERS), max_size=6))
@example(fields={"icy-metaint": "\xb2"})  # was int("²"): ValueError out of the live reader
@example(fields={"icy-br": "9" * 5000})
@example(fields={"icy-br": "\u0663\u0662\u0661 kbps"})
def test_icy_headers(fields) -> None:
    interval, _ = outcome(lambda: metaint(fields), ())
    assert interval is None or (type(interval) is int and 1 <= interval <= headers.HUGE)
    found, _ = outcome(lambda: station_metadata(fields), ())
    assert set(found) <= {"name", "genre", "description", "bitrate", "station_url"}
    assert all(isinstance(v, (str, int)) for v in found.values())


ICY_BLOCK_TOKENS = [b"StreamTitle='", b"StreamUrl='", b"';", b"'", b";", b"=", b"\x00", "\u00e9".encode(), b"\xe9", b"\xff"]
ICY_BLOCKS = st.one_of(
    st.binary(max_size=255 * 16),
    mutated([b[1:] for b in corpus("icy_block").values()], ICY_BLOCK_TOKENS, max_size=255 * 16),
)


@FUZZ
@given(block=ICY_BLOCKS)
@example(block=b"x='" * 1360)  # a lazy match per start: must stay near-linear
def test_icy_block(block: bytes) -> None:
    fields, _ = outcome(lambda: parse_block(block), ())
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert sum(len(k) + len(v) for k, v in fields.items()) <= len(block)


@st.composite
def icy_body(draw):
    """``(interval, audio, blocks, body)``: audio interleaved with length-prefixed blocks."""
    interval = draw(st.integers(1, 64))
    count = draw(st.integers(0, 6))
    audio = draw(st.binary(min_size=interval * count, max_size=interval * count))
    body, blocks = bytearray(), []
    for i in range(count):
        body += audio[i * interval : (i + 1) * interval]
        block = draw(ICY_BLOCKS)[: 255 * 16]
        padded = block + b"\0" * (-len(block) % 16)
        blocks.append(padded)
        body += bytes([len(padded) // 16]) + padded
    return interval, audio, blocks, bytes(body)


@FUZZ
@given(case=icy_body(), cuts=st.lists(st.integers(0, 1 << 16), max_size=8), noise=st.binary(max_size=512))
def test_icy_demuxer(case, cuts, noise) -> None:
    interval, audio, blocks, body = case

    def run(data: bytes, pieces):
        demuxer = IcyDemuxer(interval)
        out, changes, previous = bytearray(), [], 0
        for cut in sorted(c % (len(data) + 1) for c in pieces) + [len(data)]:
            piece_audio, piece_changes = demuxer.feed(data[previous:cut])
            out += piece_audio
            changes += piece_changes
            previous = cut
        return bytes(out), changes

    whole, whole_changes = outcome(lambda: run(body, []), ())[0]
    split, split_changes = outcome(lambda: run(body, cuts), ())[0]
    assert (whole, whole_changes) == (split, split_changes)  # how the body is cut never matters
    assert whole == audio  # a well-formed body gives back exactly its audio
    assert all(0 <= pos <= len(audio) for pos, _ in whole_changes) and len(whole_changes) <= len(blocks)
    garbage, _ = outcome(lambda: run(body + noise, cuts), ())[0]  # any bytes at all: no error
    assert len(garbage) <= len(body) + len(noise)


ICY_HEAD_TOKENS = [b"ICY ", b"HTTP/1.0 ", b"200 OK", b"\r\n", b": ", b"icy-metaint:", b"icy-br:", b"\xb2", b"9" * 30, b"\n", b" ", b"\x00"]


@FUZZ
@given(
    head=st.one_of(
        st.binary(max_size=256),
        mutated([h.partition(b"\r\n\r\n")[0] for h in corpus("icy_head").values()], ICY_HEAD_TOKENS, max_size=70 * 1024),
    )
)
@example(head=b"ICY \xb2 OK")  # "²".isdigit(): int() raised ValueError out of request_icy
@example(head=b"ICY 200 OK\r\n" + b"a: b\r\n" * 101)  # http.client's HTTPException (100 headers)
@example(head=b"ICY 200 OK\r\nx: " + b"a" * 66000)  # http.client's LineTooLong
def test_icy_head(head: bytes) -> None:
    parsed, error = outcome(lambda: parse_head(head, "http://radio.example/"), (InvalidResponseError,))
    if error is None:
        status, reason, fields = parsed
        assert 100 <= status <= 999 and isinstance(reason, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


# -- .pls / .m3u station playlists -------------------------------------------------------------

STATION_TOKENS = [
    b"[playlist]\n", b"File1=", b"File" + b"9" * 4400 + b"=", b"http://", b"https://", b"http://[", b"file:///etc/passwd",
    b"rtsp://h/", b"//other.example/", b"http://h:0/", b"http://h:99999/", b"http://:80/", b"#EXTINF:-1,", b"#EXT-X-",
    b"\r\n", b"\n", "\ufeff".encode(), "File\u0661=".encode(), b"%", b"?", b"#", b"\x00", b" ", b"\xff",
]  # fmt: skip
STATION_URLS = ["http://dir.example/list.pls", "https://dir.example/a/b.m3u"]


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=512), mutated(list(corpus("stations").values()), STATION_TOKENS)),
    url=st.sampled_from(STATION_URLS),
    content_type=st.sampled_from([None, "audio/x-scpls", "audio/x-mpegurl", "text/plain"]),
)
@example(data=b"[playlist]\nFile" + b"1" * 5000 + b"=http://a/\n", url=STATION_URLS[0], content_type=None)
@example(data=b"http://[bad/\n", url=STATION_URLS[1], content_type=None)  # urljoin: ValueError
@example(data=b"http://h:99999/\nfile:///etc/passwd\n", url=STATION_URLS[1], content_type=None)  # ValueError in open()
@example(data=b"\x00\x0b\x00", url=STATION_URLS[0], content_type="audio/x-mpegurl")  # two entries naming the playlist
def test_station_playlist(data: bytes, url: str, content_type) -> None:
    stream = io.BytesIO(data)
    urls, _ = outcome(lambda: read_playlist(stream, url, content_type), (InvalidResponseError,))
    if urls is None:
        return
    assert 1 <= len(urls) <= len(data.decode("utf-8").splitlines()) and len(data) <= MAX_PLAYLIST_BYTES
    for entry in urls:
        assert entry != url  # a NUL line was urljoin's "": the playlist named itself
        _check_http_url(entry)  # what open() does with each entry next: never a ValueError now
        assert entry.lower().startswith(("http://", "https://"))


# -- HLS playlists ------------------------------------------------------------------------------

HLS_URIS = st.one_of(st.sampled_from(["seg.ts", "http://h/x.ts", "http://[v6/a.ts", "//h/a", "a b.ts", "", "http://h:99999/"]), st.text(max_size=12))
HLS_ATTR = st.one_of(NUMBERS, st.sampled_from(["0x", "0x" + "0" * 32, "0x" + "f" * 33, "0xZZ", "0x 00"]), st.text(max_size=10))
HLS_LINES = st.one_of(
    st.sampled_from(["#EXTM3U", "#EXT-X-ENDLIST", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-PLAYLIST-TYPE:EVENT", "#EXT-X-DISCONTINUITY", ""]),
    st.builds("#EXT-X-TARGETDURATION:{}".format, NUMBERS),
    st.builds("#EXT-X-MEDIA-SEQUENCE:{}".format, NUMBERS),
    st.builds("#EXTINF:{},".format, NUMBERS),
    st.builds("#EXT-X-BYTERANGE:{}@{}".format, NUMBERS, NUMBERS),
    st.builds("#EXT-X-BYTERANGE:{}".format, NUMBERS),
    st.builds('#EXT-X-KEY:METHOD={},URI="{}",IV={}'.format, st.sampled_from(["AES-128", "NONE", "SAMPLE-AES", "X"]), HLS_URIS, HLS_ATTR),
    st.builds('#EXT-X-MAP:URI="{}",BYTERANGE="{}"'.format, HLS_URIS, HLS_ATTR),
    st.builds('#EXT-X-STREAM-INF:BANDWIDTH={},CODECS="{}"'.format, NUMBERS, st.text(max_size=8)),
    HLS_URIS,
)
HLS_TEXTS = st.one_of(
    mutated(list(corpus("hls").values()), HLS_TOKENS).map(lambda b: b.decode("utf-8-sig", errors="replace")),
    st.lists(HLS_LINES, max_size=24).map(lambda lines: "#EXTM3U\n" + "\n".join(lines) + "\n"),
    st.binary(max_size=256).map(lambda b: b.decode("utf-8-sig", errors="replace")),
)
HLS_URL = "http://media.example/a/index.m3u8"


def check_hls(playlist, text: str) -> None:
    """A parsed playlist holds only what its readers can use (and no more than its text)."""
    lines = text.count("\n") + text.count("\r") + 1
    if isinstance(playlist, MasterPlaylist):
        assert 1 <= len(playlist.variants) <= lines
        assert all(v.bandwidth >= 0 and isinstance(v.uri, str) for v in playlist.variants)
        return
    assert isinstance(playlist, MediaPlaylist) and len(playlist.segments) <= lines
    assert 0 <= playlist.target_duration <= MAX_SECONDS  # waited for by the live reloads
    assert 0 <= playlist.media_sequence and playlist.media_sequence + len(playlist.segments) <= MAX_SEQUENCE
    for seg in playlist.segments:
        assert 0 <= seg.duration <= MAX_SECONDS
        for resource in (seg.resource, seg.init):
            if resource is not None and resource.byterange is not None:
                offset, length = resource.byterange
                assert offset >= 0 and length >= 1 and offset + length <= MAX_OFFSET
        if seg.key is not None:
            assert seg.key.iv is None or len(seg.key.iv) == 16
            assert len(segment_iv(seg.key, seg.sequence)) == 16
            outcome(lambda: check_supported(seg.key, HLS_URL), (StreamError,))
    assert 0 <= live_start(playlist) <= len(playlist.segments)
    PlaylistKind.of(playlist)


@FUZZ
@given(text=HLS_TEXTS)
@example(text='#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0xZZ\n#EXTINF:4,\na.ts\n')  # the row
@example(text='#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0x' + "00" * 20 + "\n#EXTINF:4,\na.ts\n")
@example(text="#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n#EXT-X-BYTERANGE:x@y\na.ts\n")
@example(text="#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n#EXT-X-BYTERANGE:-5@3\na.ts\n")
@example(text="#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nhttp://[x/a.ts\n")  # urljoin's ValueError
@example(text="#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=-1\nv.m3u8\n")
@example(text="#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:-3\n#EXTINF:4,\na.ts\n")  # to_bytes overflow
@example(text="#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:nan,\na.ts\n")
@example(text="#EXTM3U\n#EXT-X-TARGETDURATION:inf\n#EXTINF:1e400,\na.ts\n")
@example(text="#EXTM3U\n#EXT-X-TARGETDURATION:99999999999\n#EXTINF:4,\na.ts\n")  # wait() OverflowError
def test_hls_playlist(text: str) -> None:
    assert isinstance(looks_like_playlist(None, text[:4096].encode()), bool)
    playlist, _ = outcome(lambda: parse_playlist(text, HLS_URL), (InvalidResponseError,))
    if playlist is not None:
        check_hls(playlist, text)


@pytest.mark.parametrize("name", sorted(corpus("hls")))
def test_hls_corpus_parses(name: str) -> None:
    """Every real playlist of the corpus is read, not refused."""
    text = corpus("hls")[name].decode("utf-8-sig")
    playlist, _ = outcome(lambda: parse_playlist(text, HLS_URL), ())
    check_hls(playlist, text)


# -- the disk index and its checksum ----------------------------------------------------------


def sealed(body) -> bytes:
    """``body`` as an index file with the right checksum (the format the module doc gives)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return json.dumps({"body": body, "sha256": hashlib.sha256(canonical).hexdigest()}).encode()


def _containers(inner):
    return st.one_of(inner, st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4))


# JSON values nested up to three levels (st.recursive warns about this extend in long runs).
JSON = _containers(_containers(_containers(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)))))
FIELD_VALUES = {
    "format": st.one_of(st.just(1), JSON),
    "url": st.one_of(st.just("http://h/a"), st.text(max_size=12), JSON),
    "key": st.one_of(st.just("http://h/a"), st.text(max_size=12), JSON),
    "generation": st.one_of(st.just("0123456789abcdef"), st.none(), st.text(max_size=17), JSON),
    "size": st.one_of(st.integers(-2, 2**70), st.none(), JSON),
    "etag": st.one_of(st.just('"x"'), st.none(), st.text(max_size=6), JSON),
    "last_modified": st.one_of(st.none(), st.text(max_size=6), JSON),
    "ranges": st.one_of(st.lists(st.lists(st.integers(-2, 2**20), max_size=3), max_size=6), JSON),
}
INDEX_BODIES = st.fixed_dictionaries({}, optional=FIELD_VALUES)
INDEX_TOKENS = [b"[", b"]", b"{", b"}", b'"ranges":', b'"size":', b"-1", b"1e400", b"\\ud800", b"null", b"true", b"9" * 30, b"[" * 5000]
INDEX_BYTES = st.one_of(
    INDEX_BODIES.map(sealed),
    mutated(list(corpus("disk_index").values()), INDEX_TOKENS),
    st.binary(max_size=256),
)


@FUZZ
@given(raw=INDEX_BYTES)
@example(raw=b"[" * 100_000)  # json.loads raised RecursionError, not CorruptIndex
@example(raw=sealed({"format": 1, "url": "\ud800", "key": "k", "generation": None, "size": None}))  # unprintable URL
@example(raw=sealed({"format": 1, "url": "u", "key": "k", "generation": "0123456789abcdef", "size": 4, "etag": "\u0100", "ranges": []}))
def test_disk_index(raw: bytes) -> None:
    index, _ = outcome(lambda: decode(raw), (CorruptIndex,))
    if index is None:
        return
    index.url.encode("utf-8"), index.key.encode("utf-8")
    if index.validators is not None:
        size = index.validators.size
        for text in (index.validators.etag, index.validators.last_modified):
            assert text is None or text.encode("latin-1") is not None  # what goes into If-Range
        previous = -1
        for start, end in index.ranges:
            assert previous < start < end <= size
            previous = end
    assert decode(encode(index)) == index


@FUZZ
@given(
    url=st.text(max_size=20),
    size=st.integers(0, 2**62),
    etag=st.one_of(st.none(), st.text(st.characters(max_codepoint=255), max_size=8)),
    cuts=st.lists(st.integers(0, 2**62), max_size=8, unique=True),
)
def test_disk_index_round_trip(url: str, size: int, etag, cuts) -> None:
    """Every index the library writes reads back equal (URLs that UTF-8 cannot spell aside)."""
    points = sorted(c for c in cuts if c <= size)
    ranges = tuple((a, b) for a, b in zip(points[::2], points[1::2]) if a < b)
    ranges = tuple(r for i, r in enumerate(ranges) if i == 0 or ranges[i - 1][1] < r[0])
    index = Index(url, url, "0123456789abcdef", Validators(size, etag, None), ranges)
    decoded, error = outcome(lambda: decode(encode(index)), (CorruptIndex,))
    assert decoded == index or (error is not None and not _utf8(url))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(corpus("disk_index")))
def test_disk_index_corpus_reads(name: str) -> None:
    index = decode(corpus("disk_index")[name])
    assert index.validators is not None and index.ranges


def test_oversized_index_is_corrupt_without_reading_it_whole(tmp_path) -> None:
    """An index file larger than any index is refused after reading ``MAX_INDEX_BYTES + 1``."""
    with open(tmp_path / "index.json", "wb") as file:
        file.truncate(MAX_INDEX_BYTES * 4)  # sparse: costs no disk
    with pytest.raises(CorruptIndex, match="more than an index holds"):
        read_index(tmp_path)
