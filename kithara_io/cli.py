"""The ``kithara-io`` command: ``play``, ``info``, ``get`` and ``cache ls|size|clear``.

Exit codes: 0 success; 2 bad usage, a source that cannot be opened (bad URL, HTTP error,
unreachable host) or an unsupported format; 1 any other failure (no output device, the
download failing part-way, a file that cannot be written); 130 interrupted (Ctrl-C).
Expected errors are one line, ``kithara-io: error: <message>``, on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import select
import stat
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO

from . import __version__, cli_live
from .api import open as open_stream
from .disk import DiskCache, EntryInfo
from .disk.store import default_path
from .errors import StreamError, describe_cause
from .playback import DECODERS, NoOutputDeviceError, PlaybackError, Player, Track, UnsupportedFormatError
from .progress import (
    LineWriter,
    RateMeter,
    download_line,
    format_bytes,
    format_time,
    parse_keys,
    playback_line,
)
from .retry import Retry, Timeout

PROG = "kithara-io"
SEEK_STEP = 10.0
VERIFY_BYTES = 64 * 1024
COPY_CHUNK = 1024 * 1024


class UsageError(Exception):
    """Bad command line (exit 2)."""


class SourceError(Exception):
    """The source cannot be opened or decoded (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {PROG} --help)")


