"""The progress display's pure parts: formatting, the range bar, the rate meter, key parsing
and the line writer's terminal/pipe behaviour."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kithara_io.cli.progress import (
    LineWriter,
    RateMeter,
    download_line,
    format_bytes,
    format_rate,
    format_time,
    parse_keys,
    parse_time,
    playback_line,
    range_bar,
)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0:00"), (59.99, "0:59"), (61, "1:01"), (3599, "59:59"), (3600, "1:00:00"), (None, "--:--"),
     (float("nan"), "--:--"), (-1, "--:--")],
)  # fmt: skip
def test_format_time(seconds, text) -> None:
    assert format_time(seconds) == text


@pytest.mark.parametrize(
    "count, text",
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 * 2**20, "5.0 MiB"),
     (3 * 2**30, "3.0 GiB"), (2**50, "1024.0 TiB"), (None, "?")],
)  # fmt: skip
def test_format_bytes(count, text) -> None:
    assert format_bytes(count) == text


def test_format_rate() -> None:
    assert format_rate(None) == "-"
    assert format_rate(2.5 * 2**20) == "2.5 MiB/s"


def test_range_bar_marks_full_partial_and_empty_cells() -> None:
    # 10 cells of 10 bytes: [0, 30) full, [45, 50) partial, the rest empty.
    assert range_bar([(0, 30), (45, 50)], 100, 10) == "###.+....."
    assert range_bar([(0, 100)], 100, 10) == "#" * 10
    assert range_bar([], 100, 10) == "." * 10
    assert range_bar([(0, 100)], 0, 4) == "...."  # unknown/empty file
    assert range_bar([(0, 100)], 100, 0) == ""


def test_range_bar_cursor() -> None:
    assert range_bar([(0, 100)], 100, 10, cursor=0.0) == "|#########"
    assert range_bar([(0, 100)], 100, 10, cursor=0.55) == "#####|####"
    assert range_bar([], 100, 10, cursor=1.0) == ".........|"  # the end stays inside the bar


@given(
    st.integers(1, 10_000),
    st.lists(st.tuples(st.integers(0, 12_000), st.integers(0, 12_000)), max_size=8),
    st.integers(1, 120),
)
def test_range_bar_width_and_alphabet(size, pairs, width) -> None:
    ranges = [(min(a, b), max(a, b)) for a, b in pairs]
    bar = range_bar(ranges, size, width)
    assert len(bar) == width and set(bar) <= set("#+.")
    if not any(min(e, size) > s for s, e in ranges):
        assert set(bar) == {"."}


def test_playback_line_content_and_width() -> None:
    line = playback_line(
        state="playing", position=12.3, duration=225, ranges=[(0, 500)], size=1000, rate=1.5 * 2**20,
        underruns=2, width=72,
    )  # fmt: skip
    assert line.startswith("playing   0:12 / 3:45 [")
    assert line.endswith("] " + "1.5 MiB/s".rjust(12) + " underruns 2")  # padded: a fixed-width bar
    assert len(line) == 72
    bar = line[line.index("[") + 1 : line.index("]")]
    assert "|" in bar and bar.count("#") + bar.count("+") >= len(bar) // 2 - 1


def test_playback_line_bar_width_is_fixed_and_shows_the_audio_format() -> None:
    widths = set()
    for rate in (None, 10.0, 1.5 * 2**20, 999.9 * 2**10):
        line = playback_line(
            state="playing", position=3, duration=225, ranges=[], size=1000, rate=rate, underruns=0,
            width=100, codec="AAC 256 kbit/s", samplerate=44100, output_rate=48000,
        )  # fmt: skip
        assert len(line) == 100 and "] AAC 256 kbit/s 44.1 kHz -> 48 kHz " in line
        widths.add(line.index("]") - line.index("["))
    assert len(widths) == 1


def test_playback_line_of_a_live_stream_shows_elapsed_time_and_title() -> None:
    line = playback_line(
        state="playing", position=83, duration=None, ranges=[], size=0, rate=16000.0, underruns=0,
        width=80, codec="MP3 128 kbit/s", samplerate=44100, live=True, title="Artist - Song",
    )  # fmt: skip
    assert line.startswith("playing   1:23 live Artist - Song ") and "[" not in line
    assert line.endswith("MP3 128 kbit/s" + " " + "15.6 KiB/s".rjust(12) + " underruns 0") and len(line) == 80
    long = playback_line(
        state="playing", position=83, duration=None, ranges=[], size=0, rate=None, underruns=0,
        width=60, live=True, title="x" * 200,
    )  # fmt: skip
    assert len(long) == 60 and "..." in long


def test_playback_line_says_offline_instead_of_the_rate() -> None:
    line = playback_line(
        state="playing", position=3, duration=225, ranges=[(0, 1000)], size=1000, rate=None, underruns=0,
        width=90, codec="FLAC 16-bit 44.1 kHz", samplerate=44100, offline=True,
    )  # fmt: skip
    assert line.endswith("] FLAC 16-bit 44.1 kHz offline (cache) underruns 0") and len(line) == 90


def test_playback_line_of_a_file_shows_its_title_before_the_bar() -> None:
    """Issue 27 row 8: "Artist - Title" from the tags, up to half the room of the bar."""
    line = playback_line(
        state="playing", position=3, duration=225, ranges=[], size=1000, rate=None, underruns=0,
        width=100, codec="MP3 192 kbit/s", samplerate=44100, title="Artist - Song",
    )  # fmt: skip
    assert line.startswith("playing   0:03 / 3:45 Artist - Song [|") and len(line) == 100
    assert "] MP3 192 kbit/s " in line
    long = playback_line(
        state="playing", position=3, duration=225, ranges=[], size=1000, rate=None, underruns=0,
        width=100, codec="MP3 192 kbit/s", samplerate=44100, title="x" * 200,
    )  # fmt: skip
    bar = long[long.index("[") + 1 : long.index("]")]
    title = long[len("playing   0:03 / 3:45 ") : long.index("[")]
    assert len(long) == 100 and title.endswith("... ") and len(bar) >= len(title) - 2


@pytest.mark.parametrize("text, seconds", [
    ("83", 83.0), ("83.5", 83.5), (".5", 0.5), ("1:23", 83.0), ("1:23.25", 83.25), ("0:59.9", 59.9),
    ("90:00", 5400.0), ("1:02:03", 3723.0), ("10:00:00", 36000.0), (" 1:23 ", 83.0),
])  # fmt: skip
def test_parse_time(text, seconds) -> None:
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-1", "+1", "nan", "inf", "1e3", "1:60", "1:60:00", "1::2", ":30", "1:2:3:4", "a"])
def test_parse_time_refuses(text) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text)


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_parse_time_reads_what_format_time_writes(hours, minutes, seconds) -> None:
    total = hours * 3600 + minutes * 60 + seconds
    assert parse_time(format_time(total)) == total


def test_playback_line_drops_the_bar_when_narrow() -> None:
    line = playback_line(
        state="paused", position=0, duration=None, ranges=[], size=0, rate=None, underruns=0, width=30
    )
    assert "[" not in line and line.startswith("paused") and len(line) <= 30


def test_download_line() -> None:
    line = download_line(done=512 * 1024, total=2**20, rate=256 * 1024, width=80)
    assert line.startswith(" 50% [") and line.endswith("512.0 KiB / 1.0 MiB 256.0 KiB/s ETA 0:02")
    assert len(line) == 80
    assert download_line(done=10, total=None, rate=None) == "  ?% 10 B - ETA --:--"


def test_rate_meter_uses_a_sliding_window() -> None:
    meter = RateMeter(window=2.0)
    assert meter.rate() is None
    meter.add(0.0, 0)
    assert meter.rate() is None
    meter.add(1.0, 1000)
    assert meter.rate() == 1000
    for t in range(2, 10):  # then the link speeds up to 5000 B/s
        meter.add(float(t), 1000 + 5000 * (t - 1))
    assert meter.rate() == pytest.approx(5000)


@pytest.mark.parametrize(
    "typed, commands, rest",
    [
        (" ", ["pause"], ""),
        ("q", ["quit"], ""),
        ("\x1b[C\x1b[D", ["forward", "back"], ""),
        ("x \x1b[F", ["pause"], ""),  # unknown keys and sequences (End) are ignored
        ("\x1b[A\x1b[B", ["forward_long", "back_long"], ""),
        ("90/*mnp", ["volume_down", "volume_up", "volume_down", "volume_up", "mute", "next", "previous"], ""),
        ("\x1b[", [], "\x1b["),  # an arrow split across reads is kept for the next one
        (" \x1b", ["pause"], "\x1b"),
        ("\x1bq", ["quit"], ""),  # a lone Escape is dropped
        ("[]", ["speed_down", "speed_up"], ""),
        ("\x1b[1;5C[", ["speed_down"], ""),  # Ctrl+right is one sequence, not "[" and "C"
        ("\x1b[1;5", [], "\x1b[1;5"),  # split across reads: kept
    ],
)
def test_parse_keys(typed, commands, rest) -> None:
    assert parse_keys(typed) == (commands, rest)


def test_parse_keys_completes_a_split_sequence() -> None:
    commands, rest = parse_keys("\x1b")
    assert parse_keys(rest + "[C") == (["forward"], "")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_writer_on_a_pipe_writes_whole_lines_at_most_once_per_interval() -> None:
    out, clock = io.StringIO(), Clock()
    writer = LineWriter(out, tty=False, interval=1.0, clock=clock)
    writer.update("a")
    clock.now = 0.5
    writer.update("b")  # too soon: dropped
    clock.now = 1.0
    writer.update("c")
    writer.update("d", force=True)
    writer.message("note")
    writer.finish("end")
    assert out.getvalue() == "a\nc\nd\nnote\nend\n"
    assert "\r" not in out.getvalue()


def test_line_writer_on_a_terminal_redraws_one_line() -> None:
    out = io.StringIO()
    writer = LineWriter(out, tty=True)
    writer.update("a")
    writer.update("b")
    writer.message("note")
    writer.finish("end")
    assert out.getvalue() == "\ra\x1b[K\rb\x1b[K\r\x1b[Knote\n\rend\x1b[K\n"


def test_line_writer_detects_a_pipe() -> None:
    assert LineWriter(io.StringIO()).tty is False
