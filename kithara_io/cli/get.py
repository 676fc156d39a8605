"""``kithara-io get``: download to a file or standard output, resuming a partial file whose
last bytes match the source (live streams are recorded by ``live``).

Without ``-o`` the file is named like ``curl -O``/``wget``: the server's Content-Disposition
filename, else the last part of the URL's path, in the current directory; ``-o DIR/`` (or an
existing directory) puts it there. An existing file that is not (a part of) this source is
kept unless ``--force``.

The bytes are copied on a thread of its own (:class:`_Copier`) while the main thread redraws
the progress every ``PROGRESS_INTERVAL`` from what has arrived, and takes Ctrl-C: it then
stops the copy (``Stream.interrupt``), writes every byte already received after it, and
says how to resume.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import stat
import sys
import threading
import time
import urllib.parse
from typing import Any, BinaryIO, Optional, TextIO

from ..errors import StreamError
from . import live as cli_live
from .common import UsageError, _open_source, _terminal_width
from .progress import LineWriter, RateMeter, download_line, format_bytes

VERIFY_BYTES = 64 * 1024
COPY_CHUNK = 1024 * 1024
PROGRESS_INTERVAL = 0.2  # seconds between redraws, whatever the link's speed


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a download; the message says what was kept and how to resume."""


def _get(args: argparse.Namespace, out: TextIO) -> int:
    to_stdout = args.output == "-"
    stream = _open_source(args, variant="highest")  # HLS: one variant, so the size holds
    with stream:
        path = "-" if to_stdout else _target_path(args.output, stream, args.source)
        if cli_live.is_live(stream):
            if args.duration is not None and args.duration <= 0:
                raise UsageError("--duration must be > 0")
            if not to_stdout:
                _refuse_overwrite(path, args.force, "a live stream cannot be resumed")
            cli_live.record(stream, path, args.duration, out, _terminal_width())
            return 0
        return _download(stream, path, args, out)


def _download(stream: Any, path: str, args: argparse.Namespace, out: TextIO) -> int:
    to_stdout = path == "-"
    writer = LineWriter(sys.stderr if to_stdout and out is sys.stdout else out)  # stdout carries the data
    where = "standard output" if to_stdout else path
    size = stream.size
    regular = not to_stdout and _regular_or_missing(path)
    start = _resume_point(stream, path, size, writer, args.force) if regular else 0
    if start == size and regular and os.path.exists(path):
        writer.message(f"{path} is already complete ({size} bytes)")
        return 0
    started = time.monotonic()
    if to_stdout:
        done = _copy(stream, sys.stdout.buffer, start, size, writer, "standard output")
    else:
        with open(path, "r+b" if start else "wb") as f:
            if regular:  # a device or pipe (/dev/null) cannot seek or be truncated
                f.seek(start)
                f.truncate(start)
            done = _copy(stream, f, start, size, writer, path if regular else None)
    elapsed = max(time.monotonic() - started, 1e-9)
    if done != size:
        raise StreamError(f"download ended at {done} of {size} bytes; run again to resume", url=args.source)
    rate = (done - start) / elapsed
    width = _terminal_width() if writer.tty else 100
    writer.finish(download_line(done=done, total=size, rate=rate, width=width))
    offline = " from the disk cache, the server unreachable" if stream.stats().offline else ""
    writer.message(f"saved {where} ({format_bytes(size)}, {size} bytes){offline}")
    return 0


# -- the file's name ---------------------------------------------------------------------
def _target_path(output: Optional[str], stream: Any, source: str) -> str:
    """Where to write: ``output``, or into it when it is a directory (or ends with ``/``),
    named after the source; the source's name in the current directory without ``-o``."""
    if output is not None and not output.endswith(os.sep) and not os.path.isdir(output):
        return output
    directory = output or "."
    if not os.path.isdir(directory):
        raise UsageError(f"-o {output}: no such directory")
    suggested = stream.filename  # as the server sent it: like curl -OJ, only its last part
    name = safe_name(re.split(r"[/\\]", suggested)[-1] if suggested else None) or url_name(source)
    if name is None:
        raise UsageError(f"cannot name a file after {source} (its path has no file name); give -o FILE")
    return os.path.join(directory, name) if output else name


def url_name(source: str) -> Optional[str]:
    """The last part of a URL's (or a path's) path, decoded, if it is a safe file name."""
    parts = urllib.parse.urlsplit(source)
    path = parts.path if parts.scheme in ("http", "https", "file") else source
    return safe_name(posixpath.basename(urllib.parse.unquote(path) if parts.scheme else path))


