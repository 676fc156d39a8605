"""A body without a length that is not a radio station, read as a file.

nginx with ``sub_filter`` or gzip, PHP/Flask streaming responses and many dynamic servers
send a finite file chunked or delimited by closing the connection, and without ``Range``.
:class:`LiveFileReader` reads it as a file whose length becomes known at its end:
``seekable()`` is True from open to close, ``size`` is None until the end arrives, then the
length. Reads fill their buffer unless the end is reached. A seek from the end and a read
ahead of the bytes held wait for them; backward reads are served from what is held.

Memory stays within ``cache_budget`` (a :class:`~kithara_io.sources.live.buffer.FileWindow`): a
file that fits is held whole and fetched once. When a larger file's reader jumps ahead, the
oldest bytes are dropped; a later read of bytes no longer held requests the URL again and
reads forward to them, as ffmpeg does on an HTTP input without ranges. Each new request
(after a break or for such a read) must show the same ETag / Last-Modified as the first
answer, the bytes it passes that are still held must be equal, and it must end at the same
length: else :class:`~kithara_io.errors.ResourceChangedError`, never a byte of another version.

Every wait is bounded like any read: a body that stalls past ``Timeout.read`` or breaks is
requested again with the retry policy, then the failure is stored and raised by the waiting
call. Threads and locks: as :class:`~kithara_io.sources.live.stream.LiveReader` (the live thread is the
window's only writer and owns the bodies); the thread ends once every byte is held.
"""

from __future__ import annotations

import logging
import time
from typing import Mapping, Optional, Tuple

from ...errors import ResourceChangedError, StreamError
from ...events import ReaderResumed, ReaderWaiting
from .buffer import APPENDED, CLOSED, RESTART, FileWindow
from .connection import LiveBody
from .stream import PROGRESS, READ_SIZE, BodyPace, LiveReader

log = logging.getLogger(__name__)

END, BROKEN = "end", "broken"
_PIECE = 1 << 20  # a read larger than this is filled piece by piece: the length may be unknown


