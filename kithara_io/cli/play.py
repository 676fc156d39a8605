"""``kithara-io play``: play sources in turn, with a status line and, on a terminal, keys.

A playlist named ``.m3u``, ``.m3u8`` (not HLS) or ``.pls``, local or remote, is a queue: each
entry plays in turn (an entry that cannot be opened is skipped, saying so). A station's
playlist known by its Content-Type only opens its first working entry (``kithara_io.open``).
Sources are opened one ahead: the next while the current one plays (at Low priority, so it
preloads without slowing the current one), not all at once.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import sys
import time
from collections import deque
from typing import Any, Deque, List, Optional, TextIO, Tuple

from ..api import playlist_entries
from ..errors import StreamError
from ..playback import PlaybackError, Player, Track, UnsupportedFormatError
from ..playback.loudness import MODES, format_db
from ..playback.tempo import MAX_SPEED, MIN_SPEED
from .common import SourceError, UsageError, _one_line, _options, _terminal_width
from .devices import checked_device
from .progress import LineWriter, RateMeter, format_time, parse_keys, playback_line

SEEK_STEP = 10.0
LONG_SEEK_STEP = 60.0
VOLUME_STEP = 0.05  # of full scale (1.0), per key press
SPEED_STEP = 0.1
MAX_VOLUME = 2.0
NOTICE_SECONDS = 2.0  # how long a key's message shows in the status line
KEYS_HELP = (
    "keys: space pause/resume, left/right -/+10 s, down/up -/+60 s, 9/0 or / * volume, m mute, "
    "[/] speed -/+0.1, n/p next/previous, q quit"
)
OPEN_ERRORS = (StreamError, ValueError, UnsupportedFormatError, OSError)


def add_queue_arguments(play: argparse.ArgumentParser) -> None:
    """``play``'s queue and loudness options."""
    play.add_argument(
        "--replaygain",
        choices=MODES,
        default="off",
        help="apply the tracks' ReplayGain tags, not clipping past their peak (default: off)",
    )
    play.add_argument(
        "--shuffle", action="store_true", help="play the sources (and playlist entries) in a random order"
    )
    loop = play.add_mutually_exclusive_group()
    loop.add_argument("--loop", action="store_true", help="repeat the current track")
    loop.add_argument("--loop-playlist", action="store_true", help="repeat all the sources")


class _Keyboard:
    """Single key presses from a terminal (cbreak mode, restored on exit; Ctrl-C still works)."""

    def __init__(self, stream: TextIO) -> None:
        self._fd = stream.fileno()
        self._saved: Any = None
        self._pending = ""

    def __enter__(self) -> "_Keyboard":
        import termios
        import tty

        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def commands(self, timeout: float) -> List[str]:
        """Commands typed within ``timeout`` seconds (waits at most that long)."""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self._fd, 64).decode("utf-8", "ignore")
        commands, self._pending = parse_keys(self._pending + data)
        return commands


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, AttributeError):
        return False


def _play(args: argparse.Namespace, out: TextIO) -> int:
    device = checked_device(args.device)  # an unknown one: an error naming those there are
    options = _options(args)
    writer = LineWriter(out)
    if writer.tty:
        writer.update(f"connecting to {args.source[0]}…")
    sources = _expand(args.source, options, writer)
    if args.shuffle:
        random.shuffle(sources)
    repeat = "track" if args.loop else "playlist" if args.loop_playlist else "off"
    player, rest = _first_player(sources, writer, dict(
        device=device, start=args.start, volume=args.volume, decoder=args.decoder, crossfade=args.crossfade,
        samplerate=args.samplerate, repeat=repeat, speed=args.speed, replaygain=args.replaygain, **options,
    ))  # fmt: skip
    started = time.monotonic()
    queue = _Queue(player, deque(rest), writer, dict(decoder=args.decoder, **options))
    try:
        _check_start(args.start, player.tracks[0])
        if args.speed != 1.0 and player.tracks[0].duration is None:
            raise UsageError(f"--speed: {player.tracks[0].name} is a live stream; it plays at its own pace")
        writer.message(_track_line(player.tracks[0], args.replaygain))
        player.play()
        queue.fill()
        if writer.tty and _stdin_is_terminal():
            writer.message(KEYS_HELP)
            with _Keyboard(sys.stdin) as keyboard:
                _ui_loop(player, writer, keyboard, queue)
        else:
            _ui_loop(player, writer, None, queue)
        stream = player.stream
        ranges, size, stats = stream.buffered(), _size(stream), stream.stats()
    except BaseException:
        writer.end_line()  # an error or Ctrl-C's message starts on a line of its own
        raise
    finally:
        player.close()
    status = player.status()
    if isinstance(status.error, KeyboardInterrupt):
        # Ctrl-C can surface in the decoder thread instead of this one (a lock wait the
        # signal woke, seen with a live stream on JACK): still the user's Ctrl-C, and its
        # message starts on a line of its own too.
        writer.end_line()
        raise KeyboardInterrupt
    average = stats.bytes_fetched / max(time.monotonic() - started, 1e-9) if stats.bytes_fetched else None
    writer.finish(_status_line(status, ranges, size, average, writer, offline=stats.offline))
    if status.error is not None:
        raise PlaybackError(f"playback failed: {_one_line(status.error)}")
    return 0


