"""MPEG-DASH parsing and segment expansion, without a network: templates with printf widths,
SegmentTimeline repeats, the BaseURL chain, inheritance of addressing attributes, a live
``$Number$`` window worked out from the clock, sidx boxes, and MPDs that must be refused."""

from __future__ import annotations

import re
import struct
from xml.sax.saxutils import escape

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kithara_io.errors import InvalidResponseError
from kithara_io.sources.dash.mpd import parse_mpd
from kithara_io.sources.dash.presentation import build
from kithara_io.sources.dash.segments import MAX_SEGMENTS, expand
from kithara_io.sources.dash.sidx import parse_sidx
from kithara_io.sources.dash.template import fill
from kithara_io.sources.dash_entry import is_mpd_url, looks_like_mpd

URL = "http://host/a/b/manifest.mpd"
NS = 'xmlns="urn:mpeg:dash:schema:mpd:2011"'


def no_index(url, span):  # pragma: no cover - a SegmentTemplate never reads an index
    raise AssertionError("no index to read")


def mpd(body: str, attrs: str = 'type="static" mediaPresentationDuration="PT10S"') -> str:
    return f'<?xml version="1.0"?><MPD {NS} {attrs}>{body}</MPD>'


def audio_set(inner: str, set_attrs: str = 'contentType="audio"', rep_attrs: str = 'id="r1" bandwidth="64000"') -> str:
    return f"<Period><AdaptationSet {set_attrs}><Representation {rep_attrs}>{inner}</Representation></AdaptationSet></Period>"


def segments(text: str, now: float = 0.0):
    parsed = parse_mpd(text, URL)
    rep = parsed.periods[0].adaptation_sets[0].representations[0]
    return expand(parsed, 0, rep, now, no_index)


@pytest.mark.parametrize(
    "pattern, values, expected",
    [
        ("seg-$Number$.m4s", {"Number": 7}, "seg-7.m4s"),
        ("seg-$Number%05d$.m4s", {"Number": 7}, "seg-00007.m4s"),
        ("$RepresentationID$/$Bandwidth$/$Time$.m4s", {"RepresentationID": "a1", "Bandwidth": 64000, "Time": 88064}, "a1/64000/88064.m4s"),
        ("t$Time%010d$-$$-x.m4s", {"Time": 5}, "t0000000005-$-x.m4s"),
        ("h$Number%x$", {"Number": 255}, "hff"),
    ],
)
def test_template_identifiers_and_widths(pattern, values, expected) -> None:
    assert fill(pattern, values, URL) == expected


def test_template_identifier_without_a_value_is_refused() -> None:
    with pytest.raises(InvalidResponseError, match=r"\$Time\$"):
        fill("seg-$Time$.m4s", {"Number": 1}, URL)


def test_timeline_repeats_and_open_ended_repeat_to_the_period_end() -> None:
    text = mpd(audio_set(
        '<SegmentTemplate timescale="1000" media="s-$Time$-$Number$.m4s" startNumber="10">'
        '<SegmentTimeline><S t="0" d="2000" r="2"/><S d="1000" r="-1"/></SegmentTimeline></SegmentTemplate>'
    ))
    init, media = segments(text)
    assert init is None
    assert [m.resource.uri for m in media][:4] == [
        "http://host/a/b/s-0-10.m4s", "http://host/a/b/s-2000-11.m4s", "http://host/a/b/s-4000-12.m4s", "http://host/a/b/s-6000-13.m4s"]
    assert [m.duration for m in media] == [2.0] * 3 + [1.0] * 4  # r=-1: to the period's end (10 s)
    assert [m.number for m in media] == list(range(10, 17))


def test_live_open_ended_timeline_lists_the_complete_segments() -> None:
    """``r="-1"`` in a live MPD: up to the last segment complete at the live edge."""
    text = mpd(audio_set('<SegmentTemplate timescale="10" media="$Time$.m4s"><SegmentTimeline><S t="0" d="20" r="-1"/></SegmentTimeline></SegmentTemplate>'),
               'type="dynamic" availabilityStartTime="1970-01-01T00:00:00Z"')
    _, media = segments(text, now=7.5)  # 0-2, 2-4, 4-6 complete; 6-8 not yet
    assert [m.resource.uri.rsplit("/", 1)[1] for m in media] == ["0.m4s", "20.m4s", "40.m4s"]


