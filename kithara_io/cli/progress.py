"""Progress display: pure formatting functions, a rate meter and a line writer.

Everything that decides *what* is shown is a pure function of plain values (unit-tested);
:class:`LineWriter` only decides *how*: one line redrawn in place on a terminal, plain lines
at a bounded rate when the output is a pipe or a file.
"""

from __future__ import annotations

import collections
import re
import time
from typing import Callable, Deque, List, Optional, Sequence, TextIO, Tuple

from ..playback.naming import format_khz, rate_change

Ranges = Sequence[Tuple[int, int]]

FULL, PARTIAL, EMPTY, CURSOR = "#", "+", ".", "|"

#: What the bar's characters mean, for ``--help`` and the CLI guide (docs/guides/cli.md).
BAR_LEGEND = f"bar: {FULL} downloaded  {PARTIAL} partly  {EMPTY} not yet  {CURSOR} play position (cells: equal parts)"

OFFLINE = "offline (cache)"  # shown instead of the download rate when the server was not reached


def format_time(seconds: Optional[float]) -> str:
    """``m:ss`` (``h:mm:ss`` from one hour on); ``--:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


_TIME = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)")


def parse_time(text: str) -> float:
    """Seconds from ``83``, ``83.5``, ``1:23``, ``1:23.5`` or ``1:02:03`` (``h:mm:ss``).
    ValueError for anything else: a sign, ``nan``, minutes or seconds after a colon past 59."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a time: {text!r} (seconds, m:ss or h:mm:ss)")
    hours, minutes, seconds = match.groups()
    if (minutes is not None and float(seconds) >= 60) or (hours is not None and int(minutes) >= 60):
        raise ValueError(f"not a time: {text!r} (minutes and seconds after a colon are 0-59)")
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)


def format_bytes(count: Optional[float]) -> str:
    """Binary units: ``512 B``, ``1.5 KiB``, ``3.2 MiB``, ``1.1 GiB``."""
    if count is None:
        return "?"
    value = float(count)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: Optional[float]) -> str:
    """``1.2 MiB/s``; ``-`` when unknown."""
    if bytes_per_second is None:
        return "-"
    return format_bytes(bytes_per_second) + "/s"


def range_bar(ranges: Ranges, size: int, width: int, cursor: Optional[float] = None) -> str:
    """``width`` cells showing which parts of a ``size``-byte file are in ``ranges``.

    A cell is ``#`` when fully covered, ``+`` when partly, ``.`` when not. ``cursor`` (a
    fraction 0..1) marks the playback position with ``|``.
    """
    if width <= 0:
        return ""
    covered = [0.0] * width
    if size > 0:
        cell = size / width
        for start, end in ranges:
            start, end = max(0, start), min(size, end)
            if end <= start:
                continue
            first, last = int(start / cell), min(width - 1, int((end - 1) / cell))
            for i in range(first, last + 1):
                lo, hi = i * cell, (i + 1) * cell
                covered[i] += max(0.0, min(hi, end) - max(lo, start)) / cell
    cells = [FULL if c >= 0.999 else PARTIAL if c > 0 else EMPTY for c in covered]
    if cursor is not None:
        cells[min(width - 1, max(0, int(cursor * width)))] = CURSOR
    return "".join(cells)


RATE_WIDTH = len("1023.9 KiB/s")  # the download rate is padded to this: the bar keeps its width


def audio_format(codec: Optional[str], samplerate: Optional[int], output_rate: Optional[int]) -> str:
    """The format in user words (``codec``: ``MP3 192 kbit/s``), with ``44.1 -> 48 kHz`` when
    the output runs at another rate; the rate alone (``44.1 kHz``) when no words are known."""
    if not codec:
        return format_khz(samplerate) if samplerate else ""
    return rate_change(codec, samplerate or 0, output_rate)


def playback_line(
    *,
    state: str,
    position: float,
    duration: Optional[float],
    ranges: Ranges,
    size: int,
    rate: Optional[float],
    underruns: int,
    width: int = 80,
    codec: Optional[str] = None,
    samplerate: Optional[int] = None,
    output_rate: Optional[int] = None,
    live: bool = False,
    title: Optional[str] = None,
    offline: bool = False,
) -> str:
    """``playing 0:12 / 3:45 Artist - Title [##|##....] AAC 256 kbit/s   1.2 MiB/s underruns 0``,
    fitted to ``width``; the bar's width depends on ``width`` and the track's ``title`` only
    (every other field has a fixed width while playing). The title gets at most half the room
    of the bar. A ``live`` stream shows the elapsed time and its ``title`` instead of a
    duration and a bar. ``offline``: a disk cache serves the stream without having reached the
    server; ``offline (cache)`` replaces the download rate. ``codec``: the format in user
    words (``MP3 192 kbit/s``, see :mod:`.playback.naming`)."""
    fmt = audio_format(codec, samplerate, output_rate)
    tail = f" {fmt}" if fmt else ""
    tail += f" {OFFLINE if offline else format_rate(rate):>{RATE_WIDTH}} underruns {underruns}"
    if live:
        head = f"{state:<9} {format_time(position)} live"
        room = width - len(head) - len(tail)
        name = f" {title}" if title else ""
        if len(name) > room:
            name = name[: max(0, room - 3)] + "..." if room > 4 else ""
        return (head + name + " " * max(0, room - len(name)) + tail)[:width]
    total = format_time(duration)
    head = f"{state:<9} {format_time(position):>{len(total)}} / {total} "
    room = width - len(head) - len(tail) - 2
    if title and room >= 24:  # the title, up to half the room; the bar keeps the rest
        name = title if len(title) + 1 <= room // 2 else title[: room // 2 - 4] + "..."
        head += name + " "
        room -= len(name) + 1
    if room < 8:  # too narrow for a useful bar: drop it
        return (head.rstrip() + tail)[:width]
    cursor = position / duration if duration else None
    return f"{head}[{range_bar(ranges, size, room, cursor)}]{tail}"


