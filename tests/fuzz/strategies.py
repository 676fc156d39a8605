"""Strategies shared by the fuzz modules: numbers as servers mistype them, header values,
HLS tokens (a dictionary for the mutator, as AFL's ``-x``)."""

from __future__ import annotations

from hypothesis import strategies as st

from .harness import corpus_lines, latin1, mutated

# Things that broke number parsing: non-ASCII digits, numbers int() refuses, signs, floats.
NUMBER_TEXT = ["\xb2", "\u0663", "9" * 25, "9" * 4400, "-1", "+5", "1e400", "nan", "inf", " ", "\t", "0x1f", "1_000"]
NUMBER_TOKENS = [t.encode("utf-8") for t in NUMBER_TEXT] + [b"\xb2"]  # and "²" as Latin-1 sends it
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    st.sampled_from(NUMBER_TEXT + ["", "-0", "00", "\u0661\u0662"]),
    st.text(max_size=6),
)
HEADER_TEXT = st.one_of(
    st.binary(max_size=64).map(latin1),
    mutated([line.encode("latin-1") for line in corpus_lines("headers")], [b"bytes ", b"*", b"/", b"-", *NUMBER_TOKENS]).map(latin1),
    st.builds("bytes {}-{}/{}".format, NUMBERS, NUMBERS, st.one_of(NUMBERS, st.just("*"))),
)

HLS_TOKENS = [
    b"#EXTM3U\n", b'#EXT-X-KEY:METHOD=AES-128,URI="k.bin",IV=0x', b",IV=", b"0x", b"#EXT-X-BYTERANGE:", b"@",
    b'#EXT-X-MAP:URI="init.mp4",BYTERANGE="', b"#EXT-X-MEDIA-SEQUENCE:", b"#EXT-X-TARGETDURATION:", b"#EXTINF:",
    b"#EXT-X-STREAM-INF:BANDWIDTH=", b"#EXT-X-ENDLIST\n", b"#EXT-X-PLAYLIST-TYPE:EVENT\n", b"METHOD=SAMPLE-AES",
    b"METHOD=NONE", b"#EXT-X-DISCONTINUITY\n", b"#EXT-X-PROGRAM-DATE-TIME:", b"http://[", b"http://h:99999/",
    b"\n", b"\r\n", b",", b'"', b"=", b"\\\n", *NUMBER_TOKENS,
]  # fmt: skip