def test_number_template_count_and_last_segment_clipped() -> None:
    text = mpd(audio_set('<SegmentTemplate timescale="48000" duration="96000" media="$Number$.m4s" initialization="init.m4s"/>'),
               'type="static" mediaPresentationDuration="PT7S"')
    init, media = segments(text)
    assert init.uri == "http://host/a/b/init.m4s"
    assert [m.duration for m in media] == [2.0, 2.0, 2.0, 1.0] and [m.number for m in media] == [1, 2, 3, 4]


def test_base_url_chain_and_inherited_template() -> None:
    """BaseURL at every level (absolute wins, relative joins), and a SegmentTemplate on the
    AdaptationSet whose attributes a Representation's own SegmentTemplate overrides."""
    text = mpd(
        '<BaseURL>../cdn/</BaseURL><Period><BaseURL>p1/</BaseURL>'
        '<AdaptationSet contentType="audio"><BaseURL>audio/</BaseURL>'
        '<SegmentTemplate timescale="1000" duration="2000" media="$RepresentationID$-$Number$.m4s" initialization="$RepresentationID$-init.m4s"/>'
        '<Representation id="lo" bandwidth="1"><BaseURL>lo/</BaseURL></Representation>'
        '<Representation id="hi" bandwidth="2"><BaseURL>https://other.example/hi/</BaseURL><SegmentTemplate startNumber="5"/></Representation>'
        '</AdaptationSet></Period>', 'type="static" mediaPresentationDuration="PT4S"')
    parsed = parse_mpd(text, URL)
    lo, hi = parsed.periods[0].adaptation_sets[0].representations
    assert lo.base_url == "http://host/a/cdn/p1/audio/lo/"
    init, media = expand(parsed, 0, lo, 0.0, no_index)
    assert init.uri == "http://host/a/cdn/p1/audio/lo/lo-init.m4s" and media[1].resource.uri == "http://host/a/cdn/p1/audio/lo/lo-2.m4s"
    init, media = expand(parsed, 0, hi, 0.0, no_index)
    assert init.uri == "https://other.example/hi/hi-init.m4s" and [m.number for m in media] == [5, 6]


def test_live_number_template_window_from_the_clock() -> None:
    """Segment k is out at availabilityStartTime + (k + 1) * duration; the time-shift buffer
    keeps the last 6 s."""
    text = mpd(audio_set('<SegmentTemplate timescale="1" duration="2" media="$Number$.m4s" startNumber="1"/>'),
               'type="dynamic" availabilityStartTime="1970-01-01T00:01:40Z" timeShiftBufferDepth="PT6S" minimumUpdatePeriod="PT2S"')
    _, media = segments(text, now=100 + 21.0)  # 21 s in: 10 segments are complete
    assert [m.number for m in media] == [8, 9, 10]  # starting 14, 16, 18 s: those ending after 15 s
    _, media = segments(text, now=100 + 1.0)
    assert media == []  # nothing complete yet


def test_live_presentation_starts_at_the_suggested_delay_and_has_stable_numbers() -> None:
    text = mpd(audio_set('<SegmentTemplate timescale="1" duration="1" media="$Number$.m4s"/>'),
               'type="dynamic" availabilityStartTime="1970-01-01T00:00:00Z" suggestedPresentationDelay="PT3S"')
    first = build(parse_mpd(text, URL), None, no_index, 10.0).media[0]
    later = build(parse_mpd(text, URL), None, no_index, 12.0).media[0]
    assert not first.ended and first.start == (-3.0, False)
    assert [s.sequence for s in first.segments][-1] == 10 and [s.sequence for s in later.segments][-1] == 12


