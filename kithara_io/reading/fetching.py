"""The fetch loop of one stream: a command's request, its body in pieces into the cache,
resume after a cut, and the suffix request sent at open (the tail probe).

It runs on a Downloader pool thread (or on a reader that runs its own fetch) and knows its
stream only through :class:`FetchHost` (RemoteReader): which fetch a command is, counters,
events, and "the length is known now". Bytes go to the SparseCache under the claim the
host made for the command; nothing here holds the host's lock while it does I/O.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, cast

from ..engine.downloader import Downloader
from ..engine.scheduling import FetchCommand
from ..errors import ConnectionFailedError, InvalidResponseError, StreamError, TruncatedBodyError
from ..events import Event, FirstByte, Progress, RequestRetrying
from ..options import StreamOptions
from ..retry import Attempt, Pace, Timeout
from ..sources.base import Abort, Body, Source, WholePieces
from .cache import SparseCache
from .planning import FetchPlan, LinkEstimate
from .turns import Turns

log = logging.getLogger(__name__)

UNKNOWN_END = 1 << 62  # claim end while a body's length is unknown
_MIN_READ = 16 * 1024  # smallest piece read into the cache
_PIECE_TIME = 0.05  # a piece is about this much transfer: waiting readers see bytes soon
_TRUSTED_RATE = 256 * 1024  # bytes of a body after which its measured rate sizes whole pieces
_MIN_PROGRESS = 16 * 1024  # a failed attempt that stored less counts as no progress
_READER_PIECE_TIME = 0.001  # a reader that takes a body over receives at least this much transfer
_OVERRUN = 20  # a piece read in one call is broken off after this many times its expected time (or speed_time)
_GRACE = 0.005  # pool threads receive once no reader of the stream has for this long (turns)


@dataclass
class Fetch:
    """A command of this stream, as the host tracks it."""

    cmd: FetchCommand
    plan: FetchPlan
    handle: Abort
    started: bool = False
    began: float = 0.0  # time.monotonic() when the run function started
    handed: bool = False  # its answer went to open()'s caller: no longer ours to abort
    for_reader: bool = False  # handed to a waiting reader to run itself (try_run_inline)
    reader_holds: bool = False  # a reader took its body over and receives it now (serve_reader)
    streaming: bool = False  # its body fills the link, more than a first-byte time from its end
    turns: Optional[Turns] = None  # where a reader takes its body over (FetchLoop.serve_reader)

    def abort(self) -> None:
        if not self.handed:
            self.handle.abort()
        if self.turns is not None:
            self.turns.stop(self.cmd.id)


class FetchHost(Protocol):
    """What the fetch loop needs of its stream (RemoteReader)."""

    def begin_fetch(self, cmd: FetchCommand) -> Optional[Fetch]:
        """Mark the command's fetch started; None if the stream dropped it meanwhile."""

    def count(self, name: str, amount: float) -> None:
        """Add to one of the stream's counters (StreamStats fields)."""

    def publish(self, event: Event) -> None: ...

    def listened(self, request: bool = False) -> bool:
        """Does anyone listen to the stream's events (``request``: or to the request events
        of every stream)? Events are built only then."""

    def learned_length(self, total: int, from_tail_probe: bool) -> None:
        """The first answer that told the resource's length (set it, schedule more)."""

    def record_link(self, ttfb: float, nbytes: int, duration: float) -> None: ...

    def takes_over(self, fetch: Fetch, body: Body) -> bool:
        """Keep ``body`` (the first answer, without a length) for a live reader: True if the
        host took it, and the fetch must neither read nor close it."""

    def reader_end(self) -> int:
        """Where the stream's last read ended (the reader's cursor)."""

    def streaming(self, cmd: FetchCommand, on: bool) -> None:
        """The fetch's body fills the link until its last first-byte time of transfer
        (``on``), or has reached it (the next read-ahead request may go now)."""

    def trickled(self) -> None:
        """A piece read in one call took far longer than the link's rate said: read pieces
        in small timed reads until a body has measured the link again."""