def _seconds(text: str) -> float:
    """A finite number of seconds > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Play, inspect and download audio over HTTP.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def common(sub: argparse.ArgumentParser, many: bool = False) -> None:
        if many:
            sub.add_argument("source", metavar="URL_OR_PATH", nargs="+", help="http(s) URLs, file:// URLs or local paths, played in turn")
        else:
            sub.add_argument("source", metavar="URL_OR_PATH", help="http(s) URL, file:// URL or local path")
        sub.add_argument("--retries", type=int, default=5, metavar="N", help="attempts per request")
        sub.add_argument(
            "--timeout", type=_seconds, default=10.0, metavar="S", help="longest wait to connect or for data (s)"
        )
        sub.add_argument("--cache", action="store_true", help="keep the bytes in the disk cache; replay from it")
        sub.add_argument("--cache-dir", metavar="DIR", default=None, help="disk cache directory (implies --cache)")
        sub.add_argument(
            "--variant",
            default=None,
            metavar="auto|lowest|highest|N",
            help="HLS: the variant to read (N: index in the master playlist; get: default highest)",
        )

    play = commands.add_parser("play", help="play through the sound card, with a progress display")
    common(play, many=True)
    play.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="start position")
    play.add_argument("--decoder", choices=DECODERS, default=None, help="force a decoder (default: probe, soundfile first)")
    play.add_argument("--crossfade", type=float, default=0.0, metavar="SECONDS", help="crossfade between tracks")
    play.add_argument("--samplerate", type=int, default=None, metavar="HZ", help="output rate (default: the file's if the device takes it)")
    play.add_argument("--device", default=None, metavar="NAME|INDEX", help="output device (default: default)")
    play.add_argument("--volume", type=float, default=1.0, metavar="X", help="gain, 1.0 = unchanged")
    info = commands.add_parser("info", help="format, duration, size, range support, ETag")
    common(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    get = commands.add_parser("get", help="download to a file, resuming a partial one")
    common(get)
    get.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write ('-': standard output)")
    get.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="a live stream: stop recording after this long (default: Ctrl-C or its end)")
    cache = commands.add_parser("cache", help="list, measure or clear the disk cache")
    actions = cache.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    for name, text in [("ls", "one line per entry"), ("size", "total bytes"), ("clear", "remove entries not in use")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("--cache-dir", metavar="DIR", default=None, help="default: the user cache directory")
    actions.choices["ls"].add_argument("--json", action="store_true", help="print one JSON array")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    # Failures are reported once, as the one-line error below, not also by the engine's log.
    logging.getLogger("kithara_io").addHandler(logging.NullHandler())
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "retries", 1) < 1:
            raise UsageError("--retries must be >= 1")
        for option in ("volume", "start", "crossfade"):
            value = getattr(args, option, 0.0)
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"--{option} must be a number >= 0, not {value}")
        if getattr(args, "samplerate", None) is not None and args.samplerate < 1:
            raise UsageError("--samplerate must be >= 1")
        handler = {"play": _play, "info": _info, "get": _get, "cache": _cache}[args.command]
        return handler(args, sys.stdout)
    except UsageError as exc:
        return _fail(str(exc), 2)
    except SourceError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except NoOutputDeviceError as exc:
        return _fail(f"{_one_line(exc)} (see 'Playback and command line' in the README)", 1)
    except (StreamError, PlaybackError, OSError) as exc:
        return _fail(_one_line(exc), 1)
    except Exception as exc:  # noqa: BLE001 - a one-line error, never a traceback
        return _fail(f"unexpected failure: {describe_cause(exc)}", 1)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _options(args: argparse.Namespace) -> Dict[str, Any]:
    # --timeout bounds every wait: connecting, and each silence while waiting for data.
    timeout = Timeout(connect=args.timeout, read=args.timeout, open=args.timeout)
    options: Dict[str, Any] = {"retry": Retry(attempts=args.retries), "timeout": timeout}
    if args.cache_dir is not None:
        options["cache"] = _disk_cache(args.cache_dir)
    elif args.cache:
        options["cache"] = "disk"
    if getattr(args, "variant", None) is not None:
        options["variant"] = int(args.variant) if args.variant.isdigit() else args.variant
    return options


# -- info ------------------------------------------------------------------------------------
def describe(track: Track) -> Dict[str, Any]:
    """What ``info`` reports, as plain values."""
    decoder, stream = track.decoder, track.stream  # soundfile or PyAV: the same fields
    ranges, etag, last_modified = _http_details(stream)
    return {
        "source": track.name,
        "format": decoder.format,
        "format_name": decoder.format_info,
        "subtype": decoder.codec,
        "subtype_name": decoder.codec_info,
        "channels": decoder.channels,
        "samplerate": decoder.samplerate,
        "frames": decoder.frames,
        "duration": decoder.duration,
        "size": stream.size,
        "ranges": ranges,
        "etag": etag,
        "last_modified": last_modified,
    }


def _http_details(stream: Any) -> tuple:
    """(supports ranges, ETag, Last-Modified) of a stream; ETag and date None for a local file."""
    return stream.supports_ranges, stream.etag, stream.last_modified


def _info(args: argparse.Namespace, out: TextIO) -> int:
    stream = _open_source(args)
    if stream.hls is not None:
        with stream:
            _write_hls_info(describe_hls(stream), args.json, out)
        return 0
    if cli_live.is_live(stream):
        with stream:
            details = cli_live.live_details(stream)
        if args.json:
            out.write(json.dumps(details) + "\n")
        else:
            cli_live.write_live_info(details, out)
        return 0
    try:
        track = Track(stream)
    except (StreamError, ValueError, UnsupportedFormatError) as exc:
        raise SourceError(_one_line(exc)) from None
    try:
        details = describe(track)
    finally:
        track.close()
    if args.json:
        out.write(json.dumps(details) + "\n")
        return 0
    seconds = details["duration"]
    ranges = {True: "yes", False: "no (server ignores Range)", None: "n/a (local file)"}[details["ranges"]]
    rows = [
        ("source", details["source"]),
        ("format", f"{details['format']} ({details['format_name']})"),
        ("subtype", f"{details['subtype']} ({details['subtype_name']})"),
        ("channels", details["channels"]),
        ("sample rate", f"{details['samplerate']} Hz"),
        ("duration", f"{format_time(seconds)} ({seconds:.3f} s, {details['frames']} frames)"),
        ("size", f"{format_bytes(details['size'])} ({details['size']} bytes)"),
        ("ranges", ranges),
        ("etag", details["etag"] or "-"),
        ("last modified", details["last_modified"] or "-"),
    ]
    for name, value in rows:
        out.write(f"{name:<14}{value}\n")
    return 0


def describe_hls(stream: Any) -> Dict[str, Any]:
    """What ``info`` reports for an HLS stream."""
    hls = stream.hls
    segments = hls.segments
    return {
        "source": stream.name,
        "format": "HLS",
        "variants": [{"bandwidth": v.bandwidth, "codecs": v.codecs, "uri": v.uri} for v in hls.variants],
        "variant": hls.variant,
        "segments": len(segments),
        "duration": sum(s.duration for s in segments),
        "live": not stream.seekable(),
        "size": stream.size,
    }


def _write_hls_info(details: Dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(details) + "\n")
        return
    size = details["size"]
    rows = [
        ("source", details["source"]),
        ("format", "HLS" + (" (live)" if details["live"] else "")),
        ("duration", f"{format_time(details['duration'])} ({details['duration']:.3f} s, {details['segments']} segments)"),
        ("size", "unknown (live)" if size is None else f"{format_bytes(size)} ({size} bytes)"),
    ]
    for index, variant in enumerate(details["variants"]):
        chosen = " (chosen)" if index == details["variant"] else ""
        rows.append((f"variant {index}", f"{variant['bandwidth']} bit/s {variant['codecs'] or ''} {variant['uri']}{chosen}"))
    for name, value in rows:
        out.write(f"{name:<14}{value}\n")


# -- play ------------------------------------------------------------------------------------
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
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
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
        writer.message(_track_line(player.tracks[0]))
        player.play()
        if writer.tty and _stdin_is_terminal():
            writer.message("keys: space pause/resume, left/right -/+10 s, q quit")
            with _Keyboard(sys.stdin) as keyboard:
                _ui_loop(player, writer, keyboard)
        else:
            _ui_loop(player, writer, None)
        stream = player.stream
        ranges, size, fetched = stream.buffered(), _size(stream), stream.stats().bytes_fetched
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
    average = fetched / max(time.monotonic() - started, 1e-9) if fetched else None
    writer.finish(_status_line(status, ranges, size, average, writer))
    if status.error is not None:
        raise PlaybackError(f"playback failed: {_one_line(status.error)}")
    return 0


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
        writer.update(_status_line(status, stream.buffered(), _size(stream), rate, writer))


def _status_line(status: Any, ranges: Any, size: int, rate: Optional[float], writer: LineWriter) -> str:
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
    )


def _terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns - 1)


# -- get -------------------------------------------------------------------------------------
def _open_source(args: argparse.Namespace, **defaults: Any) -> Any:
    try:
        return open_stream(args.source, **{**defaults, **_options(args)})
    except (StreamError, ValueError) as exc:
        raise SourceError(_one_line(exc)) from None


def _get(args: argparse.Namespace, out: TextIO) -> int:
    to_stdout = args.output == "-"
    stream = _open_source(args, variant="highest")  # HLS: one variant, so the size holds
    if cli_live.is_live(stream):
        if args.duration is not None and args.duration <= 0:
            stream.close()
            raise UsageError("--duration must be > 0")
        with stream:
            cli_live.record(stream, args.output, args.duration, out, _terminal_width())
        return 0
    writer = LineWriter(sys.stderr if to_stdout else out)  # stdout carries the data then
    where = "standard output" if to_stdout else args.output
    with stream:
        size = stream.size
        regular = not to_stdout and _regular_or_missing(args.output)
        start = _resume_point(stream, args.output, size, writer) if regular else 0
        if start == size and regular and os.path.exists(args.output):
            writer.message(f"{args.output} is already complete ({size} bytes)")
            return 0
        started = time.monotonic()
        if to_stdout:
            target = sys.stdout.buffer
            done = _copy(stream, target, start, size, writer)
            target.flush()
        else:
            with open(args.output, "r+b" if start else "wb") as f:
                if regular:  # a device or pipe (/dev/null) cannot seek or be truncated
                    f.seek(start)
                    f.truncate(start)
                done = _copy(stream, f, start, size, writer)
        elapsed = max(time.monotonic() - started, 1e-9)
    if done != size:
        raise StreamError(f"download ended at {done} of {size} bytes; run again to resume", url=args.source)
    rate = (done - start) / elapsed
    width = _terminal_width() if writer.tty else 100
    writer.finish(download_line(done=done, total=size, rate=rate, width=width))
    writer.message(f"saved {where} ({format_bytes(size)}, {size} bytes)")
    return 0


def _regular_or_missing(path: str) -> bool:
    """A path that names a regular file or nothing yet: one that can be resumed."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