def test_two_periods_one_stream_with_distinct_sequences_and_a_discontinuity() -> None:
    """Period boundaries: the second period's first segment is a discontinuity with that
    period's init segment; sequences grow across periods (static and live alike)."""
    period = ('<Period start="PT{start}S"><AdaptationSet contentType="audio"><Representation id="r" bandwidth="1">'
              '<SegmentTemplate timescale="1" duration="2" media="{name}-$Number$.m4s" initialization="{name}-init.m4s"/>'
              "</Representation></AdaptationSet></Period>")
    body = period.format(start=0, name="a") + period.format(start=4, name="b")
    for attrs in ('type="static" mediaPresentationDuration="PT8S"', 'type="dynamic" availabilityStartTime="1970-01-01T00:00:00Z"'):
        playlist = build(parse_mpd(mpd(body, attrs), URL), None, no_index, 8.0).media[0]
        uris = [s.resource.uri.rsplit("/", 1)[1] for s in playlist.segments]
        assert uris == ["a-1.m4s", "a-2.m4s", "b-1.m4s", "b-2.m4s"], attrs
        assert [s.discontinuity for s in playlist.segments] == [False, False, True, False]
        assert [s.init.uri.rsplit("/", 1)[1] for s in playlist.segments] == ["a-init.m4s"] * 2 + ["b-init.m4s"] * 2
        sequences = [s.sequence for s in playlist.segments]
        assert sequences == sorted(set(sequences))
    huge = body.replace('media="a-', 'startNumber="40000000000" media="a-', 1)  # would run into period b's numbers
    with pytest.raises(InvalidResponseError, match="overlap"):
        build(parse_mpd(mpd(huge, 'type="static" mediaPresentationDuration="PT8S"'), URL), None, no_index, 0.0)


def test_utc_timing_sources() -> None:
    """The first usable UTCTiming source gives the server's clock; a failing or unknown one
    is skipped; none: the local clock."""
    import time

    from kithara_io.errors import ConnectionFailedError
    from kithara_io.sources.dash.clock import server_offset

    def fetch(url: str) -> str:
        if url.endswith("/down"):
            raise ConnectionFailedError("refused", url=url)
        assert url == "http://host/a/b/time"
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))

    def never(url: str) -> str:
        raise AssertionError(url)

    assert server_offset([], URL, never) == 0.0
    direct = [("urn:mpeg:dash:utc:direct:2014", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600)))]
    assert server_offset(direct, URL, never) == pytest.approx(-600, abs=2)
    chain = [("urn:mpeg:dash:utc:ntp:2014", "pool"), ("urn:mpeg:dash:utc:http-iso:2014", "/down"), ("urn:mpeg:dash:utc:http-xsdate:2014", "time")]
    assert server_offset(chain, URL, fetch) == pytest.approx(7200, abs=2)


def test_sidx_subsegments() -> None:
    refs = [(1000, 48000), (1200, 48000), (900, 24000)]
    body = struct.pack(">BBBBIIIIHH", 0, 0, 0, 0, 1, 48000, 0, 16, 0, len(refs))
    body += b"".join(struct.pack(">III", size, duration, 0x90000000) for size, duration in refs)
    box = struct.pack(">I4s", 8 + len(body), b"sidx") + body
    subs = parse_sidx(box, 500, URL)
    assert [(s.offset, s.size, s.duration) for s in subs] == [(500 + len(box) + 16, 1000, 1.0), (500 + len(box) + 1016, 1200, 1.0), (500 + len(box) + 2216, 900, 0.5)]
    with pytest.raises(InvalidResponseError, match="whole sidx box"):
        parse_sidx(box[:30], 0, URL)
    lying = box[:30] + struct.pack(">H", 5) + box[32:]  # five references listed, three there
    with pytest.raises(InvalidResponseError, match="cut short"):
        parse_sidx(lying, 0, URL)
    with pytest.raises(InvalidResponseError, match="sidx"):
        parse_sidx(b"\x00\x00\x00\x10moof" + bytes(8), 0, URL)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not xml at all", "not a valid DASH MPD"),
        ('<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY a "aaaa">]><MPD>&a;</MPD>', "not a valid DASH MPD"),
        ("<Feed/>", "root is not MPD"),
        (mpd(""), "without a Period"),
        (mpd(audio_set("", 'contentType="video"')), "no audio AdaptationSet"),
        (mpd(audio_set('<SegmentTemplate media="$Number$.m4s" duration="x"/>')), "segment duration 'x'"),
        (mpd(audio_set('<SegmentTemplate media="$Number$.m4s"/>')), "neither a segment duration nor a SegmentTimeline"),
        (mpd(audio_set('<SegmentTemplate media="$Number$" timescale="1"><SegmentTimeline><S t="0" d="1" r="100000000"/></SegmentTimeline></SegmentTemplate>')), "more than"),
        (mpd(audio_set('<SegmentList><SegmentURL mediaRange="9-3"/></SegmentList>')), "mediaRange '9-3'"),
        (mpd(audio_set(""), 'type="static" mediaPresentationDuration="P1Y2X"'), "mediaPresentationDuration"),
    ],
)
def test_mpds_that_cannot_be_read_are_refused(text, message) -> None:
    with pytest.raises(InvalidResponseError, match=message) as caught:
        build(parse_mpd(text, URL), None, no_index, 0.0)
    assert URL in str(caught.value)
    assert MAX_SEGMENTS == 1_000_000