class FetchLoop:
    """Runs one stream's fetch commands against its Source, into its SparseCache."""

    def __init__(
        self,
        host: FetchHost,
        source: Source,
        cache: SparseCache,
        options: StreamOptions,
        link: LinkEstimate,
        downloader: Downloader,
    ) -> None:
        # Weakly: the host owns this loop, and a stream that refers to itself through it
        # would be freed only by the garbage collector, ~70 objects per stream.
        self._host = weakref.proxy(host)
        self._source = source
        self._cache = cache
        self._opt = options
        self._link = link
        self._downloader = downloader
        self.turns = Turns(_GRACE)

    def run(self, cmd: FetchCommand) -> None:
        """Fetch the command's claim, resuming after cuts while the retry policy allows."""
        fetch = self._host.begin_fetch(cmd)
        if fetch is None:
            return
        attempt = Attempt(self._opt.retry)
        while not cmd.cancelled.is_set():
            claim = self._cache.claim_progress(cmd.id)
            if claim is None or claim[0] >= claim[1]:
                return
            pos = claim[0]
            try:
                self._fetch_once(cmd, fetch, pos, claim[1])
                return
            except StreamError as exc:
                if cmd.cancelled.is_set() or fetch.handle.aborted:
                    return
                now = self._cache.claim_progress(cmd.id)
                # Progress is a real step forward (or the end), so a server that cuts every
                # answer after a few bytes ends in an error instead of crawling for hours.
                progressed = now is not None and (now[0] - pos >= _MIN_PROGRESS or now[0] >= now[1])
                attempt, delay = attempt.after(exc, progressed)  # raises exc when it is over
                log.info("retrying %s in %.2fs after %s", cmd.label, delay, exc)
                self._host.publish(RequestRetrying(cmd.id, attempt.failures + 1, delay, str(exc), self._source.url))
                self._host.count("retries", 1)
                cmd.cancelled.wait(delay)  # interruptible backoff

    def run_tail_probe(self, cmd: FetchCommand) -> None:
        """Store what the suffix answer holds that nobody else fetches. Any failure here is
        quiet: the tail is then fetched by offset like any other gap."""
        fetch = self._host.begin_fetch(cmd)
        if fetch is None:
            return
        try:
            body = self._source.fetch_suffix(self._opt.tail, fetch.handle)
        except StreamError as exc:
            log.debug("tail request of %s failed: %s", self._source.url, exc)
            return
        if body is None:
            return
        self._host.publish(FirstByte(cmd.id, time.monotonic() - fetch.began, self._source.url))
        try:
            self._host.count("requests", body.requests_sent)
            if body.total is not None:
                self._host.learned_length(body.total, from_tail_probe=True)
            claim = self._cache.claim_progress(cmd.id)
            if claim is not None and claim[0] < claim[1]:
                self._copy_body(cmd, body, claim[0])
        except StreamError as exc:
            log.debug("tail request of %s broke off: %s", self._source.url, exc)
        finally:
            body.close()

    def _fetch_once(self, cmd: FetchCommand, fetch: Fetch, pos: int, claim_end: int) -> None:
        started = time.monotonic()
        request_end = None if claim_end >= UNKNOWN_END else claim_end
        body = self._source.fetch(pos, request_end, fetch.handle)
        ttfb = time.monotonic() - started
        if self._host.listened(True):
            self._host.publish(FirstByte(cmd.id, ttfb, self._source.url))
        self._host.count("requests", body.requests_sent)
        if self._host.takes_over(fetch, body):
            return
        try:
            self._on_response(cmd, body)
            # An inline run is its reader's already: no turns to take (and no lock per piece).
            receipt = self._copy_body(cmd, body, pos, None if fetch.for_reader else fetch, paced=True)
        finally:
            body.close()
        if not body.from_disk:  # the link estimate is of the network
            self._host.record_link(ttfb, receipt.stored, time.monotonic() - started)

    def _on_response(self, cmd: FetchCommand, body: Body) -> None:
        """Learn the length from the first response and fit the claim to the body."""
        if body.total is None and body.ranged:
            raise InvalidResponseError("206 without a total length", url=body.url)
        if not body.ranged:  # the whole body: the claim becomes exactly its extent
            self._cache.extend_claim(cmd.id, body.end if body.end is not None else UNKNOWN_END)
            if body.end is not None:
                self._cache.shrink_claim(cmd.id, body.end)
        elif body.end is not None:
            self._cache.shrink_claim(cmd.id, body.end)
        if self._cache.size is None and body.total is not None:
            self._host.learned_length(body.total, from_tail_probe=False)

    def _copy_body(
        self, cmd: FetchCommand, body: Body, pos: int, fetch: Optional[Fetch] = None, *, paced: bool = False
    ) -> "_Receipt":
        """Stream the body into the cache from ``pos``; returns what was received. With
        ``fetch``, a reader waiting for its bytes may take the body over between pieces
        (:mod:`.turns`; :meth:`serve_reader`). ``paced``: one of the stream's fetches
        (whichever thread runs it), which the next read-ahead request follows in order."""
        if body.start < pos:
            _skip(body, pos - body.start, self._opt.chunk, lambda n: self._downloader.note_progress(n, cmd))
        receipt = _Receipt(body, self._link, self._opt.timeout)
        if paced:
            # Read-ahead in order: the stream's next request goes out when this body has
            # one first-byte time of transfer left, so its first byte arrives as this one
            # ends, instead of both sharing the link while the reader waits for this one.
            streams = body.end is not None and self._link.in_order(body.end - pos, self._opt.min_fetch)
            if streams:
                receipt.handoff_at = cast(int, body.end) - self._link.soon_bytes(self._opt.min_fetch)
            self._host.streaming(cmd, streams)
        if fetch is None:
            end = body.end  # the claim ends there at the latest (_on_response fitted it)
            while not cmd.cancelled.is_set() and self._piece(cmd, receipt, self._pool_limit(receipt)) is not None:
                if end is not None and body.position >= end:
                    break  # all in: no call to learn that the claim ends
            return receipt
        turn = self.turns.open(cmd.id, receipt)
        self._cache.poke()  # a reader waiting for these bytes may take the body over
        try:
            while True:
                waited_from = time.monotonic()
                if not self.turns.pool_turn(turn):
                    break
                final = True  # unless the piece is in and more may follow
                try:
                    if receipt.speed is not None and time.monotonic() - waited_from > 0.001:
                        receipt.speed.restart(time.monotonic())  # a pause for a reader is no trickle
                    if cmd.cancelled.is_set():
                        break
                    if turn.error is not None:
                        raise turn.error
                    if self._piece(cmd, receipt, self._near_reader_limit(receipt)) is None:
                        break
                    final = False
                finally:
                    self.turns.pool_done(turn, final)
        finally:
            self.turns.close(cmd.id, turn)
        if turn.error is not None and not cmd.cancelled.is_set():
            raise turn.error
        return receipt

    def serve_reader(self, fetch: Fetch, end: int, since: int) -> int:
        """On a reader's thread: take over the body ``fetch`` receives (once its pool thread
        lets go of the piece it is on) and receive into the cache up to ``end`` at least;
        returns the bytes received (0: no body to take, or it ended or failed, handed
        back to the pool thread, which retries or completes the fetch)."""
        cmd = fetch.cmd
        turn = self.turns.take(cmd.id, since)
        if turn is None:
            return 0
        receipt: _Receipt = turn.state
        got, ended, error = 0, False, None
        try:
            while not cmd.cancelled.is_set():
                pos = receipt.body.position
                if pos >= end:
                    break
                # What the reader waits for, in pieces of ~_PIECE_TIME of transfer as the
                # pool thread's, and at least ~1 ms of this body's transfer (pauses
                # included, so never much more than the reader can wait for): a decoder
                # reading 8 KiB at a time takes a body over every ~1 ms of transfer, not
                # every 8 KiB.
                safe = self._pool_limit(receipt)
                floor = min(safe, int(receipt.rate * _READER_PIECE_TIME))
                n = self._piece(cmd, receipt, max(min(end - pos, safe), floor, _MIN_READ))
                if n is None:
                    ended = True
                    break
                got += n
        except Exception as exc:  # noqa: BLE001 - the pool thread raises it: retried, or the fetch fails
            error = exc
        except BaseException as exc:  # Ctrl-C mid-piece: what the body delivered is unknown
            error = ConnectionFailedError("receiving was interrupted", url=receipt.body.url, cause=exc)
            raise
        finally:
            ended = ended or (error is None and self._cache.claim_done(cmd.id))  # the pool need not wait
            self.turns.give_back(turn, ended=ended, error=error)
        return got

    def _watch(self, cmd: FetchCommand, receipt: "_Receipt", size: int) -> Optional["_Overrun"]:
        """Have the Downloader break off the one-call read of a piece of ``size`` bytes that
        takes far longer than the link's rate says: a server trickling its bytes inside one
        piece is never silent for the read timeout, and the speed check runs only between
        pieces. None when no speed limit applies (from disk, or ``speed_limit`` 0), or the
        body's transport holds it to the limit itself."""
        timeout = self._opt.timeout
        body = cast(WholePieces, receipt.body)
        if receipt.speed is None or not timeout.speed_limit or body.paces_itself:
            return None
        seconds = max(timeout.speed_time, _OVERRUN * size / max(receipt.rate, 1.0))
        overrun = _Overrun(body, size, seconds)
        self._downloader.watch(cmd, seconds, overrun.break_off)
        return overrun

    def _pool_limit(self, receipt: "_Receipt") -> int:
        """One piece per commit: up to ~50 ms of transfer, so a reader waiting on the first
        bytes of it does not wait long on a slow link, while a fast link commits, counts and
        notifies once per chunk instead of once per socket read."""
        elapsed = time.monotonic() - receipt.started
        if receipt.stored >= _MIN_READ and elapsed > 0:
            receipt.rate = receipt.stored / elapsed  # pauses included: never too large a piece
        return max(_MIN_READ, min(self._opt.chunk, int(receipt.rate * _PIECE_TIME)))

    def _near_reader_limit(self, receipt: "_Receipt") -> int:
        """A pool thread's next piece: as ``_pool_limit``, but no longer than the reader's lead
        over the body (at least ~1 ms of transfer). A piece is committed whole, so a reader
        that catches up with one waits for all of it, even for the few bytes it needs."""
        limit = self._pool_limit(receipt)
        lead = receipt.body.position - self._host.reader_end()
        if lead >= limit:
            return limit
        return max(lead, _MIN_READ, min(limit, int(receipt.rate * _READER_PIECE_TIME)))

    def _piece(self, cmd: FetchCommand, receipt: "_Receipt", limit: int) -> Optional[int]:
        """Receive one piece of at most ``limit`` bytes into the cache at the body's
        position; None once the claim ends there (done or cancelled)."""
        body = receipt.body
        pos = body.position
        handoff = receipt.handoff_at
        if handoff is not None and pos < handoff:
            limit = min(limit, handoff - pos)  # the piece ends where the next request may go
        if receipt.one_call and (receipt.trusted or receipt.stored >= _TRUSTED_RATE):
            # The rate is measured: a piece arrives within ~_PIECE_TIME, so read it in
            # one call (no Python per socket read or TLS record); see SparseCache.store.
            room = self._cache.piece_room(cmd.id, pos, limit)
            if type(room) is int and room == 0:
                return None
            whole = cast(WholePieces, body)  # one_call: it has read_piece
            overrun = self._watch(cmd, receipt, room if isinstance(room, int) else len(room))
            try:
                if type(room) is int:
                    data = whole.read_piece(room)
                    n = len(data)
                    if n:
                        self._cache.store(cmd.id, pos, data)
                else:  # straight from the socket into the block: no intermediate bytes
                    n = whole.readinto_piece(cast(memoryview, room))
                    if n:
                        self._cache.commit(cmd.id, pos, n)
            except StreamError:
                if overrun is None or not overrun.broken:
                    raise  # (broken off: said below in the user's terms)
            finally:
                if overrun is not None:
                    self._downloader.unwatch(cmd)
            if overrun is not None and overrun.broken:
                self._host.trickled()  # pieces are read in small reads again, each one timed
                raise ConnectionFailedError(
                    f"a piece of {overrun.size} bytes took more than {overrun.seconds:g} s: the transfer slowed down",
                    url=body.url,
                    byte_range=(body.position, body.end),
                )
        else:
            buf = self._cache.write_buffer(cmd.id, pos, limit)
            if buf is None:
                return None
            n = body.readinto(buf)
            if n:
                self._cache.commit(cmd.id, pos, n)
        if n == 0:
            if body.end is None:  # length unknown: the end is proven here
                self._cache.set_size(pos)
                self._cache.shrink_claim(cmd.id, pos)
                return None
            raise TruncatedBodyError(
                f"body ended after {body.position - body.start} of {body.end - body.start} bytes",
                url=body.url,
                byte_range=(body.start, body.end),
            )
        if receipt.speed is not None and receipt.speed.slow(n, time.monotonic()):
            raise ConnectionFailedError(receipt.speed.describe(), url=body.url, byte_range=(body.position, body.end))
        self._host.count(receipt.counter, n)
        receipt.stored += n
        if handoff is not None and body.position >= handoff:
            receipt.handoff_at = None
            self._host.streaming(cmd, False)
        self._downloader.note_progress(n, cmd)  # the hang watchdog sees bytes arrive
        if self._host.listened(True):
            self._host.publish(Progress(cmd.id, n, cmd.bytes_received, self._source.url))
        return n