def _check_start(start: float, track: Track) -> None:
    """``--start`` at or past the end of a track of known length is a usage error."""
    if start and track.duration is not None and start >= track.duration:
        length = f"{format_time(track.duration)}, {track.duration:.3f} s"
        raise UsageError(f"--start {start:g} s is past the end of {track.name} (duration {length})")


class _Queue:
    """The sources not opened yet: the next one is enqueued while the current one plays."""

    def __init__(self, player: Player, pending: Deque[str], writer: LineWriter, options: dict) -> None:
        self._player, self._pending, self._writer, self._options = player, pending, writer, options
        player.more_coming = bool(pending)

    def fill(self) -> None:
        """Enqueue until one track follows the current one (or nothing is left); an entry that
        cannot be opened is skipped, saying so."""
        player = self._player
        while self._pending and len(player.tracks) - 1 <= player.status().track:
            source = self._pending.popleft()
            try:
                player.enqueue(source, **self._options)
            except OPEN_ERRORS as exc:
                self._writer.message(f"skipping {source}: {_one_line(exc)}")
            except PlaybackError:  # playback is over (failed, or q): reported by the caller
                self._pending.clear()
        player.more_coming = bool(self._pending)


def _expand(sources: List[str], options: dict, writer: LineWriter) -> List[str]:
    """The sources with each playlist (by its name) replaced by its entries."""
    out: List[str] = []
    for source in sources:
        try:
            entries = playlist_entries(source, **options)
        except OPEN_ERRORS as exc:
            raise SourceError(_one_line(exc)) from None
        if entries is None:
            out.append(source)
        else:
            writer.message(f"{source}: {len(entries)} entries")
            out.extend(entries)
    return out


def _first_player(sources: List[str], writer: LineWriter, kwargs: dict) -> Tuple[Player, List[str]]:
    """A Player on the first source that opens, and the sources after it; with one source
    its failure is the error (exit 2), with several the failing ones are skipped."""
    for i, source in enumerate(sources):
        try:
            return Player(source, **kwargs), sources[i + 1 :]
        except OPEN_ERRORS as exc:
            if len(sources) == 1 or (isinstance(exc, ValueError) and not isinstance(exc, StreamError)):
                raise SourceError(_one_line(exc)) from None
            if i == len(sources) - 1:
                last = _one_line(exc)
                raise SourceError(f"none of the {len(sources)} sources could be played; the last: {last}") from None
            writer.message(f"skipping {source}: {_one_line(exc)}")
    raise SourceError("nothing to play")  # an empty playlist


def _track_line(track: Track, replaygain: str = "off") -> str:
    """``name: MP3 192 kbit/s, 3:45, replaygain -6.50 dB (track), Artist - Title`` (``live``
    when the duration is unknown; the gain when one applies; the title when the tags tell)."""
    length = "live" if track.duration is None else format_time(track.duration)
    line = f"{track.name}: {track.audio}, {length}"
    gain, _, which = track.tags.replaygain.chosen(replaygain)
    if gain is not None:
        factor = track.tags.replaygain.factor(replaygain)
        limited = f", limited to {format_db(factor)} by the peak" if abs(10 ** (gain / 20) - factor) > 1e-12 else ""
        line += f", replaygain {gain:+.2f} dB ({which}{limited})"
    title = track.tags.display_title
    return f"{line}, {title}" if title else line