def test_content_protection_is_a_clear_error() -> None:
    """Encrypted audio (CENC) would read as bytes no decoder can use: refused at open."""
    from kithara_io.errors import StreamError

    text = mpd(audio_set('<SegmentTemplate duration="1" media="$Number$.m4s"/>', 'contentType="audio"'))
    text = text.replace("<Representation", '<ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cenc"/><Representation')
    with pytest.raises(StreamError, match="ContentProtection"):
        build(parse_mpd(text, URL), None, no_index, 0.0)


def test_recognised_by_name_and_by_body() -> None:
    assert is_mpd_url("https://h/x/Manifest.MPD?token=1") and not is_mpd_url("file:///x.mpd") and not is_mpd_url("http://h/x.mpd.txt")
    assert looks_like_mpd(None, b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- c --><MPD xmlns="urn:mpeg:dash:schema:mpd:2011">')
    assert looks_like_mpd(None, b"<mpd:MPD xmlns:mpd='urn:mpeg:dash:schema:mpd:2011'/>")
    assert looks_like_mpd("application/dash+xml; charset=utf-8", b"<?xml version='1.0'?><x/>")
    assert not looks_like_mpd("application/xml", b"<?xml version='1.0'?><feed>MPD</feed>")
    assert not looks_like_mpd(None, b"#EXTM3U")


_FFMPEG_MPD = mpd(
    '<Period id="0" start="PT0.0S"><AdaptationSet id="0" contentType="audio" lang="en">'
    '<Representation id="0" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="64544" audioSamplingRate="44100">'
    '<AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="2" />'
    '<SegmentTemplate timescale="44100" initialization="init-$RepresentationID$.m4s" media="c-$RepresentationID$-$Number%05d$.m4s" startNumber="1">'
    '<SegmentTimeline><S t="0" d="88064" /><S d="89088" r="1" /></SegmentTimeline></SegmentTemplate>'
    '</Representation></AdaptationSet></Period>'
)
_VALUES = st.one_of(
    st.sampled_from(["", "-1", "0", "1", "18446744073709551616", "1e9", "PT-5S", "P1Y", "x", "$", "$Number%99999d$",
                     "$Time$", "http://[::1", "9-3", "0-0", "NaN"]),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(set(re.findall(r'(\w+)="[^"]*"', _FFMPEG_MPD)))), _VALUES), max_size=4))
@example(changes=[("audioSamplingRate", "\\1")])  # once read as a group reference by re.sub
def test_any_attribute_value_opens_or_is_an_invalid_response(changes) -> None:
    """Real MPD attributes set to hostile values: a presentation, or a StreamError naming the
    URL (a ValueError only for an ``audio=`` that matches nothing), never another exception."""
    from kithara_io.errors import StreamError

    text = _FFMPEG_MPD
    for name, value in changes:
        attribute = f'{name}="{escape(value, {chr(34): "&quot;"})}"'
        text = re.sub(rf'\b{name}="[^"]*"', lambda _: attribute, text, count=1)  # a value is no template
    try:
        presentation = build(parse_mpd(text, URL), None, no_index, 1e9)
    except StreamError as exc:
        assert URL in str(exc)
        return
    for playlist in presentation.media.values():
        assert all(s.duration >= 0 for s in playlist.segments)
        assert len(playlist.segments) <= MAX_SEGMENTS