class _Receipt:
    """What receiving one body has counted so far, whichever thread receives it (one at a
    time: the holder of its turn)."""

    def __init__(self, body: Body, link: LinkEstimate, timeout: Timeout) -> None:
        self.body = body
        self.started = time.monotonic()
        self.stored = 0
        self.rate = link.bandwidth
        self.trusted = link.measured  # else the rate of this body once it has delivered enough
        self.counter = "bytes_from_disk" if body.from_disk else "bytes_fetched"
        self.speed = Pace(timeout, self.started) if not body.from_disk else None
        self.one_call = callable(
            getattr(body, "read_piece", None)
        )  # WholePieces (isinstance on a Protocol costs ~25 us)
        self.handoff_at: Optional[int] = None  # where the stream's next request may go (streaming)


class _Overrun:
    """A piece read in one call, which the Downloader's dispatcher breaks off (``broken``) if
    it is still running ``seconds`` after it began."""

    def __init__(self, body: WholePieces, size: int, seconds: float) -> None:
        self.size = size
        self.seconds = seconds
        self.broken = False
        self._body = body

    def break_off(self) -> None:
        self.broken = True
        self._body.break_off()


def _skip(body: Body, count: int, chunk: int, progress: Callable[[int], None]) -> None:
    """Discard ``count`` bytes of a body that started before the bytes we need, telling
    ``progress(n)`` (the watchdog) that bytes arrive meanwhile."""
    scratch = memoryview(bytearray(min(count, chunk)))
    while count > 0:
        n = body.readinto(scratch[: min(count, len(scratch))])
        if n == 0:
            raise TruncatedBodyError("body ended while skipping its prefix", url=body.url)
        progress(n)
        count -= n
