"""The ``kithara-io`` command: ``play``, ``info``, ``get``, ``devices``, ``cache ls|size|clear`` and ``trace``.

Exit codes: 0 success; 2 bad usage, a source that cannot be opened (bad URL, HTTP error,
unreachable host) or an unsupported format; 1 any other failure (no output device, the
download failing part-way, a file that cannot be written); 130 interrupted (Ctrl-C).
Expected errors are one line, ``kithara-io: error: <message>``, on stderr. ``-v``/``-vv``
show the library's log on stderr (``log``), ``-q`` only errors.

This module parses the command line, maps errors to exit codes and runs ``info``; ``play``,
``get``, ``devices``, ``cache`` and ``trace`` live in ``play``, ``get``, ``devices``,
``cache`` and ``trace``, what they share in ``common``, and live streams' ``info``/``get`` in ``live``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO

from .. import __version__
from ..errors import StreamError, describe_cause
from ..playback import DECODERS, NoOutputDeviceError, PlaybackError, Track, UnsupportedFormatError
from ..playback.loudness import parse_volume
from ..playback.naming import format_kbits
from ..playback.tempo import MAX_SPEED, MIN_SPEED, check_speed
from . import live as cli_live
from . import trace as cli_trace
from .cache import _cache
from .common import DISCARD, SourceError, UsageError, _one_line, _open_source
from .devices import _devices
from .get import COPY_CHUNK, VERIFY_BYTES, _get
from .log import library_log
from .play import SEEK_STEP, _play, add_queue_arguments
from .progress import BAR_LEGEND, format_bytes, format_time, parse_time

# The public names, also those that moved to the per-command modules.
__all__ = [
    "COPY_CHUNK",
    "PROG",
    "SEEK_STEP",
    "VERIFY_BYTES",
    "SourceError",
    "UsageError",
    "build_parser",
    "describe",
    "describe_hls",
    "main",
]

PROG = "kithara-io"

EXAMPLES = f"""\
examples:
  {PROG} play https://example.org/a.flac     play: status line, keys
  {PROG} play --start 1:23 a.mp3 b.ogg       from 1 min 23 s, then b.ogg
  {PROG} play --device loopback URL          another output (see: devices)
  {PROG} play --speed 1.5 talk.mp3           faster, the pitch kept ([ ]: -/+0.1)
  {PROG} play --replaygain track a.mp3       loudness from the tags
  {PROG} play --volume -6dB URL              6 dB quieter (or a factor: 0.5)
  {PROG} info --json URL                     format, duration, size as JSON
  {PROG} get https://example.org/a.flac      save as ./a.flac; again: resume
  {PROG} get -o music/ URL                   into a directory (-f: overwrite)
  {PROG} -v play --cache URL                 show retries, redirects, offline
  {PROG} trace --seek 50% URL -o t.svg       draw the fetch timeline of a read

