"""LiveBuffer: the bytes of a live stream between its one writer and its one reader.

Bounded: the writer (the live thread) waits while ``budget`` bytes wait ahead of the reader
(backpressure: the socket is not read, so the server slows down); bytes behind the reader
are kept up to ``keep_behind`` and dropped first whenever the held bytes pass ``budget``.
Once the writer says the end is proven (``finish``) and nothing was ever dropped, every byte
is still here and the stream can be read anywhere, like a file.

One condition variable guards every field; nothing is called while it is held.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import List, Optional, Tuple

from .errors import StreamClosedError


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

    # -- the writer ------------------------------------------------------------------------
    def put(self, data: bytes) -> bool:
        """Append ``data``; waits while the reader is ``budget`` behind. False once closed."""
        with self._cond:
            while not self.closed and self.end - self.consumed >= self.budget:
                self._cond.wait()
            if self.closed:
                return False
            if data:
                self._chunks.append(data)
                self._offsets.append(self.end)
                self.end += len(data)
                self._trim()
                self._cond.notify_all()
            return True

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
