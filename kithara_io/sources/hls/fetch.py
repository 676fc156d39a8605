"""PartFetcher: the bytes of one part (segment or init segment) over the Transport.

A clear part is fetched as a byte range (a sub-range of the segment, or of the single file
for EXT-X-BYTERANGE) and resumed after a cut from the next missing byte; an AES-128 part is
fetched whole and decrypted as it arrives (its plaintext size is proven by the padding of
its last block, so it is reported at the end). Retries follow the stream's ``Retry``: a
failure counts only while no progress (16 KiB) was made since the previous one.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional, Tuple

from ...errors import InvalidResponseError, ResourceChangedError, StreamError, TruncatedBodyError
from ...options import StreamOptions
from ...retry import Cancellation
from .keys import KeyStore, SegmentDecryptor, segment_iv
from .packed import probe
from .playlist import Key, Resource
from .transport import Abort, Transport

log = logging.getLogger(__name__)

_MIN_PROGRESS = 16 * 1024
_READ = 16 * 1024  # one socket read: small enough for a slow link to deliver promptly

OnSize = Callable[[int], None]
OnData = Callable[[int, bytes], None]
OnRetry = Callable[[Cancellation, int, float, str], None]


class _Progress:
    def __init__(self, pos: int, size: Optional[int]) -> None:
        self.pos = pos  # next byte of the part to fetch
        self.size = size  # the part's size once known


class PartFetcher:
    def __init__(
        self, transport: Transport, keys: KeyStore, options: StreamOptions, on_retry: Optional[OnRetry] = None
    ) -> None:
        self._transport = transport
        self._keys = keys
        self._retry = options.retry
        self._on_retry = on_retry  # (cancelled event of the fetch, attempt, delay, cause)
        self._lock = threading.Lock()
        self.retries = 0

    def size(self, resource: Resource, abort: Abort, cancelled: Cancellation) -> Optional[int]:
        """The length of a whole-file part from a HEAD (a 1-byte range GET if HEAD says none)."""

        def ask() -> Optional[int]:
            length = self._transport.head_length(resource.uri, abort)
            if length is not None:
                return length
            body = self._transport.open(resource.uri, 0, 1, abort)
            body.close()
            return body.total

        return self._with_retries(ask, cancelled)

    def head(self, resource: Resource, abort: Abort, cancelled: Cancellation) -> Optional[Tuple[Optional[int], int]]:
        """``(length in its file or None, length of its leading ID3 tags)`` of a clear part
        that may be packed audio, from its first bytes (None: cancelled)."""
        return self._with_retries(lambda: probe(self._transport, resource, abort), cancelled)

    def fetch(
        self,
        resource: Resource,
        key: Optional[Key],
        sequence: int,
        start: int,
        end: Optional[int],
        size: Optional[int],
        abort: Abort,
        cancelled: Cancellation,
        on_size: OnSize,
        on_data: OnData,
    ) -> None:
        if key is not None:
            self._with_retries(
                lambda: self._encrypted(resource, key, sequence, abort, cancelled, on_size, on_data), cancelled
            )
            return
        state = _Progress(start, size if resource.byterange is None else resource.byterange[1])
        failures = 0
        while not cancelled.is_set():
            before = state.pos
            try:
                self._clear(resource, state, end, abort, cancelled, on_size, on_data)
                return
            except StreamError as exc:
                if cancelled.is_set() or abort.aborted:
                    return  # cut on purpose: not a failure
                failures = 1 if state.pos - before >= _MIN_PROGRESS else failures + 1
                if not self._retry.is_transient(exc) or failures >= self._retry.attempts:
                    raise
                self._wait(failures, exc, cancelled)

    def _clear(self, resource: Resource, state: "_Progress", end, abort, cancelled, on_size, on_data) -> None:
        """One request from ``state.pos``; ``state`` keeps what was stored and learned."""
        base = resource.byterange[0] if resource.byterange else 0
        stop = end if end is not None else state.size
        if stop is not None and state.size is not None:
            stop = min(stop, state.size)  # never into the next part of a BYTERANGE file
        if stop is not None and state.pos >= stop:
            return
        body = self._transport.open(resource.uri, base + state.pos, None if stop is None else base + stop, abort)
        first = state.pos
        try:
            span = resource.byterange
            if span is not None and body.total is not None and span[0] + span[1] > body.total:
                raise InvalidResponseError(
                    f"the playlist's byte range reaches past the end of the file ({body.total} bytes)",
                    url=resource.uri,
                    byte_range=(span[0], span[0] + span[1]),
                )
            if state.size is None:
                # The resource's length, never the body's end: that may be the range asked
                # (a 206 with an unknown total, "/*"; a 200 without a length, cut there).
                total = body.total
                if total is not None:
                    state.size = total
                    on_size(total)
                    stop = total if end is None else min(end, total)
            elif resource.byterange is None and body.total is not None and body.total != state.size:
                # The stream's offsets were laid out with the first length: a part that
                # changed (or a HEAD that said another) would put bytes at the wrong place.
                raise ResourceChangedError(
                    f"the part is {body.total} bytes long, not {state.size} as first said", url=resource.uri
                )
            while not cancelled.is_set() and (stop is None or state.pos < stop):
                data = body.read(_READ if stop is None else min(_READ, stop - state.pos))
                if not data:
                    if stop is None:  # no length given: the end is proven here
                        state.size = state.pos
                        on_size(state.pos)
                    elif state.pos == first:  # nothing came: asked again, it could loop forever
                        raise TruncatedBodyError(
                            f"body ended at byte {state.pos} of {stop}", url=resource.uri, byte_range=(state.pos, stop)
                        )
                    break  # (an answer covering less than asked, a capped range: the next goes on)
                on_data(state.pos, data)
                state.pos += len(data)
        finally:
            body.close()

    def _encrypted(self, resource, key: Key, sequence, abort, cancelled, on_size, on_data) -> None:
        if key.uri is None:  # RFC 8216 4.3.2.4: required unless METHOD=NONE
            raise InvalidResponseError("HLS key without a URI", url=resource.uri)
        secret = self._keys.get(key.uri)
        decryptor = SegmentDecryptor(secret, segment_iv(key, sequence), resource.uri)
        span = resource.byterange
        body = self._transport.open(resource.uri, span[0] if span else 0, span[0] + span[1] if span else None, abort)
        pos = 0
        try:
            while not cancelled.is_set():
                data = body.read(_READ)
                if not data:
                    break
                plain = decryptor.update(data)
                if plain:
                    on_data(pos, plain)
                    pos += len(plain)
        finally:
            body.close()
        if cancelled.is_set():
            return
        tail = decryptor.finish()
        if tail:
            on_data(pos, tail)
            pos += len(tail)
        on_size(pos)

    def _with_retries(self, call, cancelled: Cancellation):
        failures = 0
        while True:
            try:
                return call()
            except StreamError as exc:
                if cancelled.is_set():
                    return None  # cut on purpose: not a failure
                failures += 1
                if not self._retry.is_transient(exc) or failures >= self._retry.attempts:
                    raise
                self._wait(failures, exc, cancelled)

    def _wait(self, failures: int, exc: StreamError, cancelled: Cancellation) -> None:
        delay = self._retry.delay(failures, getattr(exc, "retry_after", None))
        log.info("retrying in %.2fs after %s", delay, exc)
        with self._lock:
            self.retries += 1
        if self._on_retry is not None:
            self._on_retry(cancelled, failures + 1, delay, str(exc))
        cancelled.wait(delay)
