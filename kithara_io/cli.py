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
import os
import select
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

from . import __version__
from .api import open as open_stream
from .disk import DiskCache, EntryInfo
from .errors import StreamError
from .playback import NoOutputDeviceError, PlaybackError, Player, Track, UnsupportedFormatError
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Play, inspect and download audio over HTTP.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("source", metavar="URL_OR_PATH", help="http(s) URL, file:// URL or local path")
        sub.add_argument("--retries", type=int, default=5, metavar="N", help="attempts per request")
        sub.add_argument("--timeout", type=float, default=10.0, metavar="S", help="connect timeout (s)")
        sub.add_argument("--cache", action="store_true", help="keep the bytes in the disk cache; replay from it")
        sub.add_argument("--cache-dir", metavar="DIR", default=None, help="disk cache directory (implies --cache)")
        sub.add_argument(
            "--variant",
            default=None,
            metavar="auto|lowest|highest|N",
            help="HLS: the variant to read (N: index in the master playlist; get: default highest)",
        )

    play = commands.add_parser("play", help="play through the sound card, with a progress display")
    common(play)
    play.add_argument("--start", type=float, default=0.0, metavar="SECONDS", help="start position")
    play.add_argument("--device", default=None, metavar="NAME|INDEX", help="output device (default: default)")
    play.add_argument("--volume", type=float, default=1.0, metavar="X", help="gain, 1.0 = unchanged")
    info = commands.add_parser("info", help="format, duration, size, range support, ETag")
    common(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    get = commands.add_parser("get", help="download to a file, resuming a partial one")
    common(get)
    get.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write")
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
        if getattr(args, "volume", 1.0) < 0:
            raise UsageError("--volume must be >= 0")
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


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _options(args: argparse.Namespace) -> Dict[str, Any]:
    options: Dict[str, Any] = {"retry": Retry(attempts=args.retries), "timeout": Timeout(connect=args.timeout)}
    if args.cache_dir is not None:
        options["cache"] = _disk_cache(args.cache_dir)
    elif args.cache:
        options["cache"] = "disk"
    if getattr(args, "variant", None) is not None:
        options["variant"] = int(args.variant) if args.variant.isdigit() else args.variant
    return options


def _open_track(args: argparse.Namespace) -> Track:
    """The source, opened and decodable; SourceError (exit 2) if not."""
    try:
        return Track(args.source, _options(args))
    except (StreamError, ValueError, UnsupportedFormatError) as exc:
        raise SourceError(_one_line(exc)) from None


# -- info ------------------------------------------------------------------------------------
def describe(track: Track) -> Dict[str, Any]:
    """What ``info`` reports, as plain values."""
    sound, stream = track.sound, track.stream
    ranges, etag, last_modified = _http_details(stream)
    return {
        "source": track.name,
        "format": sound.format,
        "format_name": sound.format_info,
        "subtype": sound.subtype,
        "subtype_name": sound.subtype_info,
        "channels": sound.channels,
        "samplerate": sound.samplerate,
        "frames": sound.frames,
        "duration": sound.frames / sound.samplerate,
        "size": stream.size,
        "ranges": ranges,
        "etag": etag,
        "last_modified": last_modified,
    }


def _http_details(stream: Any) -> tuple:
    """(supports ranges, ETag, Last-Modified) of a stream; ETag and date None for a local file."""
    return stream.supports_ranges, stream.etag, stream.last_modified


def _info(args: argparse.Namespace, out: TextIO) -> int:
    try:
        track = _open_track(args)
    except SourceError:
        if _hls_info(args, out):  # soundfile cannot read it: an HLS playlist?
            return 0
        raise
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


def _hls_info(args: argparse.Namespace, out: TextIO) -> bool:
    try:
        stream = open_stream(args.source, **_options(args))
    except (StreamError, ValueError) as exc:
        raise SourceError(_one_line(exc)) from None
    with stream:
        if stream.hls is None:
            return False
        details = describe_hls(stream)
    if args.json:
        out.write(json.dumps(details) + "\n")
        return True
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
    return True


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
    try:
        player = Player(args.source, device=device, start=args.start, volume=args.volume, **_options(args))
    except (StreamError, ValueError, UnsupportedFormatError) as exc:
        raise SourceError(_one_line(exc)) from None
    writer = LineWriter(out)
    track = player.tracks[0]
    writer.message(
        f"{track.name}: {track.format}/{track.subtype}, {track.samplerate} Hz, {track.channels} ch, "
        f"{format_time(track.duration)}"
    )
    started = time.monotonic()
    try:
        player.play()
        if writer.tty and _stdin_is_terminal():
            writer.message("keys: space pause/resume, left/right -/+10 s, q quit")
            with _Keyboard(sys.stdin) as keyboard:
                _ui_loop(player, writer, keyboard)
        else:
            _ui_loop(player, writer, None)
        stream = player.stream
        ranges, size, fetched = stream.buffered(), stream.size, stream.stats().bytes_fetched
    finally:
        player.close()
    status = player.status()
    average = fetched / max(time.monotonic() - started, 1e-9) if fetched else None
    writer.finish(_status_line(status, ranges, size, average, writer))
    if status.error is not None:
        raise PlaybackError(f"playback failed: {_one_line(status.error)}")
    return 0


def _ui_loop(player: Player, writer: LineWriter, keyboard: Optional[_Keyboard]) -> None:
    """Redraw the status until playback ends or ``q``; each pass waits at most 0.1-0.25 s."""
    meter = RateMeter()
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
        stream = player.stream
        stats = stream.stats()
        meter.add(time.monotonic(), stats.bytes_fetched)
        rate = meter.rate() if stats.requests else None  # None: a local file
        writer.update(_status_line(player.status(), stream.buffered(), stream.size, rate, writer))


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
    )


