"""obstore (Python bindings of Rust's ``object_store``) as a client of the benchmark.

Used the way its documentation shows (https://developmentseed.org/obstore/latest/):

* a store: ``obstore.store.HTTPStore.from_url(url, client_options=...)``; the whole URL is the
  store's prefix, so the file itself is path ``""``. Plain http needs ``{"allow_http": True}``;
  over https the run's CA is trusted with ``{"root_certificate": <PEM text>}`` (``ClientConfig``:
  "A custom root CA certificate to trust for TLS, as PEM str or bytes ... added to the trusted
  roots rather than replacing them"), verification stays on.
* a sequential read: ``obstore.get(store, path).stream(min_chunk_size=1 MiB)`` (``ReadableFile``'s
  docs: "Systems looking to sequentially scan a file should instead consider using get");
* a random read: ``obstore.get_range(store, path, start=, length=)``; many known ranges at once:
  ``obstore.get_ranges`` (coalesced, up to 10 requests in parallel);
* a file object for a decoder: ``obstore.open_reader(store, path)``, a ``ReadableFile``
  (a HEAD for the size, then ``get_range`` of ``buffer_size`` = 1 MiB when its buffer runs out;
  its docs: "This buffer is cleared on seek").

Many files of one origin share one store (:func:`shared_store`): a store is obstore's client
(its own connection pool), scoped like a bucket. Those reads name the run in the path
(``/t/<tag>/<file>``, which the bench nginx maps back to ``/<file>``), since a query string in
an obstore path is percent-encoded into the file name.
"""

from __future__ import annotations

import threading
import urllib.parse
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

if TYPE_CHECKING:
    from tests.servers.tls import TlsFiles

MiB = 1024 * 1024

_SHARED: Dict[Tuple[str, Optional[str]], Any] = {}
_SHARED_LOCK = threading.Lock()


def client_options(url: str, tls: "Optional[TlsFiles]" = None) -> Dict[str, Any]:
    """``ClientConfig`` for ``url``: ``allow_http`` for http, the run's CA for https."""
    if urllib.parse.urlsplit(url).scheme == "https":
        if tls is None:
            raise ValueError(f"{url}: https needs the run's TLS files")
        return {"root_certificate": tls.ca.read_text()}
    return {"allow_http": True}


def store(url: str, tls: "Optional[TlsFiles]" = None) -> Any:
    """A fresh ``HTTPStore`` whose prefix is ``url`` (read the file at path ``""``)."""
    from obstore.store import HTTPStore

    return HTTPStore.from_url(url, client_options=client_options(url, tls))


def shared_store(url: str, tls: "Optional[TlsFiles]" = None) -> Tuple[Any, str]:
    """The one ``HTTPStore`` of ``url``'s origin in this process, and ``url``'s path in it."""
    parts = urllib.parse.urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    key = (origin, str(tls.ca) if tls is not None else None)
    with _SHARED_LOCK:
        st = _SHARED.get(key)
        if st is None:
            st = _SHARED[key] = store(origin, tls)
    return st, parts.path.lstrip("/")


def path_tagged(url: str, tag: str) -> str:
    """``url`` with the run's tag as a path prefix (``/t/<tag>/<file>``)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/t/{tag}{parts.path}"


def read(url: str, size: Optional[int] = None, tls: "Optional[TlsFiles]" = None, *, shared: bool = False) -> int:
    """One ``obstore.get`` streamed in chunks of at least 1 MiB, up to ``size`` bytes (None:
    to the end); ``shared``: through :func:`shared_store`. Returns the bytes read."""
    import obstore

    st, path = shared_store(url, tls) if shared else (store(url, tls), "")
    n = 0
    for chunk in obstore.get(st, path).stream(min_chunk_size=MiB):
        n += len(chunk)
        if size is not None and n >= size:  # the last chunk may hold more: counted up to size
            return size
    return n


def open_reader(url: str, tls: "Optional[TlsFiles]" = None) -> Any:
    """``obstore.open_reader`` of ``url`` on a fresh store: a seekable ``ReadableFile``."""
    import obstore

    return obstore.open_reader(store(url, tls), "")


class RangeStream:
    """``read(n)`` over one ``obstore.get`` of ``[start, start + length)`` streamed in chunks of
    at least ``min_chunk`` bytes (for the readers of case 6, which read with ``read(n)``)."""

    def __init__(self, url: str, start: int, length: int, *, min_chunk: int = 64 * 1024,
                 tls: "Optional[TlsFiles]" = None) -> None:
        import obstore

        result = obstore.get(store(url, tls), "", options={"range": (start, start + length)})
        self._chunks = iter(result.stream(min_chunk_size=min_chunk))
        self._pending = memoryview(b"")

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the range)."""
        out = bytearray()
        while len(out) < n:  # bounded: every pass takes bytes or ends the stream
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
            take = self._pending[: n - len(out)]
            out += take
            self._pending = self._pending[len(take):]
        return bytes(out)