class LiveFileReader(LiveReader):
    """The reader protocol of :class:`~kithara_io.stream.Stream` over a file without a length."""

    _buffer: FileWindow

    def __init__(self, url: str, first: LiveBody, reconnect, options, **kwargs) -> None:
        super().__init__(url, first, reconnect, options, station=False, **kwargs)
        self._validators = _validators(first.headers)

    def _new_buffer(self, budget: Optional[int]) -> FileWindow:
        return FileWindow(self._opts.cache_budget, self.url)

    # -- the reader protocol ---------------------------------------------------------------
    @property
    def size(self) -> Optional[int]:
        return self._buffer.length

    def seekable(self) -> bool:
        return True

    def wait_size(self) -> int:
        """The length, once the body's end has arrived (waits for it)."""
        size = self._buffer.length
        if size is not None:
            return size
        pos = self._buffer.held()[1]  # the next byte to arrive
        self.events.publish(ReaderWaiting(pos))
        began = time.monotonic()
        size = self._buffer.wait_length()
        self.events.publish(ReaderResumed(pos, time.monotonic() - began))
        return size

    def resource(self) -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        etag, modified = self._validators
        return False, etag, modified

    def read_at(self, pos: int, out: memoryview) -> int:
        """Fill ``out`` from ``pos`` (fewer bytes only at the end), waiting as needed."""
        done, began = 0, None
        while done < len(out):
            if began is None and not self._buffer.has_data(pos + done):
                self.events.publish(ReaderWaiting(pos + done))
                began = time.monotonic()
            n = self._buffer.read_into(pos + done, out[done:])
            if n == 0:
                break
            done += n
        if began is not None:
            self.events.publish(ReaderResumed(pos, time.monotonic() - began))
        return done

    def read_bytes(self, pos: int, n: int) -> bytes:
        size = self._buffer.length
        if size is not None:
            n = max(0, min(n, size - pos))
        if n <= _PIECE:
            return super().read_bytes(pos, n)
        out = bytearray()  # grows with what arrives, not with what was asked
        while len(out) < n:
            piece = super().read_bytes(pos + len(out), min(n - len(out), _PIECE))
            if not piece:
                break
            out += piece
        return bytes(out)

    # -- the live thread -------------------------------------------------------------------
    def _run(self) -> None:
        failures, skip = 0, 0
        while not self._closing.is_set():
            with self._lock:
                body = self._body
            assert body is not None
            start = self._buffer.end
            try:
                outcome, cause = self._pump_file(body, skip)
            except BaseException as exc:  # never let the thread die silently
                log.exception("stream %s: reader thread failed", self.url)
                self._buffer.fail(StreamError("reading the body failed", url=self.url, cause=exc))
                return
            finally:
                self._drop_body()
            if self._closing.is_set() or self._buffer.error is not None or outcome == CLOSED:
                return
            if outcome == END and self._buffer.holds_all():
                return  # every byte is here for good: no read needs the network again
            # A read before the window (asked now, or awaited after the end) decides where
            # the next request starts; else a broken body resumes where it broke.
            target = self._buffer.take_restart(wait=outcome == END)
            if target is not None:
                failures, skip, cause = 0, target, None
            elif outcome != BROKEN:
                return  # closed
            else:
                failures = 0 if self._buffer.end - start >= PROGRESS else failures
                skip = self._buffer.end
            failures = self._request_again(failures, cause)
            if failures < 0:
                return

    def _pump_file(self, body: LiveBody, skip: int) -> Tuple[str, Optional[StreamError]]:
        """Read ``body`` from its first byte: the bytes before ``skip`` are compared with
        those still held and dropped, the rest go to the window. (END, None) at its end (the
        length recorded), (BROKEN, cause), CLOSED or RESTART."""
        buf = bytearray(READ_SIZE)
        view = memoryview(buf)
        offset = 0
        pace = BodyPace(self._opts.timeout, self._buffer, self.url)
        while not self._closing.is_set():
            if offset < skip and self._buffer.restart_pending():
                return RESTART, None
            try:
                n = body.readinto(view[: min(READ_SIZE, skip - offset)] if offset < skip else view)
            except StreamError as exc:
                return BROKEN, exc
            if n == 0:
                if self._closing.is_set():
                    return CLOSED, None  # (close() shut the socket: not the body's end)
                if offset < skip or not self._buffer.finish_pass(offset):
                    was = self._buffer.length if offset >= skip else f"more than {skip}"
                    self._refuse(f"the body ended at {offset} bytes, before at {was}")
                    return CLOSED, None
                return END, None
            with self._lock:
                self._fetched += n
            data = bytes(view[:n])
            if offset < skip:
                if not self._buffer.matches(offset, data):
                    self._refuse(f"the bytes at offset {offset} differ from those read before")
                    return CLOSED, None
                offset += n
            else:
                offset += n
                status = self._buffer.append(data)
                if status != APPENDED:
                    return status, None
            slow = pace.slow(n)
            if slow is not None:
                return BROKEN, slow
        return CLOSED, None

    def _request_again(self, failures: int, cause: Optional[StreamError]) -> int:
        """A new request for the body (at once; after a failure, with the retry policy): the
        new failure count, or -1 when giving up (the failure is stored) or closing."""
        body, failures = self._new_body(
            failures, cause, "the body broke and {} new requests failed", at_once=cause is None
        )
        if body is None:
            return -1
        difference = _differs(self._validators, _validators(body.headers), body.headers, self._buffer.length)
        if difference is not None:
            body.close()
            self._refuse(difference)
            return -1
        with self._lock:
            self._body = body
        return -1 if self._closing.is_set() else failures

    def _refuse(self, what: str) -> None:
        self._buffer.fail(ResourceChangedError(f"resource changed on the server: {what}", url=self.url))


def _validators(headers: Mapping[str, str]) -> Tuple[Optional[str], Optional[str]]:
    return headers.get("ETag"), headers.get("Last-Modified")


def _differs(first, now, headers: Mapping[str, str], length: Optional[int]) -> Optional[str]:
    """What shows that a new answer is another version of the body, if anything."""
    for name, was, new in zip(("ETag", "Last-Modified"), first, now):
        if was is not None and new != was:
            return f"{name} was {was!r}, now {new!r}"
    declared = headers.get("Content-Length")
    if length is not None and declared is not None and declared.strip().isdigit() and int(declared) != length:
        return f"the length was {length}, now {int(declared)}"
    return None


__all__ = ["LiveFileReader"]
