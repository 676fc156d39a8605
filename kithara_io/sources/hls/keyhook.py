"""Keys behind an API: how an AES-128 key is asked for and turned into the key (``HlsKeys``).

Key servers in the wild want a token (a header or a query parameter), live on another origin
than the playlist, or serve the key wrapped by the app (XOR'd, AES key-wrapped, JSON...).
``HlsKeys`` is the hook, as the Rust kithara's ``KeyOptions`` (request headers, query
parameters, a key processor): ``open(url, hls_keys=HlsKeys(...))``.

A key request carries the stream's headers less its credentials (``Authorization``,
``Cookie``) when the key is on another origin than the playlist (the Transport's rule for
every request), then ``headers``, then what ``request(uri)`` adds. Keys are kept in memory
only; with ``keep=True`` and a disk cache, the key body as the server sent it (wrapped, if the
app wraps it) is kept as a cache entry too, private like every entry, so an encrypted stream
replays offline: the key server is asked first, the kept copy used when it cannot be reached.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

from ...errors import InvalidResponseError, StreamError, redact, server_unreachable
from ...retry import Retry
from .transport import Transport, with_retries

log = logging.getLogger(__name__)

KEY_BYTES = 16
KeyRequest = Callable[[str], Tuple[str, Mapping[str, str]]]
KeyTransform = Callable[[bytes, str], bytes]


@dataclass(frozen=True, eq=False)
class HlsKeys:
    """How the AES-128 keys of an HLS stream are fetched (``open(url, hls_keys=...)``).

    ``headers``: added to every key request (on any origin: they were given for the keys).
    ``request(uri) -> (url, headers)``: per key URI (the absolute URI the playlist names), the
    URL to ask instead and headers to add (they override ``headers``).
    ``query``: parameters appended to every key URL (a token the key server wants).
    ``transform(data, uri) -> bytes``: the fetched body to the 16-byte AES key (an app's wrapped
    key unwrapped); a result of another length is an ``InvalidResponseError`` naming the URI.
    ``keep``: with a disk cache, keep the fetched key bodies there for offline replay (off:
    keys never touch the disk). An exception raised by a hook is a ``StreamError`` naming the
    key URI (not retried). Hooks run on a download thread, once per key URI of the stream
    (keys of several URIs may be asked at once: the hooks must be thread-safe)."""

    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # tokens: not in logs
    query: Mapping[str, str] = field(default_factory=dict, repr=False)
    request: Optional[KeyRequest] = None
    transform: Optional[KeyTransform] = None
    keep: bool = False

    def __post_init__(self) -> None:
        for name in ("request", "transform"):
            hook = getattr(self, name)
            if hook is not None and not callable(hook):
                raise ValueError(f"HlsKeys.{name} must be callable, not {hook!r}")


def key_request(hooks: Optional[HlsKeys], uri: str) -> Tuple[str, Dict[str, str]]:
    """The URL to ask for the key ``uri`` and the headers to add (pure, but the hook)."""
    if hooks is None:
        return uri, {}
    url, headers = uri, dict(hooks.headers)
    request = hooks.request
    if request is not None:
        answer = _call(lambda: request(uri), uri, "request")
        if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], str)):
            raise StreamError(f"HLS key hook request returned {type(answer).__name__}, not (url, headers)", url=uri)
        url = answer[0]
        headers.update(dict(answer[1] or {}))
    if hooks.query:
        parts = urllib.parse.urlsplit(url)
        query = "&".join(filter(None, [parts.query, urllib.parse.urlencode(dict(hooks.query))]))
        url = urllib.parse.urlunsplit(parts._replace(query=query))
    return url, headers


def aes_key(hooks: Optional[HlsKeys], data: bytes, uri: str) -> bytes:
    """The 16-byte AES key from the fetched body ``data`` of key ``uri``."""
    transform = hooks.transform if hooks is not None else None
    if transform is not None:
        key = _call(lambda: transform(data, uri), uri, "transform")
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            size = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
            raise InvalidResponseError(f"HLS AES-128 key from the key hook transform is {size}, not 16 bytes", url=uri)
        return bytes(key)
    if len(data) != KEY_BYTES:
        raise InvalidResponseError(
            f"HLS AES-128 key is {len(data)} bytes, not 16 (a wrapped key needs HlsKeys.transform)", url=uri
        )
    return data


def fetch_key(transport: Transport, hooks: Optional[HlsKeys], retry: Retry, uri: str) -> bytes:
    """Fetch key ``uri`` through the hooks (retrying transient failures), the kept copy when
    the key server cannot be reached and ``keep`` is on; the 16-byte AES key."""
    url, headers = key_request(hooks, uri)
    keep = hooks is not None and hooks.keep and hasattr(transport, "kept_key")
    try:
        data = with_retries(lambda: transport.data(url, headers=headers), retry, threading.Event())
    except StreamError as exc:
        kept = transport.kept_key(uri) if keep and server_unreachable(exc) else None  # type: ignore[attr-defined]
        if kept is None:
            if url != uri:
                exc.url = redact(uri)  # the key the playlist names, not a URL the hook signed
            raise
        log.warning("HLS key %s: key server unreachable (%s); using the kept copy", uri, exc)
        return aes_key(hooks, kept, uri)
    key = aes_key(hooks, data, uri)
    if keep:
        transport.keep_key(uri, data)  # type: ignore[attr-defined]
    return key


def _call(hook: Callable[[], object], uri: str, name: str):
    try:
        return hook()
    except Exception as exc:  # noqa: BLE001 - the application's code: any failure is the stream's error
        raise StreamError(f"HLS key hook {name} failed", url=uri, cause=exc) from None
