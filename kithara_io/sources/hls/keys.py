"""AES-128 segment encryption (RFC 8216 4.3.2.4): the IV, streaming CBC decryption, keys.

``SegmentDecryptor`` decrypts a segment as its bytes arrive (so a reader can start before the
segment is complete) and strips the PKCS#7 padding at the end. ``KeyStore`` fetches each key
URI once and keeps it. ``SAMPLE-AES`` and unknown methods are refused with a clear error.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Optional

from ...errors import InvalidResponseError, StreamError
from ...extras import missing_extra
from .playlist import Key

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
except ModuleNotFoundError as exc:
    raise missing_extra("hls", "HLS streams", exc) from exc

BLOCK = 16


def check_supported(key: Optional[Key], url: str) -> None:
    """Raise a StreamError for an encryption this library cannot decrypt."""
    if key is None:
        return
    if key.method != "AES-128":
        raise StreamError(f"HLS encryption method {key.method} is not supported (only AES-128)", url=url)
    if not key.uri:
        raise InvalidResponseError("HLS AES-128 key without a URI", url=url)


def segment_iv(key: Key, sequence: int) -> bytes:
    """The IV attribute, else the media sequence number as a 128-bit big-endian integer."""
    if key.iv is not None:
        return key.iv
    return sequence.to_bytes(BLOCK, "big")


class SegmentDecryptor:
    """AES-128-CBC over one segment, fed in arbitrary pieces. ``update`` returns the
    plaintext that is certain (the last block is held back: it carries the padding);
    ``finish`` returns the rest, unpadded, or raises if the padding is not PKCS#7."""

    def __init__(self, key: bytes, iv: bytes, url: str) -> None:
        self._decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        self._pending = b""  # decrypted, not yet handed out (the last block)
        self._url = url

    def update(self, data: bytes) -> bytes:
        plain = self._pending + self._decryptor.update(data)
        cut = max(0, len(plain) - BLOCK)
        self._pending = plain[cut:]
        return plain[:cut]

    def finish(self) -> bytes:
        try:
            tail = self._pending + self._decryptor.finalize()
        except ValueError as exc:  # not a whole number of blocks
            raise InvalidResponseError(
                "encrypted HLS segment is not a whole number of AES blocks", url=self._url, cause=exc
            ) from None
        pad = tail[-1] if tail else 0
        if not tail or not 1 <= pad <= BLOCK or tail[-pad:] != bytes([pad]) * pad:
            raise InvalidResponseError("encrypted HLS segment has no valid padding (wrong key or IV?)", url=self._url)
        return tail[:-pad]


class KeyStore:
    """Keys by URI, each fetched once (``fetch(uri) -> bytes``) and kept; thread-safe.

    Ownership: ``_lock`` guards ``_keys`` and ``_locks``; a key's own lock is held while it
    is fetched, so concurrent segments wait for one fetch instead of sending several."""

    def __init__(self, fetch: Callable[[str], bytes]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys: Dict[str, bytes] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self.fetches = 0

    def get(self, uri: str) -> bytes:
        with self._lock:
            if uri in self._keys:
                return self._keys[uri]
            lock = self._locks.setdefault(uri, threading.Lock())
        with lock:
            with self._lock:
                if uri in self._keys:
                    return self._keys[uri]
            key = self._fetch(uri)
            if len(key) != BLOCK:
                raise InvalidResponseError(f"HLS AES-128 key is {len(key)} bytes, not 16", url=uri)
            with self._lock:
                self._keys[uri] = key
                self.fetches += 1
            return key