def _terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns - 1)


# -- get -------------------------------------------------------------------------------------
def _get(args: argparse.Namespace, out: TextIO) -> int:
    options = _options(args)
    options.setdefault("variant", "highest")  # HLS: one variant, so the size holds
    try:
        stream = open_stream(args.source, **options)
    except (StreamError, ValueError) as exc:
        raise SourceError(_one_line(exc)) from None
    writer = LineWriter(out)
    with stream:
        size = stream.size
        start = _resume_point(stream, args.output, size, writer)
        if start == size:
            writer.message(f"{args.output} is already complete ({size} bytes)")
            return 0
        mode = "r+b" if start else "wb"
        started = time.monotonic()
        with open(args.output, mode) as f:
            f.seek(start)
            f.truncate(start)
            done = _copy(stream, f, start, size, writer)
        elapsed = max(time.monotonic() - started, 1e-9)
    if done != size:
        raise StreamError(f"download ended at {done} of {size} bytes; run again to resume", url=args.source)
    rate = (done - start) / elapsed
    width = _terminal_width() if writer.tty else 100
    writer.finish(download_line(done=done, total=size, rate=rate, width=width))
    writer.message(f"saved {args.output} ({format_bytes(size)}, {size} bytes)")
    return 0


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
    cache = _disk_cache(args.cache_dir)
    if args.action == "ls":
        entries = sorted(cache.entries(), key=lambda e: e.last_used, reverse=True)
        if args.json:
            out.write(json.dumps([_entry_json(e) for e in entries]) + "\n")
        else:
            out.writelines(_entry_line(e) + "\n" for e in entries)
    elif args.action == "size":
        entries = cache.entries()
        total = sum(e.bytes_present for e in entries)
        out.write(f"{format_bytes(total)} ({total} bytes) in {len(entries)} entries, {cache.path}\n")
    else:
        removed = cache.clear()
        kept = len(cache.entries())
        out.write(f"removed {removed} entries" + (f"; {kept} in use kept" if kept else "") + "\n")
    return 0


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
