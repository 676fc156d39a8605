"""The chunk framing check (``net.chunks``) on its own: every sound chunked body passes,
however its bytes are split; a refused one says where the sound bytes end; the head's end
is found past interim heads."""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_io.net.chunks import MAX_TRAILERS, ChunkFraming, FramingError, final_head_end


def _encode(chunks: List[bytes], extensions: bool, trailers: List[bytes]) -> bytes:
    out = b""
    for chunk in chunks:
        size = b"%x" % len(chunk)
        out += size + (b';name="v"' if extensions else b"") + b"\r\n" + chunk + b"\r\n"
    return out + b"0\r\n" + b"".join(trailers) + b"\r\n"


def _feed_split(framing: ChunkFraming, data: bytes, cuts: List[int]) -> None:
    at = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        framing.feed(data[at:cut])
        at = cut


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    extensions=st.booleans(),
    trailers=st.lists(st.sampled_from([b"X-A: b\r\n", b"Expires: 0\r\n"]), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=12),
)
def test_every_sound_body_passes_however_it_is_split(chunks, extensions, trailers, cuts) -> None:
    data = _encode(chunks, extensions, trailers)
    framing = ChunkFraming(None)
    _feed_split(framing, data, cuts)
    assert framing.done


@pytest.mark.parametrize("size", [b"-2", b"+a", b"0x1f", b"1_0", b"zz", b"", b" "])
def test_a_size_that_is_not_hex_digits_is_refused_after_the_sound_bytes(size) -> None:
    good = _encode([b"abc", b"defgh"], False, [])[: -len(b"0\r\n\r\n")]  # two sound chunks
    framing = ChunkFraming(None)
    with pytest.raises(FramingError, match="invalid chunk size") as refused:
        framing.feed(good + size + b"\r\nxy\r\n")
    assert refused.value.good == len(good)


def test_anything_but_crlf_after_a_chunk_is_refused() -> None:
    framing = ChunkFraming(None)
    with pytest.raises(FramingError, match="not CRLF") as refused:
        framing.feed(b"3\r\nabcXY4\r\n")
    assert refused.value.good == len(b"3\r\nabc")


def test_trailers_are_capped() -> None:
    framing = ChunkFraming(None)
    framing.feed(b"1\r\na\r\n0\r\n" + b"X-A: b\r\n" * MAX_TRAILERS)
    with pytest.raises(FramingError, match="trailer lines"):
        framing.feed(b"X-A: b\r\n")


def test_a_line_too_long_is_refused() -> None:
    framing = ChunkFraming(None)
    with pytest.raises(FramingError, match="longer than"):
        framing.feed(b"1" + b" " * 70_000)


@pytest.mark.parametrize(
    "raw, body",
    [
        (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nBODY", b"BODY"),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\nBODY", b"BODY"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\n\nHTTP/1.1 206 X\nA: b\n\nBODY", b"BODY"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\nBODY", b"BODY"),
    ],
)
def test_the_body_starts_after_the_first_head_that_is_not_interim(raw, body) -> None:
    start = final_head_end(raw)
    assert start is not None and raw[start:] == body


def test_an_incomplete_head_has_no_body_yet() -> None:
    assert final_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n") is None
    assert final_head_end(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\n") is None