def _size(stream: Any) -> int:
    try:
        return int(stream.size or 0)
    except (TypeError, ValueError, OSError):
        return 0  # a live stream has no length


def _ui_loop(player: Player, writer: LineWriter, keyboard: Optional[_Keyboard], queue: _Queue) -> None:
    """Redraw the status until playback ends or ``q``; each pass waits at most 0.1-0.25 s
    (plus the opening of the next source, when the current one has just started)."""
    meter = RateMeter()
    shown = 0
    title: Optional[str] = None
    notice: Tuple[str, float] = ("", 0.0)  # a key's message, shown in the status line until then
    while True:
        if keyboard is not None:
            for command in keyboard.commands(0.1):
                if command == "quit":
                    return
                if command == "next":
                    queue.fill()
                notice = (_apply(player, command), time.monotonic() + NOTICE_SECONDS)
            if player.wait(0):
                return
        elif player.wait(0.25):
            return
        queue.fill()
        status = player.status()
        if status.track != shown:  # the next track started (gapless or crossfaded)
            shown = status.track
            writer.message(_track_line(player.tracks[shown], player.replaygain))
        if status.title != title:  # a radio station's next song
            title = status.title
            if title and not writer.tty and status.duration is None:  # a file's: in its track line
                writer.message(f"now playing: {title}")
        stream = player.stream
        stats = stream.stats()
        meter.add(time.monotonic(), stats.bytes_fetched)
        rate = meter.rate() if stats.requests else None  # None: a local file
        text = notice[0] if time.monotonic() < notice[1] else ""
        if player.speed != 1.0 and not text.startswith("speed"):
            text = f"{player.speed:g}x" + (f"  {text}" if text else "")  # while not at normal speed
        writer.update(_status_line(status, stream.buffered(), _size(stream), rate, writer, text, stats.offline))


def _apply(player: Player, command: str) -> str:
    """Do what a key asks; the message the status line shows for a while ("" for none)."""
    if command == "pause":
        player.toggle_pause()
        return ""
    if command in ("forward", "back", "forward_long", "back_long"):
        step = SEEK_STEP if command in ("forward", "back") else LONG_SEEK_STEP
        step = step if command.startswith("forward") else -step
        if player.duration is None:
            return "cannot seek: live stream"
        return f"seek {step:+.0f} s" if player.seek_relative(step) else "cannot seek now"
    if command in ("volume_up", "volume_down"):
        step = VOLUME_STEP if command == "volume_up" else -VOLUME_STEP
        player.volume = min(MAX_VOLUME, max(0.0, round(player.volume + step, 2)))
        player.muted = False
        return _volume_text(player.volume)
    if command == "mute":
        player.muted = not player.muted
        return "muted" if player.muted else _volume_text(player.volume)
    if command in ("speed_up", "speed_down"):
        return _change_speed(player, SPEED_STEP if command == "speed_up" else -SPEED_STEP)
    if command == "next":
        return "" if player.next() else "last track: nothing follows"
    if command == "previous":
        return "" if player.previous() else "cannot go back now"
    return ""


def _change_speed(player: Player, step: float) -> str:
    """``[``/``]``: the speed by ``step``, within 0.5-3.0; the status line's message."""
    if player.duration is None:
        return "cannot change speed: live stream"
    speed = min(MAX_SPEED, max(MIN_SPEED, round(player.speed + step, 2)))
    try:
        player.speed = speed
    except PlaybackError:  # the next track, a live stream, began meanwhile
        return "cannot change speed: live stream"
    return f"speed {player.speed:g}x"


def _volume_text(volume: float) -> str:
    return f"volume {volume * 100:.0f}% ({format_db(volume)})"


def _status_line(
    status: Any,
    ranges: Any,
    size: int,
    rate: Optional[float],
    writer: LineWriter,
    notice: str = "",
    offline: bool = False,
) -> str:
    width = _terminal_width() if writer.tty else 100
    if notice:  # fitted before the notice, which ends the line
        width = max(20, width - len(notice) - 2)
    line = playback_line(
        state=status.state.value,
        position=status.position,
        duration=status.duration,
        ranges=ranges,
        size=size,
        rate=rate,
        underruns=status.underruns,
        width=width,
        codec=status.audio,
        samplerate=status.samplerate,
        output_rate=status.output_samplerate,
        live=status.duration is None,
        title=status.title,
        offline=offline,
    )
    return f"{line}  {notice}" if notice else line
