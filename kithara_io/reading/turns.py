"""Whose turn it is to receive a running fetch's body: its pool thread, or a reader.

Reads are driven by the reader. A reader that waits for bytes a running fetch is receiving
takes the fetch's body over (:meth:`Turns.take`): the pool thread lets go after the piece
it is receiving, and the reader receives the next pieces itself, from the socket into the
cache's blocks, then copies out once (no hand-off between threads per piece, no cold memory
written by one thread and read by another). Between pieces the pool thread asks for its
turn (:meth:`Turns.pool_turn`); it gets one only while no reader wants the body and no
reader of the stream is in a read that may take one (``enter``/``leave``: a read the cache
could not serve at once) or has left one less than ``grace`` seconds ago, or less than it
stayed in it if that is shorter. So a reader that keeps coming back (a tight ``read`` loop)
keeps the bodies, and read-ahead runs on the pool threads while the reader is away (a
decoder decoding, a player playing what it has). A reader that waits for a fetch it cannot
take (queued, or still sending its request: ``block``) lets the pool threads receive, so
a fetch holding a Downloader place never waits for a reader that waits for it.

The fetch stays the Downloader's running command throughout (a place counted in
``max_concurrent``, cancelled, preempted and completed exactly once by its pool thread);
only the receiving moves. A failure while a reader receives is handed back
(``give_back(error=...)``) and raised on the pool thread, whose retry policy resumes the
fetch where the cache's claim says.

Ownership: one ``threading.Condition`` guards every turn and the reader counts (``_inside``,
``_blocked``, ``_left``). It is a leaf lock: nothing is called out while it is held (callers
may hold the stream's lock, or none).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional

_POOL = "pool"
_READER = "reader"


class Turn:
    """One registered body and who holds it now."""

    __slots__ = ("state", "holder", "wanted", "stopped", "ended", "error")

    def __init__(self, state: Any) -> None:
        self.state = state  # the fetch loop's receipt of this body (body, counters, checks)
        self.holder: Optional[str] = None
        self.wanted = 0  # readers waiting for this turn
        self.stopped = False  # aborted, or the pool thread is done with it
        self.ended = False  # a reader received up to the end of the claim
        self.error: Optional[BaseException] = None  # a failure while a reader received


class Turns:
    """The turns of one stream's bodies (see the module docstring)."""

    def __init__(self, grace: float) -> None:
        self._cond = threading.Condition()
        self._turns: Dict[int, Turn] = {}
        self._grace = grace
        self._inside = 0  # readers in a read() now
        self._entered = 0.0  # time.monotonic() the first of them entered
        self._stayed = 0.0  # how long readers were in read() until the last one left
        self._left = float("-inf")  # time.monotonic() a reader last left read()
        self._pool_waiting = 0  # pool threads waiting for a reader to leave
        self._blocked = 0  # readers in a read() that wait for bytes they cannot take over
        self._interrupts = 0

    def _after_fork_in_child(self) -> None:
        """Only the forking thread exists: no reader is in read(), no pool thread waits."""
        self._cond = threading.Condition()
        self._turns = {}
        self._inside = self._blocked = self._pool_waiting = 0

    # -- the pool thread (the fetch's own) ------------------------------------------------
    def open(self, key: int, state: Any) -> Turn:
        """Register a body a fetch receives (nobody holds it: see ``pool_turn``)."""
        turn = Turn(state)
        with self._cond:
            self._turns[key] = turn
        return turn

    def pool_done(self, turn: Turn, final: bool = False) -> None:
        """The pool thread's piece is in: a waiting reader may take the body now; or, if
        ``final`` (the claim ended, the body failed, the fetch was cancelled), nobody may."""
        with self._cond:
            turn.holder = None
            turn.stopped = turn.stopped or final
            if turn.wanted or final:
                self._cond.notify_all()

    def pool_turn(self, turn: Turn) -> bool:
        """Block until the pool thread may receive the next piece (True: it holds the body
        now), or the body is stopped (False)."""
        with self._cond:
            while True:
                if turn.stopped:
                    return False
                if turn.holder is None and not turn.wanted:
                    if turn.ended or turn.error is not None:
                        break
                    if self._blocked:
                        break  # its reader waits for another fetch: never hold that one up
                    if not self._inside:
                        left = self._left + min(self._grace, self._stayed) - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                        continue
                # A reader is in read() (or holds the body): look again after ``grace``, or
                # when it takes or gives back a body; a reader does not wake the pool
                # threads at every read it leaves (one context switch per read).
                self._pool_waiting += 1
                try:
                    self._cond.wait(self._grace)
                finally:
                    self._pool_waiting -= 1
            turn.holder = _POOL
            return True

    def close(self, key: int, turn: Turn) -> None:
        """The pool thread is done with the body: no reader takes it any more. Returns once
        a reader receiving from it has given it back (the caller closes the body next; an
        abort has broken the connection under such a reader, so that is soon)."""
        with self._cond:
            turn.stopped = True
            if self._turns.get(key) is turn:
                del self._turns[key]
            self._cond.notify_all()
            while turn.holder == _READER:
                self._cond.wait()

    def stop(self, key: int) -> None:
        """The fetch is aborted: wake whoever waits for its turn."""
        with self._cond:
            turn = self._turns.get(key)
            if turn is not None:
                turn.stopped = True
                self._cond.notify_all()

    # -- a reader ------------------------------------------------------------------------
    def take(self, key: int, since: int) -> Optional[Turn]:
        """Wait for the body of fetch ``key`` (the pool thread lets go after its piece) and
        hold it; None if it has no body (yet), is stopped, or ``interrupt`` was called
        since ``enter`` returned ``since``."""
        with self._cond:
            turn = self._turns.get(key)
            interrupts = self._interrupts
            if turn is None or turn.stopped or turn.ended or turn.error is not None or interrupts != since:
                return None
            turn.wanted += 1
            try:
                while turn.holder is not None and not turn.stopped and self._interrupts == interrupts:
                    self._cond.wait()
                if turn.holder is not None or turn.stopped or turn.ended or turn.error is not None:
                    return None
                turn.holder = _READER
                return turn
            finally:
                turn.wanted -= 1

    def give_back(self, turn: Turn, *, ended: bool = False, error: Optional[BaseException] = None) -> None:
        """The reader is done receiving for now: ``ended`` if it reached the end of the
        claim, ``error`` if the body failed under it (the pool thread raises it)."""
        with self._cond:
            turn.holder = None
            turn.ended = turn.ended or ended
            if error is not None and turn.error is None:
                turn.error = error
            if turn.wanted or ended or error is not None or turn.stopped or not self._inside:
                self._cond.notify_all()

    def enter(self) -> int:
        """A reader entered read(): the pool threads leave the bodies to it. Returns what
        ``take`` compares to see an ``interrupt`` since."""
        with self._cond:
            if not self._inside:
                self._entered = time.monotonic()
            self._inside += 1
            return self._interrupts

    def leave(self) -> None:
        """A reader left read(): the pool threads receive if it stays away ``grace`` s, or
        as long as it was in read() if that is shorter. A reader in a tight loop comes
        back sooner than that; a decoder that reads a little between its decoding does
        not, and read-ahead then overlaps the decoding."""
        with self._cond:
            self._inside -= 1
            self._left = time.monotonic()
            if not self._inside:
                self._stayed = self._left - self._entered

    def block(self) -> None:
        """The reader in read() is about to wait for bytes no body it may take holds yet
        (a fetch queued, or sending its request): the pool threads receive meanwhile, so a
        fetch holding a place (of this stream or, through the Downloader, of another)
        never waits for a reader that waits for it."""
        with self._cond:
            self._inside -= 1
            self._blocked += 1
            if self._pool_waiting:
                self._cond.notify_all()

    def unblock(self) -> None:
        with self._cond:
            self._blocked -= 1
            self._inside += 1

    def interrupt(self) -> None:
        """A reader waiting in ``take`` returns None now (``Stream.interrupt``)."""
        with self._cond:
            self._interrupts += 1
            self._cond.notify_all()
