"""Pure HLS modules: playlist parsing (m3u8), byte layout, AES-128 keys and IVs, ABR choice."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from kithara_io.errors import InvalidResponseError, StreamError
from kithara_io.sources.hls.abr import ThroughputEstimator, choose_variant, initial_variant
from kithara_io.sources.hls.keys import KeyStore, SegmentDecryptor, check_supported, segment_iv
from kithara_io.sources.hls.layout import Layout
from kithara_io.sources.hls.playlist import (
    Key,
    MasterPlaylist,
    MediaPlaylist,
    live_start,
    looks_like_playlist,
    parse_playlist,
)

MASTER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=168000,CODECS="mp4a.40.2"
v1/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=72000,CODECS="mp4a.40.2"
http://other.example/v0.m3u8
"""

MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:4
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI="media.mp4",BYTERANGE="765@0"
#EXT-X-KEY:METHOD=AES-128,URI="../k.bin",IV=0x0A
#EXTINF:4.0,
#EXT-X-BYTERANGE:1000@765
media.mp4
#EXTINF:3.5,
#EXT-X-BYTERANGE:500
media.mp4
#EXT-X-KEY:METHOD=NONE
#EXTINF:2.0,
seg/c.m4s
#EXT-X-ENDLIST
"""


def test_master_playlist_variants_are_absolute_and_in_order() -> None:
    master = parse_playlist(MASTER, "http://h/x/master.m3u8")
    assert isinstance(master, MasterPlaylist)
    assert [(v.bandwidth, v.codecs, v.uri) for v in master.variants] == [
        (168000, "mp4a.40.2", "http://h/x/v1/index.m3u8"),
        (72000, "mp4a.40.2", "http://other.example/v0.m3u8"),
    ]


def test_media_playlist_segments_ranges_keys_and_map() -> None:
    media = parse_playlist(MEDIA, "http://h/a/b/index.m3u8")
    assert isinstance(media, MediaPlaylist)
    assert media.ended and not media.live and media.target_duration == 4 and media.media_sequence == 7
    a, b, c = media.segments
    assert [s.sequence for s in media.segments] == [7, 8, 9]
    assert (a.resource.uri, a.resource.byterange) == ("http://h/a/b/media.mp4", (765, 1000))
    assert b.resource.byterange == (1765, 500)  # no @offset: continues the previous sub-range
    assert c.resource == c.resource.__class__("http://h/a/b/seg/c.m4s", None)
    assert a.init is not None and a.init.byterange == (0, 765)
    assert a.key == Key("AES-128", "http://h/a/k.bin", (10).to_bytes(16, "big"))
    assert c.key is None
    assert [s.duration for s in media.segments] == [4.0, 3.5, 2.0]


def test_garbage_is_an_invalid_response() -> None:
    with pytest.raises(InvalidResponseError, match="http://h/p.m3u8"):
        parse_playlist("#EXTM3U\n#EXT-X-ENDLIST\n", "http://h/p.m3u8")


@pytest.mark.parametrize(
    "content_type, head, expected",
    [
        (None, b"#EXTM3U\n#EXT-X-VERSION:3\n", True),
        ("text/plain", b"\xef\xbb\xbf#EXTM3U\r\n#EXT-X-TARGETDURATION:4", True),
        ("application/vnd.apple.mpegurl", b"#EXTM3U\n#EXTINF:1,\na.ts", True),
        ("audio/mpegurl", b"#EXTM3U\n#EXTINF:123,Artist - Title\nhttp://h/a.mp3\n", True),
        ("audio/x-mpegurl; charset=utf-8", b"#EXTM3U\n", True),
        (None, b"#EXTM3U\n#EXTINF:123,Artist - Title\nhttp://h/a.mp3\n", False),  # plain M3U
        ("application/vnd.apple.mpegurl", b"RIFF....WAVE", False),
        (None, b"ID3\x04#EXTM3U #EXT-X-", False),
    ],
)
def test_detection(content_type, head, expected) -> None:
    assert looks_like_playlist(content_type, head) is expected


def test_live_start_is_three_target_durations_from_the_edge() -> None:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:100"]
    for i in range(10):
        lines += ["#EXTINF:2.0,", f"s{i}.ts"]
    live = parse_playlist("\n".join(lines), "http://h/live.m3u8")
    assert live.live
    assert live_start(live) == 7  # segments 7, 8, 9: 6 s = 3 x 2 s
    assert live_start(live, 100) == 0


def test_layout_offsets_and_unproven_end() -> None:
    layout = Layout()
    for size in (10, None, 5):
        layout.append(size)
    assert layout.offset(0) == 0 and layout.offset(1) == 10 and layout.offset(2) is None
    assert layout.total() is None
    assert layout.locate(3) == (0, 3)
    assert layout.locate(10) == (1, 0)
    assert layout.locate(10_000) == (1, 9990)  # the unknown part decides: no early end
    layout.set_size(1, 7)
    assert layout.total() == 22 and layout.offset(2) == 17
    assert layout.locate(18) == (2, 1)
    assert layout.locate(22) is None  # proven end
    layout.set_size(1, None)  # re-planned on another variant: unknown again
    assert layout.total() is None and layout.locate(22) == (1, 12)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=20), st.data())
def test_layout_locate_agrees_with_concatenation(sizes, data) -> None:
    layout = Layout()
    for s in sizes:
        layout.append(s)
    owner = [i for i, s in enumerate(sizes) for _ in range(s)]
    pos = data.draw(st.integers(0, sum(sizes) + 5))
    found = layout.locate(pos)
    if pos >= sum(sizes):
        assert found is None
    else:
        assert found is not None and found[0] == owner[pos]
        assert layout.offset(found[0]) + found[1] == pos


def _encrypt(key: bytes, iv: bytes, plain: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 4096, 10_001])
@pytest.mark.parametrize("piece", [1, 7, 16, 1000])
def test_streaming_decryption_equals_plaintext(length: int, piece: int) -> None:
    key, iv = os.urandom(16), os.urandom(16)
    plain = os.urandom(length)
    cipher = _encrypt(key, iv, plain)
    dec = SegmentDecryptor(key, iv, "http://h/s.ts")
    out = b"".join(dec.update(cipher[i : i + piece]) for i in range(0, len(cipher), piece))
    assert out + dec.finish() == plain


def test_wrong_key_or_cut_segment_is_an_error() -> None:
    key, iv = os.urandom(16), os.urandom(16)
    cipher = _encrypt(key, iv, b"x" * 100)
    dec = SegmentDecryptor(bytes(16), iv, "http://h/s.ts")
    dec.update(cipher)
    with pytest.raises(InvalidResponseError, match="padding"):
        dec.finish()
    dec = SegmentDecryptor(key, iv, "http://h/s.ts")
    dec.update(cipher[:-3])
    with pytest.raises(InvalidResponseError, match="whole number"):
        dec.finish()


def test_iv_from_attribute_or_media_sequence() -> None:
    assert segment_iv(Key("AES-128", "k", b"\x01" * 16), 5) == b"\x01" * 16
    assert segment_iv(Key("AES-128", "k", None), 5) == bytes(15) + b"\x05"
    assert segment_iv(Key("AES-128", "k", None), 2**40) == (2**40).to_bytes(16, "big")


def test_sample_aes_and_unknown_methods_are_refused() -> None:
    check_supported(None, "u")
    check_supported(Key("AES-128", "k", None), "u")
    for method in ("SAMPLE-AES", "SAMPLE-AES-CTR", "ROT13"):
        with pytest.raises(StreamError, match=f"{method} is not supported.*http://h/p"):
            check_supported(Key(method, "k", None), "http://h/p")


def test_key_store_fetches_each_uri_once() -> None:
    calls = []

    def fetch(uri: str) -> bytes:
        calls.append(uri)
        return uri.encode().ljust(16, b"\0")[:16]

    keys = KeyStore(fetch)
    assert keys.get("a") == keys.get("a") and keys.get("b") != keys.get("a")
    assert calls == ["a", "b"]
    bad = KeyStore(lambda uri: b"short")
    with pytest.raises(InvalidResponseError, match="5 bytes"):
        bad.get("x")


def test_abr_choice() -> None:
    bws = [168_000, 72_000, 308_000]  # master order, not sorted
    assert choose_variant(bws, None, 0) == 0  # nothing measured: stay
    assert choose_variant(bws, 120_000, 0) == 1  # 0.7 x 120k = 84k: only 72k fits
    assert choose_variant(bws, 50_000, 2) == 1  # nothing fits: the lowest
    assert choose_variant(bws, 300_000, 1) == 0  # 210k: 168k is the highest that fits
    assert choose_variant(bws, 10e6, 1) == 2
    assert initial_variant(bws, "auto") == 0
    assert initial_variant(bws, "lowest") == 1 and initial_variant(bws, "highest") == 2
    assert initial_variant(bws, 2) == 2
    with pytest.raises(ValueError):
        initial_variant(bws, 3)
    with pytest.raises(ValueError):
        initial_variant(bws, "best")


def test_throughput_estimate_moves_towards_new_samples() -> None:
    est = ThroughputEstimator()
    assert est.estimate is None
    est.record(20_000, 1.0)
    assert est.estimate == 160_000
    est.record(0, 1.0)  # ignored
    est.record(200_000, 1.0)
    assert 160_000 < est.estimate < 1_600_000 and est.samples == 2


def test_small_downloads_are_pooled_into_one_sample() -> None:
    """Downloads below MIN_SAMPLE add up (bytes and times) until they span one."""
    est = ThroughputEstimator(min_sample=16_000)
    for _ in range(3):
        est.record(5_000, 0.5)
        assert est.estimate is None
    est.record(5_000, 0.5)  # 20,000 bytes in 2 s
    assert est.estimate == 80_000 and est.samples == 1
    est.record(1_000, 0.1)  # pooled afresh
    assert est.estimate == 80_000 and est.samples == 1


from kithara_io.reading.ranges import RangeSet  # noqa: E402
from kithara_io.sources.hls.gaps import evictions, next_gap  # noqa: E402


def _ranges(*pairs) -> RangeSet:
    rs = RangeSet()
    for a, b in pairs:
        rs.add(a, b)
    return rs


def test_next_gap_skips_stored_and_claimed_bytes() -> None:
    assert next_gap(None, 100, [], 0, 50) == (0, 50)
    assert next_gap(None, 100, [], 80, 500) == (80, 100)  # cut at the part's end
    assert next_gap(None, 100, [], 100, 500) is None
    assert next_gap(_ranges((0, 30)), 100, [], 0, 80) == (30, 80)
    assert next_gap(_ranges((0, 30), (60, 70)), 100, [], 0, 80) == (30, 60)  # up to the next stored byte
    assert next_gap(None, 100, [(0, 40)], 0, 80) == (40, 80)
    assert next_gap(None, 100, [(0, 40), (50, 60)], 0, 80) == (40, 50)  # up to the next claim
    assert next_gap(None, 100, [(0, None)], 0, 80) is None  # claimed to the end
    assert next_gap(_ranges((0, 10)), 100, [(10, 40)], 0, 40) is None


def test_next_gap_of_a_part_of_unknown_size() -> None:
    assert next_gap(None, None, [], 0, 64) == (0, 64)
    assert next_gap(None, None, [(0, 64)], 0, 200) is None  # wait for its first answer


@given(
    st.lists(st.tuples(st.integers(0, 99), st.integers(1, 30)), max_size=5),
    st.lists(st.tuples(st.integers(0, 99), st.integers(1, 30)), max_size=4),
    st.integers(0, 120),
    st.integers(1, 80),
)
def test_next_gap_is_missing_and_unclaimed(stored, claimed, start, length) -> None:
    size = 100
    present = _ranges(*[(a, min(size, a + n)) for a, n in stored])
    claims = [(a, min(size, a + n)) for a, n in claimed]
    gap = next_gap(present, size, claims, start, start + length)
    wanted = set(range(start, min(size, start + length)))
    free = {p for p in wanted if not present.contains(p, p + 1) and not any(a <= p < b for a, b in claims)}
    if gap is None:
        assert not free
    else:
        a, b = gap
        assert a == min(free) and a < b <= min(size, start + length)
        assert all(p in free for p in range(a, b))


def test_evictions_farthest_first_and_never_protected() -> None:
    held = {"a": 10, "b": 10, "c": 10, "d": 10}
    order = {"a": 0, "b": 1, "c": 2, "d": 3}
    assert evictions(held, order, cursor=3, keep={"d"}, budget=25) == ["a", "b"]
    assert evictions(held, order, cursor=0, keep={"a"}, budget=100) == []
    assert evictions({**held, "gone": 5}, order, cursor=2, keep=set(), budget=30) == ["gone", "a"]


from kithara_io.sources.hls.kind import PlaylistKind  # noqa: E402
from kithara_io.sources.hls.plan import INIT, Plan  # noqa: E402


def _fmp4(variant: str, ended: bool = True, kind: str = "") -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"] + ([f"#EXT-X-PLAYLIST-TYPE:{kind}"] if kind else [])
    lines.append('#EXT-X-MAP:URI="init.mp4"')
    for i in range(4):
        lines += ["#EXTINF:4.0,", f"{variant}/s{i}.m4s"]
    return "\n".join(lines + (["#EXT-X-ENDLIST"] if ended else [])) + "\n"


def test_playlist_kind() -> None:
    of = lambda text: PlaylistKind.of(parse_playlist(text, "http://h/x.m3u8"))  # noqa: E731
    assert of(_fmp4("a")) is PlaylistKind.VOD
    assert of(_fmp4("a", ended=True, kind="EVENT")) is PlaylistKind.VOD  # an ended EVENT is complete
    assert of(_fmp4("a", ended=False, kind="EVENT")) is PlaylistKind.EVENT
    assert of(_fmp4("a", ended=False)) is PlaylistKind.LIVE
    assert [k.seekable for k in PlaylistKind] == [True, True, False]
    assert [k.from_live_edge for k in PlaylistKind] == [False, False, True]
    assert [k.switchable for k in PlaylistKind] == [True, False, False]


def test_fmp4_switch_inserts_the_init_segment_and_not_when_switching_back() -> None:
    media = {i: parse_playlist(_fmp4(name), f"http://h/{name}.m3u8") for i, name in enumerate("ab")}
    plan = Plan(media)
    plan.build(0, [0, 1, 2, 3])
    assert plan.switch(2, 1) == 0  # before segment 1
    assert plan.parts == [(0, INIT), (0, 0), (1, INIT), (1, 1), (1, 2), (1, 3)]
    assert plan.switch(2, 0) == 1  # the planned switch taken back before it is read
    assert plan.parts == [(0, INIT), (0, 0), (0, 1), (0, 2), (0, 3)]  # no second init of variant 0
    assert len(plan.layout) == len(plan.parts)


def test_restart_window_ends_at_the_next_restart_offset() -> None:
    import io

    from kithara_io.playback.windows import RestartWindow

    data = bytes(range(100)) + bytes(50)
    stream, known = io.BytesIO(data), []
    first = RestartWindow(stream, 0, lambda: list(known))
    assert first.read(64) == data[:64] and first.end is None  # no restart fixed yet
    known.append(100)  # the boundary got fixed
    assert first.read(64) == data[64:100] and first.read(64) == b"" and first.end == 100
    assert first.seek(0, io.SEEK_END) == 100
    second = RestartWindow(stream, 100, lambda: list(known))
    assert second.seek(0, io.SEEK_END) == 50 and second.seek(10) == 10  # to the stream's end
    assert second.read() == data[110:]


from kithara_io.sources.hls.playlist import Rendition, Variant  # noqa: E402
from kithara_io.sources.hls.renditions import audio_variants, is_audio_only  # noqa: E402


def _rendition(group: str, uri: str, language: str = "en", default: bool = True) -> Rendition:
    return Rendition(group, language.upper(), language, default, True, "2", uri)


def test_audio_groups_become_the_variants_abr_chooses_between() -> None:
    """Two video variants naming audio groups of their own: two audio variants, with the
    video variants' bandwidths (ABR picks the group as it would pick the variant)."""
    videos = (Variant(800_000, "avc1.4d401f,mp4a.40.2", "v/low.m3u8", "lo"), Variant(3_000_000, "avc1.4d401f,mp4a.40.2", "v/hi.m3u8", "hi"))
    groups = (_rendition("lo", "a/64k.m3u8"), _rendition("hi", "a/192k.m3u8"))
    variants, read = audio_variants(videos, groups)
    assert [(v.bandwidth, v.codecs, v.uri) for v in variants] == [(800_000, "mp4a.40.2", "a/64k.m3u8"), (3_000_000, "mp4a.40.2", "a/192k.m3u8")]
    assert read == groups


def test_one_group_shared_by_every_variant_is_read_once() -> None:
    videos = (Variant(3_000_000, None, "v/hi.m3u8", "aud"), Variant(800_000, None, "v/low.m3u8", "aud"))
    variants, read = audio_variants(videos, (_rendition("aud", "a/en.m3u8"),))
    assert [(v.bandwidth, v.uri) for v in variants] == [(800_000, "a/en.m3u8")]  # the lowest: a slow link may pick it
    assert len(read) == 1


def test_renditions_without_a_uri_leave_the_variant_as_it_is() -> None:
    videos = (Variant(800_000, None, "v/low.m3u8", "aud"),)
    variants, read = audio_variants(videos, (_rendition("aud", None),))  # type: ignore[arg-type]
    assert variants == videos and read == (None,)


@pytest.mark.parametrize("codecs, audio_only", [("mp4a.40.2", True), ("mp4a.40.2,avc1.42e01e", False), ("ac-3", True), ("hvc1.1.6.L93.90", False), (None, False)])
def test_audio_only_variants_are_told_by_their_codecs(codecs, audio_only) -> None:
    assert is_audio_only(Variant(1, codecs, "x.m3u8")) is audio_only
