"""LiveBuffer: the bytes of a live stream between its one writer and its one reader.

Bounded: the writer (the live thread) waits while ``budget`` bytes wait ahead of the reader
(backpressure: the socket is not read, so the server slows down); bytes behind the reader
are kept up to ``keep_behind`` and dropped first whenever the held bytes pass ``budget``.
Once the writer says the end is proven (``finish``) and nothing was ever dropped, every byte
is still here and the stream can be read anywhere, like a file.

:class:`FileWindow` is the same buffer for a body without a length that is a file, not a
station (see :mod:`kithara_io.sources.live.file`): a window of the body that reads move.

One condition variable guards every field; nothing is called while it is held.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from typing import List, Optional, Tuple

from ...errors import StreamClosedError

#: What ``FileWindow.append`` tells the writer.
APPENDED, CLOSED, RESTART = "appended", "closed", "restart"


class LiveBuffer:
    def __init__(self, budget: int, keep_behind: int, name: str = "") -> None:
        self.budget = budget
        self.keep_behind = keep_behind
        self.name = name
        self._cond = threading.Condition()
        self._chunks: List[bytes] = []
        self._offsets: List[int] = []  # stream offset of each chunk
        self._first = 0  # index of the first chunk still held (dropped ones are None-d)
        self.start = 0  # stream offset of the first byte held
        self.end = 0  # stream offset after the last byte held
        self.consumed = 0  # the furthest byte the reader was given
        self.dropped = False
        self.done = False  # the end is proven: ``end`` is the length
        self.error: Optional[BaseException] = None
        self.closed = False
        self._interrupt = False  # one-shot: the next waiting read raises InterruptedError
        self.served = 0
        self.waits = 0
        self.time_waited = 0.0
        self.pauses = 0  # times the writer waited for room (its reads of the body paused)

    # -- the writer ------------------------------------------------------------------------
    def put(self, data: bytes) -> bool:
        """Append ``data``; waits while the reader is ``budget`` behind. False once closed."""
        with self._cond:
            if not self.closed and self.end - self.consumed >= self.budget:
                self.pauses += 1
            while not self.closed and self.end - self.consumed >= self.budget:
                self._cond.wait()
            if self.closed:
                return False
            self._store_locked(data)
            return True

    def _store_locked(self, data: bytes) -> None:
        """Keep ``data`` at ``end``, drop what the budget no longer holds, wake readers."""
        if data:
            self._chunks.append(data)
            self._offsets.append(self.end)
            self.end += len(data)
            self._trim()
            self._cond.notify_all()

    def finish(self) -> None:
        """The end is proven: reads past ``end`` return 0."""
        with self._cond:
            self.done = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()

    def interrupt(self) -> None:
        """The read waiting now (else the next one that has to wait) raises
        ``InterruptedError`` once; nothing else changes."""
        with self._cond:
            self._interrupt = True
            self._cond.notify_all()

    def close(self) -> None:
        """Wake everyone; later reads raise StreamClosedError, puts return False."""
        with self._cond:
            self.closed = True
            self._chunks = []
            self._offsets = []
            self._first = 0
            self._cond.notify_all()

    # -- the reader ------------------------------------------------------------------------
    def wait_started(self) -> None:
        """Until the first byte, the proven end or a failure is in."""
        with self._cond:
            while not (self.end or self.done or self.error is not None or self.closed):
                self._cond.wait()

    def has_data(self, pos: int) -> bool:
        with self._cond:
            return pos < self.end or self.done or self.error is not None or self.closed

    def read_into(self, pos: int, out: memoryview) -> int:
        """Copy the bytes from ``pos`` into ``out``: as many as are here (at least one),
        after waiting until there are some. 0 at the proven end; the stored failure once
        nothing more will come."""
        with self._cond:
            began = None
            while pos >= self.end and not (self.done or self.error is not None or self.closed):
                if self._interrupt:
                    self._interrupt = False
                    raise InterruptedError("read interrupted (Stream.interrupt)")
                began = began or time.monotonic()
                self._cond.wait()
            if began is not None:
                self.waits += 1
                self.time_waited += time.monotonic() - began
            if self.closed:
                raise StreamClosedError("stream closed while a read was waiting", url=self.name)
            if pos >= self.end:
                if self.error is not None and not self.done:
                    raise self.error.with_traceback(None)
                return 0
            if pos < self.start:
                raise ValueError(f"bytes before {self.start} are no longer held")
            n = self._copy(pos, out)
            self.served += n
            if pos + n > self.consumed:
                self.consumed = pos + n
                self._trim()
                self._cond.notify_all()
            return n

    def _copy(self, pos: int, out: memoryview) -> int:
        index = bisect.bisect_right(self._offsets, pos, lo=self._first) - 1
        done = 0
        while done < len(out) and index < len(self._chunks):
            chunk = self._chunks[index]
            skip = pos + done - self._offsets[index]
            take = min(len(out) - done, len(chunk) - skip)
            out[done : done + take] = memoryview(chunk)[skip : skip + take]
            done += take
            index += 1
        return done

    def _trim(self) -> None:
        """Drop whole chunks behind the reader: those past ``keep_behind``, and more while
        the held bytes exceed ``budget``."""
        while self._first < len(self._chunks):
            chunk_end = self._offsets[self._first] + len(self._chunks[self._first])
            behind = chunk_end <= self.consumed
            too_old = chunk_end <= self.consumed - self.keep_behind
            if not (too_old or (behind and self.end - self.start > self.budget)):
                break
            self._chunks[self._first] = b""
            self._first += 1
            self.start = chunk_end
            self.dropped = True
        if self._first > 1024:  # compact the lists now and then
            del self._chunks[: self._first]
            del self._offsets[: self._first]
            self._first = 0

    # -- observation -----------------------------------------------------------------------
    def held(self) -> Tuple[int, int]:
        with self._cond:
            return self.start, self.end

    def complete(self) -> bool:
        """The end is proven and every byte from 0 is still held."""
        with self._cond:
            return self.done and not self.dropped and self.error is None

    def counters(self) -> Tuple[int, int, float, int]:
        with self._cond:
            return self.served, self.waits, self.time_waited, self.end - self.start


class FileWindow(LiveBuffer):
    """A body without a length read as a file: at most ``budget`` bytes of it, ``[start, end)``.

    The writer waits while ``budget`` bytes wait ahead of the reader's reach (the furthest byte
    it read or waits for). A reader waiting beyond the window (a forward seek; ``wait_length``
    for a seek from the end) lets the writer go on, dropping the oldest bytes to stay within
    ``budget``: the tail is held. A read before the window asks for a restart: the writer
    empties the window, moves it to ``restart`` and reads the body again from its first byte
    (a new request), dropping what comes before. ``length`` is the body's length once a pass
    reached its end; it never changes afterwards (a pass that ends elsewhere is an error).
    """

    def __init__(self, budget: Optional[int], name: str = "") -> None:
        budget = budget or sys.maxsize  # None: keep everything, as cache_budget=None says
        super().__init__(budget, budget, name)
        self.length: Optional[int] = None
        self.wanted = 0  # the byte a waiting reader needs (sys.maxsize: the length)
        self.restart: Optional[int] = None  # where a read before the window wants it to begin

    # -- the writer ------------------------------------------------------------------------
    def append(self, data: bytes) -> str:
        """Append ``data`` at ``end`` (after waiting for room): APPENDED, else CLOSED, or
        RESTART when a reader wants bytes before the window (``data`` is not stored)."""
        with self._cond:
            if not self.closed and self.restart is None and self._full():
                self.pauses += 1
            while not self.closed and self.restart is None and self._full():
                self._cond.wait()
            if self.closed:
                return CLOSED
            if self.restart is not None:
                return RESTART
            self._store_locked(data)
            return APPENDED

    def finish_pass(self, length: int) -> bool:
        """A pass reached the body's end at ``length``: False if an earlier pass ended elsewhere."""
        with self._cond:
            if self.length is not None and self.length != length:
                return False
            self.length = length
            self.done = True
            self._cond.notify_all()
            return True

    def holds_all(self) -> bool:
        """Every byte of the body is here: no read can need another pass."""
        with self._cond:
            whole = self.length is not None and self.start == 0 and self.end == self.length
            return whole and self.end <= self.budget  # (more could still be dropped behind reads)

    def restart_pending(self) -> bool:
        with self._cond:
            return self.restart is not None or self.closed

    def take_restart(self, wait: bool) -> Optional[int]:
        """The position a reader asked the window to restart at, with the window emptied and
        moved there; None if none is asked (``wait``: until one is, or the buffer closes)."""
        with self._cond:
            while wait and self.restart is None and not self.closed:
                self._cond.wait()
            if self.closed or self.restart is None:
                return None
            target, self.restart = self.restart, None
            self._chunks, self._offsets, self._first = [], [], 0
            self.start = self.end = self.consumed = target
            self._cond.notify_all()
            return target

    def matches(self, pos: int, data: bytes) -> bool:
        """Whether ``data`` at ``pos`` equals the bytes held there (True where none are)."""
        with self._cond:
            first, last = max(pos, self.start), min(pos + len(data), self.end)
            if first >= last:
                return True
            held = bytearray(last - first)
            self._copy(first, memoryview(held))
            return held == data[first - pos : last - pos]

    def _full(self) -> bool:
        reach = min(max(self.consumed, self.wanted), self.end)
        return self.end - max(self.start, reach) >= self.budget

    def _trim(self) -> None:
        """Drop whole chunks behind the reader's reach while more than ``budget`` is held."""
        reach = max(self.consumed, self.wanted)
        while self._first < len(self._chunks) and self.end - self.start > self.budget:
            chunk_end = self._offsets[self._first] + len(self._chunks[self._first])
            if chunk_end > reach:
                break
            self._chunks[self._first] = b""
            self._first += 1
            self.start = chunk_end
            self.dropped = True
        if self._first > 1024:
            del self._chunks[: self._first]
            del self._offsets[: self._first]
            self._first = 0

    # -- the reader ------------------------------------------------------------------------
    def has_data(self, pos: int) -> bool:
        with self._cond:
            known_end = self.length is not None and pos >= self.length
            return self.start <= pos < self.end or known_end or self.error is not None or self.closed

    def read_into(self, pos: int, out: memoryview) -> int:
        """Copy bytes from ``pos`` into ``out``: as many as the window holds there (at least
        one), after waiting until it does. 0 at or past the length; the stored failure once
        nothing more will come."""
        with self._cond:
            began = None
            try:
                while not self.start <= pos < self.end:
                    if self.length is not None and pos >= self.length and not self.closed:
                        return 0
                    self._check_wait()
                    if pos < self.start:
                        # Keep a little before pos: decoders step back a few frames.
                        target = max(0, pos - min(self.budget // 4, 1 << 20))
                        if self.restart is None or target < self.restart:
                            self.restart = target
                    else:
                        self.wanted = pos
                    self._cond.notify_all()
                    began = began or time.monotonic()
                    self._cond.wait()
            finally:
                self.wanted = 0
                if began is not None:
                    self.waits += 1
                    self.time_waited += time.monotonic() - began
            n = self._copy(pos, out)
            self.served += n
            if pos + n > self.consumed:
                self.consumed = pos + n
                self._trim()
                self._cond.notify_all()
            return n

    def wait_length(self) -> int:
        """The body's length, after waiting for a pass to reach its end (the writer drops
        the oldest bytes meanwhile, keeping the tail)."""
        with self._cond:
            try:
                while self.length is None:
                    self._check_wait()
                    self.wanted = sys.maxsize
                    self._cond.notify_all()
                    self._cond.wait()
            finally:
                self.wanted = 0
            return self.length

    def _check_wait(self) -> None:
        """Raise what ends a wait: closed, the stored failure, an interrupt."""
        if self.closed:
            raise StreamClosedError("stream closed while a read was waiting", url=self.name)
        if self.error is not None:
            raise self.error.with_traceback(None)
        if self._interrupt:
            self._interrupt = False
            raise InterruptedError("read interrupted (Stream.interrupt)")
