"""``kithara-io play``: play sources in turn, with a status line and, on a terminal, keys."""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from typing import Any, List, Optional, TextIO

from .cli_common import SourceError, UsageError, _one_line, _options, _terminal_width
from .cli_devices import checked_device
from .errors import StreamError
from .playback import PlaybackError, Player, Track, UnsupportedFormatError
from .progress import LineWriter, RateMeter, format_time, parse_keys, playback_line

SEEK_STEP = 10.0


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
    sources: List[str] = args.source
    options = _options(args)
    try:
        player = Player(
            sources[0], device=device, start=args.start, volume=args.volume, decoder=args.decoder,
            crossfade=args.crossfade, samplerate=args.samplerate, **options,
        )  # fmt: skip
    except (StreamError, ValueError, UnsupportedFormatError) as exc:
        raise SourceError(_one_line(exc)) from None
    writer = LineWriter(out)
    started = time.monotonic()
    try:
        try:
            for source in sources[1:]:  # opened now, at Low priority: they preload
                player.enqueue(source, decoder=args.decoder, **options)
        except (StreamError, ValueError, UnsupportedFormatError) as exc:
            raise SourceError(_one_line(exc)) from None
        _check_start(args.start, player.tracks[0])
        writer.message(_track_line(player.tracks[0]))
        player.play()
        if writer.tty and _stdin_is_terminal():
            writer.message("keys: space pause/resume, left/right -/+10 s, q quit")
            with _Keyboard(sys.stdin) as keyboard:
                _ui_loop(player, writer, keyboard)
        else:
            _ui_loop(player, writer, None)
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
        # signal woke, seen with a live stream on JACK): still the user's Ctrl-C.
        raise KeyboardInterrupt
    average = stats.bytes_fetched / max(time.monotonic() - started, 1e-9) if stats.bytes_fetched else None
    writer.finish(_status_line(status, ranges, size, average, writer, stats.offline))
    if status.error is not None:
        raise PlaybackError(f"playback failed: {_one_line(status.error)}")
    return 0


def _check_start(start: float, track: Track) -> None:
    """``--start`` at or past the end of a track of known length is a usage error."""
    if start and track.duration is not None and start >= track.duration:
        length = f"{format_time(track.duration)}, {track.duration:.3f} s"
        raise UsageError(f"--start {start:g} s is past the end of {track.name} (duration {length})")


def _track_line(track: Track) -> str:
    """``name: FORMAT/CODEC, 44100 Hz, 2 ch, 3:45`` (``live`` when the duration is unknown)."""
    length = "live" if track.duration is None else format_time(track.duration)
    return f"{track.name}: {track.format}/{track.subtype}, {track.samplerate} Hz, {track.channels} ch, {length}"


def _size(stream: Any) -> int:
    try:
        return int(stream.size or 0)
    except (TypeError, ValueError, OSError):
        return 0  # a live stream has no length


def _ui_loop(player: Player, writer: LineWriter, keyboard: Optional[_Keyboard]) -> None:
    """Redraw the status until playback ends or ``q``; each pass waits at most 0.1-0.25 s."""
    meter = RateMeter()
    shown = 0
    title: Optional[str] = None
    while True:
        if keyboard is not None:
            for command in keyboard.commands(0.1):
                if command == "quit":
                    return
                if command == "pause":
                    player.toggle_pause()
                elif command in ("forward", "back"):
                    step = SEEK_STEP if command == "forward" else -SEEK_STEP
                    player.seek_relative(step)
                    writer.message(f"seek {step:+.0f} s")
            if player.wait(0):
                return
        elif player.wait(0.25):
            return
        status = player.status()
        if status.track != shown:  # the next track started (gapless or crossfaded)
            shown = status.track
            writer.message(_track_line(player.tracks[shown]))
        if status.title != title:  # a radio station's next song
            title = status.title
            if title and not writer.tty:  # on a terminal the status line shows it
                writer.message(f"now playing: {title}")
        stream = player.stream
        stats = stream.stats()
        meter.add(time.monotonic(), stats.bytes_fetched)
        rate = meter.rate() if stats.requests else None  # None: a local file
        writer.update(_status_line(status, stream.buffered(), _size(stream), rate, writer, stats.offline))


def _status_line(
    status: Any, ranges: Any, size: int, rate: Optional[float], writer: LineWriter, offline: bool = False
) -> str:
    return playback_line(
        state=status.state.value,
        position=status.position,
        duration=status.duration,
        ranges=ranges,
        size=size,
        rate=rate,
        underruns=status.underruns,
        width=_terminal_width() if writer.tty else 100,
        codec=status.codec,
        samplerate=status.samplerate,
        output_rate=status.output_samplerate,
        live=status.duration is None,
        title=status.title,
        offline=offline,
    )