def safe_name(name: Optional[str]) -> Optional[str]:
    """``name`` if it can only mean a file in the target directory: no ``/`` or ``\\``, not
    ``.``/``..``, no control characters, not hidden (``.name``); else None."""
    if not name:
        return None
    name = name.strip()
    if (
        not name
        or name.startswith(".")
        or any(c in name for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
        or len(name.encode("utf-8", "surrogateescape")) > 255
    ):
        return None
    return name


def _regular_or_missing(path: str) -> bool:
    """A path that names a regular file or nothing yet: one that can be resumed."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


def _refuse_overwrite(path: str, force: bool, why: str) -> None:
    """An existing non-empty regular file is kept unless ``force``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_size and not force:
        raise FileExistsError(f"{path} exists ({info.st_size} bytes) and {why}; --force overwrites it")


def _resume_point(stream: Any, path: str, size: int, writer: LineWriter, force: bool) -> int:
    """Where to continue: the size of an existing partial file whose last bytes match the
    remote ones; 0 when there is none; a file that does not match is overwritten only if
    ``force``."""
    try:
        existing = os.path.getsize(path)
    except FileNotFoundError:
        return 0
    if existing == 0:
        return 0
    if existing > size:
        _refuse_overwrite(path, force, f"is larger than the source ({size} bytes)")
        writer.message(f"{path} is larger than the source ({existing} > {size} bytes): starting over")
        return 0
    overlap = min(existing, VERIFY_BYTES)
    stream.seek(existing - overlap)
    remote = stream.read(overlap)
    with open(path, "rb") as f:
        f.seek(existing - overlap)
        local = f.read(overlap)
    if remote != local:
        _refuse_overwrite(path, force, "is not a part of this source (its last bytes differ)")
        writer.message(f"{path} does not match the source: starting over")
        return 0
    writer.message(f"resuming {path} at {format_bytes(existing)} (last {format_bytes(overlap)} verified)")
    return existing


# -- copying -----------------------------------------------------------------------------
class _Copier:
    """Copies ``[start, size)`` of a stream to a file on its own thread.

    ``written`` (guarded by ``_lock``) is owned by the thread until it is joined; ``error`` is
    set by it before it ends. ``stop()`` asks it to end: a read waiting for bytes raises
    ``InterruptedError`` (``Stream.interrupt``), which ends the copy.
    """

    def __init__(self, stream: Any, f: BinaryIO, start: int, size: int) -> None:
        self._stream, self._f, self._size = stream, f, size
        self._lock = threading.Lock()
        self._written = start
        self._stopping = threading.Event()
        self.finished = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="kithara-io-get", daemon=True)

    @property
    def written(self) -> int:
        with self._lock:
            return self._written

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._stream.interrupt()
        self._thread.join()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        buffer = bytearray(COPY_CHUNK)
        view = memoryview(buffer)
        try:
            pos = self.written
            self._stream.seek(pos)
            for _ in range((self._size - pos) // COPY_CHUNK + 2):  # bounded: a pass a chunk, and EOF
                if self._stopping.is_set():
                    break
                n = self._stream.readinto(view[: min(COPY_CHUNK, self._size - pos)])
                if not n:
                    break
                self._f.write(view[:n])
                pos += n
                with self._lock:
                    self._written = pos
                if pos >= self._size:
                    break
        except InterruptedError:
            pass  # stop(): the main thread writes what arrived meanwhile
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc
        finally:
            self.finished.set()


def _received_until(stream: Any, pos: int) -> int:
    """The end of the downloaded bytes that follow ``pos`` without a gap (``pos`` if none)."""
    for begin, end in stream.buffered():
        if begin <= pos < end:
            return end
    return pos


def _copy(stream: Any, f: BinaryIO, start: int, size: int, writer: LineWriter, resumable: Optional[str]) -> int:
    """Copy ``[start, size)`` to ``f`` with progress; returns the end position reached.
    Ctrl-C raises :class:`Interrupted` once every byte received is written."""
    copier = _Copier(stream, f, start, size)
    meter = RateMeter()
    width = _terminal_width() if writer.tty else 100
    copier.start()
    try:
        while not copier.finished.wait(PROGRESS_INTERVAL):
            written = copier.written
            received = max(written, _received_until(stream, written))
            meter.add(time.monotonic(), received)
            ranges = [(0, written)] + stream.buffered()
            writer.update(download_line(done=received, total=size, rate=meter.rate(), ranges=ranges, width=width))
    except KeyboardInterrupt:
        copier.stop()
        kept = _write_received(stream, f, copier.written, size)
        f.flush()
        writer.end_line()  # the message starts a line of its own
        raise Interrupted(_interrupted(kept, size, start, resumable)) from None
    copier.join()
    if copier.error is not None:
        writer.end_line()
        raise copier.error
    return copier.written


def _write_received(stream: Any, f: BinaryIO, pos: int, size: int) -> int:
    """Write the bytes already downloaded from ``pos`` on (no waiting); returns the new end."""
    end = min(size, _received_until(stream, pos))
    try:
        stream.seek(pos)
        while pos < end:
            data = stream.read(min(COPY_CHUNK, end - pos))
            if not data:
                break
            f.write(data)
            pos += len(data)
    except (InterruptedError, StreamError):
        pass  # what is written is a valid prefix: a resume continues after it
    return pos


def _interrupted(kept: int, size: int, start: int, resumable: Optional[str]) -> str:
    amount = f"{format_bytes(kept)} ({kept} of {size} bytes)"
    if resumable is None:
        return f"interrupted after {kept - start} bytes"
    return f"interrupted: {amount} kept in {resumable}; run the same command again to resume"
