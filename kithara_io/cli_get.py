"""``kithara-io get``: download to a file or standard output, resuming a partial file whose
last bytes match the source (live streams are recorded by ``cli_live``)."""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from typing import Any, TextIO

from . import cli_live
from .cli_common import UsageError, _open_source, _terminal_width
from .errors import StreamError
from .progress import LineWriter, RateMeter, download_line, format_bytes

VERIFY_BYTES = 64 * 1024
COPY_CHUNK = 1024 * 1024


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