status line:  playing 0:12 / 3:45 Artist - Title [###|+...] FLAC 16-bit 44.1 kHz  1.2 MiB/s underruns 0
  {BAR_LEGEND}
  "offline (cache)" instead of the rate: the disk cache's copy, server unreachable
"""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

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


def _time(text: str) -> float:
    """A position: seconds, m:ss or h:mm:ss (argparse type)."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _speed(text: str) -> float:
    """A playback speed, 0.5-3.0 (argparse type)."""
    try:
        return check_speed(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from {MIN_SPEED} to {MAX_SPEED}, not {text!r}") from None


def _volume(text: str) -> float:
    """A factor or decibels (argparse type)."""
    try:
        return parse_volume(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _negative_values(argv: Sequence[str]) -> List[str]:
    """``--volume -6dB`` as ``--volume=-6dB``: argparse takes ``-6dB`` for an option."""
    out: List[str] = []
    for arg in argv:
        if out and out[-1] == "--volume" and arg.startswith("-") and arg[1:2].isdigit():
            out[-1] = f"--volume={arg}"
        else:
            out.append(arg)
    return out


def _verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    """-v/-q, before or after the command (after it, a default of SUPPRESS keeps the one before)."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="show the library's log on stderr (retries, redirects, offline); -vv: debug",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress or messages, only errors"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Play, inspect and download audio over HTTP.", epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _verbosity(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def common(sub: argparse.ArgumentParser, many: bool = False) -> None:
        _verbosity(sub, argparse.SUPPRESS)
        if many:
            sub.add_argument(
                "source",
                metavar="URL_OR_PATH",
                nargs="*",
                help="http(s) URLs, file:// URLs or local paths, played in turn",
            )
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

    play = commands.add_parser("play", help="play through the sound card, with a progress display", epilog=EXAMPLES)
    common(play, many=True)
    play.add_argument(
        "--start", type=_time, default=0.0, metavar="TIME", help="start position: seconds, m:ss or h:mm:ss (1:23)"
    )
    play.add_argument(
        "--decoder", choices=DECODERS, default=None, help="force a decoder (default: probe, soundfile first)"
    )
    play.add_argument("--crossfade", type=float, default=0.0, metavar="SECONDS", help="crossfade between tracks")
    play.add_argument(
        "--speed", type=_speed, default=1.0, metavar="X", help="tempo 0.5-3.0, the pitch kept (keys [ and ]: -/+0.1)"
    )
    play.add_argument(
        "--samplerate",
        type=int,
        default=None,
        metavar="HZ",
        help="output rate (default: the file's if the device takes it)",
    )
    play.add_argument("--device", default=None, metavar="NAME|INDEX", help="output device (default: default)")
    play.add_argument("--list-devices", action="store_true", help="list the output devices and exit")
    play.add_argument(
        "--volume",
        type=_volume,
        default=1.0,
        metavar="X|dB",
        help="gain: a factor (1.0 = unchanged, 0.5) or decibels (-6dB)",
    )
    add_queue_arguments(play)
    info = commands.add_parser("info", help="format, duration, size, range support, ETag")
    common(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--decoder", choices=DECODERS, default=None, help="force a decoder (default: probe)")
    get = commands.add_parser("get", help="download to a file, resuming a partial one", epilog=EXAMPLES)
    common(get)
    get.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FILE|DIR/",
        help="where to write ('-': standard output; a directory: into it; "
        "default: the name in the URL or Content-Disposition, in the current directory)",
    )
    get.add_argument("-f", "--force", action="store_true", help="overwrite an existing file that is not this source")
    get.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a live stream: stop recording after this long (default: Ctrl-C or its end)",
    )
    devices = commands.add_parser("devices", help="list the audio output devices (* marks the default)")
    _verbosity(devices, argparse.SUPPRESS)
    devices.add_argument("--json", action="store_true", help="print one JSON array")
    cache = commands.add_parser("cache", help="list, measure or clear the disk cache")
    actions = cache.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    for name, text in [("ls", "one line per entry"), ("size", "total bytes"), ("clear", "remove entries not in use")]:
        action = actions.add_parser(name, help=text)
        action.add_argument("--cache-dir", metavar="DIR", default=None, help="default: the user cache directory")
    actions.choices["ls"].add_argument("--json", action="store_true", help="print one JSON array")
    trace = commands.add_parser("trace", help="draw a fetch timeline (SVG or HTML) of a scripted read")
    common(trace)
    cli_trace.add_arguments(trace)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = build_parser().parse_args(_negative_values(sys.argv[1:] if argv is None else argv))
        if args.verbose and args.quiet:
            raise UsageError("-v and -q exclude each other")
        if getattr(args, "retries", 1) < 1:
            raise UsageError("--retries must be >= 1")
        for option in ("volume", "start", "crossfade"):
            value = getattr(args, option, 0.0)
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"--{option} must be a number >= 0, not {value}")
        if getattr(args, "samplerate", None) is not None and args.samplerate < 1:
            raise UsageError("--samplerate must be >= 1")
        if args.command == "play" and args.list_devices:
            return _devices(args, sys.stdout)
        if args.command == "play" and not args.source:
            raise UsageError("the following arguments are required: URL_OR_PATH")
        handler = {
            "play": _play,
            "info": _info,
            "get": _get,
            "devices": _devices,
            "cache": _cache,
            "trace": cli_trace._trace,
        }[args.command]
        out = DISCARD if args.quiet and args.command in ("play", "get", "trace") else sys.stdout
        with library_log(PROG, args.verbose or 0):
            return handler(args, out)
    except UsageError as exc:
        return _fail(str(exc), 2)
    except SourceError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt as exc:
        return _fail(str(exc) or "interrupted", 130)
    except NoOutputDeviceError as exc:
        return _fail(f"{_one_line(exc)} (see 'Without a sound card' in docs/guides/playing.md)", 1)
    except (StreamError, PlaybackError, OSError) as exc:
        return _fail(_one_line(exc), 1)
    except Exception as exc:  # noqa: BLE001 - a one-line error, never a traceback
        return _fail(f"unexpected failure: {describe_cause(exc)}", 1)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


# -- info (kept here: it looks up ``Track`` in this module, which tests replace) -------------
def describe(track: Track) -> Dict[str, Any]:
    """What ``info`` reports, as plain values."""
    decoder, stream = track.decoder, track.stream  # soundfile or PyAV: the same fields
    ranges, etag, last_modified = _http_details(stream)
    tags = track.tags
    return {
        "source": track.name,
        # In user words, the same whichever decoder read the file:
        "audio": track.audio,
        "codec": track.codec_words.name,
        "container": track.container,
        "layout": track.layout,
        "bits": track.bits,
        "bitrate": track.bitrate,
        "artist": tags.artist,
        "title": tags.title,
        "album": tags.album,
        "replaygain": tags.replaygain.as_dict(),
        # The decoder's own names:
        "decoder": track.decoder_name,
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
    if not stream.seekable():  # a station or a pipe (a file without a length decodes as a file)
        with stream:
            details = cli_live.live_details(stream)
        if args.json:
            out.write(json.dumps(details) + "\n")
        else:
            cli_live.write_live_info(details, out)
        return 0
    try:
        track = Track(stream, decoder=args.decoder)
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
        ("audio", details["audio"]),
        ("container", details["container"]),
        ("codec", details["codec"]),
        ("channels", f"{details['channels']} ({details['layout']})"),
        ("sample rate", f"{details['samplerate']} Hz"),
        ("bit depth", f"{details['bits']}-bit" if details["bits"] else "-"),
        ("bitrate", format_kbits(details["bitrate"]) or "-"),
        ("artist", details["artist"] or "-"),
        ("title", details["title"] or "-"),
        ("album", details["album"] or "-"),
        ("replaygain", _replaygain_text(details["replaygain"])),
        ("duration", f"{format_time(seconds)} ({seconds:.3f} s, {details['frames']} frames)"),
        ("size", f"{format_bytes(details['size'])} ({details['size']} bytes)"),
        ("ranges", ranges),
        ("etag", details["etag"] or "-"),
        ("last modified", details["last_modified"] or "-"),
        ("decoder", f"{details['decoder']} ({details['format']}/{details['subtype']})"),
    ]
    for name, value in rows:
        out.write(f"{name:<14}{value}\n")
    return 0


def _replaygain_text(gains: Dict[str, Any]) -> str:
    """``track -6.50 dB (peak 0.988), album -7.00 dB`` or ``-``."""
    parts = []
    for which in ("track", "album"):
        gain, peak = gains[f"{which}_gain"], gains[f"{which}_peak"]
        if gain is not None:
            parts.append(f"{which} {gain:+.2f} dB" + (f" (peak {peak:.6g})" if peak is not None else ""))
    return ", ".join(parts) or "-"


def describe_hls(stream: Any) -> Dict[str, Any]:
    """What ``info`` reports for an HLS stream."""
    hls = stream.hls
    segments = hls.segments
    return {
        "source": stream.name,
        "format": "DASH" if getattr(stream, "dash", None) is not None else "HLS",
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
        ("format", details["format"] + (" (live)" if details["live"] else "")),
        (
            "duration",
            f"{format_time(details['duration'])} ({details['duration']:.3f} s, {details['segments']} segments)",
        ),
        ("size", "unknown (live)" if size is None else f"{format_bytes(size)} ({size} bytes)"),
    ]
    for index, variant in enumerate(details["variants"]):
        chosen = " (chosen)" if index == details["variant"] else ""
        rows.append(
            (f"variant {index}", f"{variant['bandwidth']} bit/s {variant['codecs'] or ''} {variant['uri']}{chosen}")
        )
    for name, value in rows:
        out.write(f"{name:<14}{value}\n")
