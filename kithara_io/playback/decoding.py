"""The Player's decoder thread: decode, convert, crossfade and store blocks in the ring.

A base class of :class:`~.player.Player` (its other half: the caller's controls and the audio
callback); the fields, the lock and their ownership are described in :mod:`.player`. The
track that follows another comes from the Player's :class:`~.queue.PlayOrder`, asked under
the lock.
"""

from __future__ import annotations

import threading
from typing import Dict, List, Optional, Tuple

import numpy as np

from .channels import crossfade_mix
from .feed import HeldTail, TrackFeed
from .queue import PlayOrder
from .ringbuffer import RingBuffer
from .track import Track

CHUNK = 2048  # frames decoded per step, at the track's rate


class Decoding:
    """The decoder thread's methods (fields set up by the Player)."""

    _cond: threading.Condition
    _ring: Optional[RingBuffer]
    _tracks: List[Track]
    _order: PlayOrder
    _feeds: Dict[int, TrackFeed]
    _tail: HeldTail
    samplerate: int
    channels: int
    _waiting_more: bool
    _speed: float  # changed only with a flush (a new generation), under the lock
    _replaygain: str
    _stopping: bool
    _generation: int
    _seek_request: Optional[Tuple[int, int]]
    _decode_track: int
    _written: int
    _marks: List[Tuple[int, int, float]]
    _error: Optional[BaseException]

    def _decode_loop(self) -> None:
        try:
            while self._decode_step():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported through status()/error
            with self._cond:
                if not self._stopping:  # a decoder torn down by close() is no failure
                    self._fail_locked(exc)
                self._cond.notify_all()

    def _feed(self, index: int, speed: float) -> TrackFeed:
        """Track ``index``'s feed, at ``speed`` (read with the generation, under the lock)."""
        feed = self._feeds.get(index)
        if feed is None:
            feed = self._feeds[index] = TrackFeed(self._tracks[index], self.samplerate, self.channels, CHUNK, speed)
        feed.set_speed(speed)
        return feed

    def _decode_step(self) -> bool:
        """Decode, convert and store one block; False when the thread must end."""
        with self._cond:
            ring = self._ring
            assert ring is not None
            while not self._stopping and (
                (self._decoder_eof and self._seek_request is None)
                or (self._seek_request is None and ring.free < self._feed(self._decode_track, self._speed).max_output)
            ):
                self._cond.wait()
            if self._stopping:
                return False
            seek, self._seek_request = self._seek_request, None
            if seek is not None:
                self._decode_track = seek[0]
            generation, index, speed = self._generation, self._decode_track, self._speed
            following = self._order.following(index)
        feed = self._feed(index, speed)
        if seek is not None:
            self._tail.clear()
            feed.seek(seek[1])
            feed.track.raise_priority()  # a jump to another track (next, previous) too
        if not feed.started:
            feed.track.raise_priority()
        out, ended = feed.read()
        out = self._level(feed.track, out)
        if feed.interrupted:  # by a seek (see seek()), or a stale interrupt: resume exactly
            with self._cond:
                pending = self._seek_request is not None
            feed.recover(resume=not pending)
            return True
        if not ended:
            self._store(self._tail.pass_on(out), generation)
            return True
        tail = self._tail.take(out)
        error = feed.track.reader.error
        if error is not None and not feed.track.reader.cancelled:
            self._store(tail, generation)
            with self._cond:
                if generation == self._generation:
                    self._fail_locked(error)
            return True
        if following is None:
            following = self._wait_for_more(index, generation)
        if following is None:
            return self._finish(tail, generation)
        return self._next_track(following, tail, generation, speed)

    def _level(self, track: Track, block: np.ndarray) -> np.ndarray:
        """``block`` with the track's ReplayGain applied (a new array; the same one at 1.0).
        Per track, before a crossfade mixes two; the volume is the callback's."""
        factor = track.tags.replaygain.factor(self._replaygain)  # a str read: no lock needed
        return block if factor == 1.0 else np.multiply(block, np.float32(factor))

    def _wait_for_more(self, index: int, generation: int) -> Optional[int]:
        """The last track ended while ``more_coming``: wait for a track to follow (what is
        buffered plays meanwhile), a seek, ``more_coming`` cleared or close."""
        with self._cond:
            self._waiting_more = True  # what the ring holds may start playing (see _callback)
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (
                    self._stopping
                    or not self._order.more_coming
                    or generation != self._generation
                    or self._order.following(index) is not None
                )
            )
            self._waiting_more = False
            return self._order.following(index) if generation == self._generation else None

    def _next_track(self, index: int, tail: np.ndarray, generation: int, speed: float) -> bool:
        """The track playing ended with ``tail``: track ``index`` follows (another, or the
        same one repeated), crossfaded over the end. Tracks shorter than the crossfade are
        passed through in turn; bounded by the number of tracks (then playback ends)."""
        for _ in range(len(self._tracks) + 1):
            fade = min(len(tail), self._tail.frames)
            if not self._store(tail[: len(tail) - fade], generation):
                return True
            feed = self._feed(index, speed)
            if feed.started:  # played before (repeat, previous) or decoded ahead: from the start
                feed.seek(0)
            feed.track.raise_priority()
            head, ended = feed.read_at_least(fade) if fade else (tail[:0], False)
            head = self._level(feed.track, head)
            mixed, head = crossfade_mix(tail[len(tail) - fade :], head), head[fade:]
            with self._cond:
                if generation != self._generation or self._stopping:
                    return not self._stopping
                self._marks.append((self._written, index, 0.0))
                self._decode_track = index
                after = self._order.following(index)
            if not self._store(mixed, generation):
                return True
            if not ended:
                self._store(self._tail.pass_on(head), generation)
                return True
            if after is None:  # the next track was shorter than the crossfade, and the last
                break
            index, tail = after, head
        return self._finish(head, generation)

    def _finish(self, tail: np.ndarray, generation: int) -> bool:
        """The last track ended with ``tail``: store it, then decoding is over."""
        if self._store(tail, generation):
            with self._cond:
                if generation == self._generation:
                    self._decoder_eof = True
                    self._cond.notify_all()
        return True

    def _store(self, block: np.ndarray, generation: int) -> bool:
        """Write all of ``block`` into the ring, waiting for room; False if a seek or close
        made it obsolete. Bounded: every pass writes at least one frame or ends."""
        done = 0
        with self._cond:
            ring = self._ring
            assert ring is not None
            while done < len(block):
                while not self._stopping and generation == self._generation and ring.free == 0:
                    self._cond.wait()
                if self._stopping or generation != self._generation:
                    return False
                n = ring.write(block[done:])
                done += n
                self._written += n
                self._cond.notify_all()
            return generation == self._generation

    def _fail_locked(self, error: BaseException) -> None:
        """Decoding cannot go on: what is buffered still plays, then playback ends FAILED.
        Nothing fails once close() began: a decoder torn down by it is no failure."""
        if self._stopping:
            return
        if self._error is None:
            self._error = error
        self._decoder_eof = True
        self._seek_request = None
        self._cond.notify_all()