def _resume_point(stream: Any, path: str, size: int, writer: LineWriter) -> int:
    """Where to continue: the size of an existing partial file whose last bytes match the
    remote ones; 0 (start over) when there is none or it does not match."""
    try:
        existing = os.path.getsize(path)
    except FileNotFoundError:
        return 0
    if existing == 0:
        return 0
    if existing > size:
        writer.message(f"{path} is larger than the source ({existing} > {size} bytes): starting over")
        return 0
    overlap = min(existing, VERIFY_BYTES)
    stream.seek(existing - overlap)
    remote = stream.read(overlap)
    with open(path, "rb") as f:
        f.seek(existing - overlap)
        local = f.read(overlap)
    if remote != local:
        writer.message(f"{path} does not match the source: starting over")
        return 0
    writer.message(f"resuming {path} at {format_bytes(existing)} (last {format_bytes(overlap)} verified)")
    return existing


def _copy(stream: Any, f: Any, start: int, size: int, writer: LineWriter) -> int:
    """Copy ``[start, size)`` from the stream to ``f``; returns the end position reached."""
    meter = RateMeter()
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    stream.seek(start)
    pos = start
    last_draw = 0.0
    width = _terminal_width() if writer.tty else 100
    for _ in range((size - start) // COPY_CHUNK + 2):  # bounded: one pass per chunk, plus EOF
        n = stream.readinto(view)
        if not n:
            break
        f.write(view[:n])
        pos += n
        now = time.monotonic()
        meter.add(now, pos)
        if now - last_draw >= 0.1 or pos >= size:
            last_draw = now
            writer.update(download_line(done=pos, total=size, rate=meter.rate(), width=width))
        if pos >= size:
            break
    return pos


# -- cache -----------------------------------------------------------------------------------
def _disk_cache(directory: Optional[str]) -> DiskCache:
    where = directory or "the user cache directory"
    try:
        return DiskCache(directory)
    except FileExistsError:
        raise UsageError(f"--cache-dir {directory} is not a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot use {where}: {_one_line(exc)}") from None


def _cache(args: argparse.Namespace, out: TextIO) -> int:
    root = Path(args.cache_dir) if args.cache_dir else default_path()
    # Listing, measuring or clearing a cache that does not exist must not create it.
    cache = _disk_cache(args.cache_dir) if root.exists() else None
    entries = sorted(cache.entries(), key=lambda e: e.last_used, reverse=True) if cache else []
    if args.action == "ls":
        if args.json:
            out.write(json.dumps([_entry_json(e) for e in entries]) + "\n")
        elif not entries:
            out.write(f"cache is empty ({root})\n")
        else:
            out.writelines(_entry_line(e) + "\n" for e in entries)
    elif args.action == "size":
        total = sum(e.bytes_present for e in entries)
        out.write(f"{format_bytes(total)} ({total} bytes) in {_count(len(entries), 'entry', 'entries')}, {root}\n")
    else:
        removed = cache.clear() if cache else 0
        kept = len(cache.entries()) if cache else 0
        out.write(f"removed {_count(removed, 'entry', 'entries')}" + (f"; {kept} in use kept" if kept else "") + "\n")
    return 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _entry_json(entry: EntryInfo) -> Dict[str, Any]:
    return {
        "url": entry.url,
        "key": entry.key,
        "path": str(entry.path),
        "size": entry.size,
        "bytes_present": entry.bytes_present,
        "complete": entry.complete,
        "last_used": entry.last_used,
        "etag": entry.etag,
        "last_modified": entry.last_modified,
        "in_use": entry.in_use,
    }


def _entry_line(entry: EntryInfo) -> str:
    """``present / total  complete|partial  last use  URL``."""
    sizes = f"{format_bytes(entry.bytes_present):>10} / {format_bytes(entry.size):<10}"
    flag = "complete" if entry.complete else "partial "
    used = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.last_used))
    url = entry.url if entry.url is not None else f"(unreadable index: {entry.path})"
    return f"{sizes} {flag} {used}  {url}" + ("  [in use]" if entry.in_use else "")