def download_line(
    *, done: int, total: Optional[int], rate: Optional[float], ranges: Ranges = (), width: int = 80
) -> str:
    """`` 45% [#####.....] 1.1 MiB / 2.5 MiB 800.0 KiB/s ETA 0:02``, fitted to ``width``."""
    if total:
        percent = f"{100 * done // total:3d}%"
        eta = format_time((total - done) / rate) if rate else "--:--"
        amounts = f"{format_bytes(done)} / {format_bytes(total)}"
    else:
        percent, eta, amounts = "  ?%", "--:--", format_bytes(done)
    tail = f" {amounts} {format_rate(rate)} ETA {eta}"
    room = width - len(percent) - len(tail) - 3
    if room < 8 or not total:
        return (percent + tail)[:width]
    bar = range_bar(list(ranges) or [(0, done)], total, room)
    return f"{percent} [{bar}]{tail}"


class RateMeter:
    """Bytes per second over a sliding window of ``(time, total_bytes)`` samples."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._samples: Deque[Tuple[float, float]] = collections.deque()

    def add(self, now: float, total: float) -> None:
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> Optional[float]:
        """None until two samples at different times exist."""
        if len(self._samples) < 2:
            return None
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (b1 - b0) / (t1 - t0))


#: What a key press means while playing.
KEYS = {
    " ": "pause", "q": "quit", "Q": "quit", "\x1b[C": "forward", "\x1b[D": "back", "\x1b[A": "forward_long",
    "\x1b[B": "back_long", "9": "volume_down", "/": "volume_down", "0": "volume_up", "*": "volume_up",
    "m": "mute", "n": "next", "p": "previous", "[": "speed_down", "]": "speed_up",
}  # fmt: skip


def parse_keys(buffer: str) -> Tuple[List[str], str]:
    """Commands in the typed characters, and the unfinished escape sequence to keep.

    Space is ``pause``, ``q`` is ``quit``, the right/left arrows (``ESC [ C``/``ESC [ D``) are
    ``forward``/``back``, up/down ``forward_long``/``back_long``, the others as in ``KEYS``;
    anything else is ignored, a whole escape sequence at a time (``ESC [ 1 ; 5 C``, Ctrl+right,
    is not ``[`` and ``C``).
    """
    commands: List[str] = []
    i = 0
    while i < len(buffer):
        if buffer[i] != "\x1b":
            if buffer[i] in KEYS:
                commands.append(KEYS[buffer[i]])
            i += 1
            continue
        if buffer[i + 1 : i + 2] not in ("[", ""):
            i += 1  # a lone Escape: dropped
            continue
        end = _sequence_end(buffer, i)
        if end is None:  # wait for the rest of the sequence (unless it is not one: too long)
            return commands, buffer[i:] if len(buffer) - i <= MAX_SEQUENCE else ""
        if buffer[i:end] in KEYS:
            commands.append(KEYS[buffer[i:end]])
        i = end
    return commands, ""


MAX_SEQUENCE = 16


def _sequence_end(buffer: str, start: int) -> Optional[int]:
    """The end of the control sequence ``ESC [ parameters intermediates final`` at ``start``
    (ECMA-48), None when it is not complete yet."""
    j = start + 2
    while j < len(buffer) and "\x20" <= buffer[j] <= "\x3f":  # parameter and intermediate bytes
        j += 1
    return j + 1 if j < len(buffer) else None  # after the final byte (anything else ends it too)


class LineWriter:
    """Writes a status line: redrawn in place on a terminal, else one line per ``interval``."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: Optional[bool] = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self.tty = _isatty(out) if tty is None else tty
        self._interval = interval
        self._clock = clock
        self._last: Optional[float] = None
        self._drawn = False

    def update(self, line: str, *, force: bool = False) -> None:
        """Show ``line``; on a pipe only if ``force`` or ``interval`` passed since the last one."""
        if self.tty:
            # Drawn before the write returns: a Ctrl-C raised right after the bytes went out
            # (line buffering flushes at "\r") must still find the line to end.
            self._drawn = True
            self._out.write("\r" + line + "\x1b[K")
        else:
            now = self._clock()
            if not force and self._last is not None and now - self._last < self._interval:
                return
            self._last = now
            self._out.write(line + "\n")
        self._out.flush()

    def message(self, text: str) -> None:
        """A line of its own (the status line is redrawn by the next ``update``)."""
        if self.tty and self._drawn:
            self._out.write("\r\x1b[K")
            self._drawn = False
        self._out.write(text + "\n")
        self._out.flush()

    def end_line(self) -> None:
        """End a status line drawn in place, so what is written next starts a line."""
        if self.tty and self._drawn:
            self._out.write("\n")
            self._out.flush()
            self._drawn = False

    def finish(self, line: str) -> None:
        """The final status line, always written, ending with a newline."""
        if self.tty:
            self._out.write("\r" + line + "\x1b[K\n")
            self._drawn = False
        else:
            self._out.write(line + "\n")
        self._out.flush()


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
