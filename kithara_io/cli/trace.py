"""``kithara-io trace URL -o trace.svg``: run a reading story and draw its fetch timeline.

The story (:mod:`kithara_io.trace.story`): read from 0, then from each ``--seek`` position,
``--read`` bytes each time (to the end without seeks), paced at ``--rate`` like a player;
``--preload URL2`` adds Low streams on the same Downloader that read their files through,
opened first: the traced stream opens once they have fetches running.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, TextIO

from ..events import ReaderWaiting, RequestCancelled, RequestStarted, Seek
from ..trace.story import OpenFailed, Story, run
from .common import SourceError, UsageError, _one_line, _options

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1 << 20,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1000**3,
    "gib": 1 << 30,
}
_SIZE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)

EPILOG = """\
examples:
  kithara-io trace URL -o trace.svg                  read the file through
  kithara-io trace URL --seek 80% --read 2MiB        read 2 MiB, seek to 80 %, read 2 MiB
  kithara-io trace URL --rate 40kB --seek 5MiB       paced like a 320 kbit/s player
  kithara-io trace URL --preload URL2 --max-concurrent 2 -o t.html
"""


def size_arg(text: str) -> int:
    """A byte count: ``65536``, ``64KiB``, ``1.5MB`` (argparse type)."""
    m = _SIZE.match(text)
    if not m or m.group(2).lower() not in _UNITS or m.group(1).startswith("-"):
        raise argparse.ArgumentTypeError(f"must be a byte count like 65536, 64KiB or 2MB, not {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def position_arg(text: str) -> float:
    """A seek target: bytes (``3MiB``), from the end (``-1MiB``) or a percentage (``80%``)."""
    if text.strip().endswith("%"):
        try:
            percent = float(text.strip()[:-1])
        except ValueError:
            percent = -1.0
        if not 0 <= percent < 100:
            raise argparse.ArgumentTypeError(f"a percentage must be from 0 to below 100, not {text!r}")
        return percent / 100 if percent > 0 else 0.0
    negative = text.strip().startswith("-")
    value = size_arg(text.strip().lstrip("-"))
    return -float(value) if negative else float(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "-o",
        "--output",
        default="trace.svg",
        metavar="FILE",
        help="the drawing: .svg, or .html for a page (default: trace.svg)",
    )
    parser.add_argument(
        "--seek",
        dest="seeks",
        action="append",
        type=position_arg,
        default=[],
        metavar="POS",
        help="after reading, seek here and read again (repeatable): bytes (3MiB), --seek=-1MiB from the end, 80%%",
    )
    parser.add_argument(
        "--read",
        type=size_arg,
        default=None,
        metavar="BYTES",
        help="bytes read at each position (default: to the end; 1MiB with --seek)",
    )
    parser.add_argument(
        "--read-seconds", type=float, default=None, metavar="S", help="stop reading at a position after this long"
    )
    parser.add_argument(
        "--rate",
        type=size_arg,
        default=None,
        metavar="BYTES",
        help="read at most this many bytes per second, like a player (default: as fast as it comes)",
    )
    parser.add_argument("--priority", choices=("high", "low"), default="high", help="the traced stream's priority")
    parser.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="URL",
        help="a Low stream reading this URL through on the same Downloader (repeatable)",
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=2, metavar="N", help="the Downloader's places (default 2)"
    )
    parser.add_argument("--read-ahead", type=size_arg, default=None, metavar="BYTES", help="the streams' read-ahead")
    parser.add_argument("--max-fetch", type=size_arg, default=None, metavar="BYTES", help="the largest request")
    parser.add_argument("--title", default=None, help="the drawing's title (default: the URL)")


def _trace(args: argparse.Namespace, out: TextIO) -> int:
    if args.max_concurrent < 1:
        raise UsageError("--max-concurrent must be >= 1")
    if args.read_seconds is not None and not args.read_seconds > 0:
        raise UsageError("--read-seconds must be > 0")
    path = Path(args.output)
    if not path.parent.is_dir():
        raise UsageError(f"-o {args.output}: no directory {path.parent}")
    options: dict = _options(args)
    for name in ("read_ahead", "max_fetch"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    story = Story(
        args.source,
        seeks=args.seeks,
        read=args.read,
        read_seconds=args.read_seconds,
        rate=args.rate or None,
        priority=args.priority,
        preload=args.preload,
        max_concurrent=args.max_concurrent,
        options=options,
    )
    try:
        recorder = run(story)
    except OpenFailed as exc:
        raise SourceError(_one_line(exc.cause)) from None
    except ValueError as exc:  # a seek to a fraction of an unknown size
        raise UsageError(_one_line(exc)) from None
    recorder.save(path, args.title or args.source)
    note = "" if recorder.events else " (nothing was fetched: a local file is read directly)"
    out.write(f"wrote {path}: {summary(recorder.events)}{note}\n")
    return 0


def summary(events: Any) -> str:
    """``12 requests, 1 seek, 1 epoch cancel, 2 preemptions, 3 reader waits``."""
    kinds = [s.event for s in events]
    cancels = [e.reason for e in kinds if isinstance(e, RequestCancelled)]
    counts = [
        (sum(isinstance(e, RequestStarted) for e in kinds), "request"),
        (sum(isinstance(e, Seek) for e in kinds), "seek"),
        (cancels.count("epoch"), "epoch cancel"),
        (cancels.count("preempted"), "preemption"),
        (sum(isinstance(e, ReaderWaiting) for e in kinds), "reader wait"),
    ]
    return ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts)
