"""HTTP for HLS: playlists, keys, segment (sub-)ranges over the network layer.

One ``Transport`` per stream, over one :class:`~kithara_io.net.Client`: keep-alive
connections to every host the playlists name, shared by all its segments (an ``HttpSource``
per segment file would hold a connection per segment: a TCP and TLS handshake for every 4 s
of audio), ``Accept-Encoding: identity``. The policy is a file's: the caller's credentials
(``Authorization``, ``Cookie``, the URL's userinfo, netrc) go only to the origin of the URL
opened (``home``; scheme, host, port), a segment or key on another origin gets the other
headers only (a key hook may add its own, :mod:`.keyhook`); environment proxies (CONNECT for
https), cookies a response set, TLS as asked; redirects resolved against the URL that
answered, so a playlist's URIs resolve against its final URL.
Each call is one request; retrying is the caller's (it knows what progress was made).
Errors are StreamErrors naming the URL: ``HTTPStatusError`` (with ``retry_after``),
``ConnectionFailedError``, ``InvalidResponseError``, ``TruncatedBodyError``.
"""

from __future__ import annotations

import http.client
import threading
import time
import zlib
from typing import Callable, Mapping, Optional, Tuple, TypeVar, Union

from ... import errors
from ...headers import content_coding, content_length, content_range, unsatisfied_range
from ...net import Client, Policy, Response
from ...net.connections import shutdown
from ...net.policy import USER_AGENT
from ...retry import Cancellation, Retry, Timeout, status_error
from ..answers import is_html_page, may_be_a_slice
from ..transport import Answer

#: Largest playlist read (a day of 2 s segments is ~3 MB; parsing 16 MiB takes seconds).
MAX_PLAYLIST_BYTES = 16 << 20
#: Largest key read (an AES-128 key is 16 bytes).
MAX_SMALL_BYTES = 64 << 10
T = TypeVar("T")


class Abort:
    """Lets another thread cut a request: while it waits for its answer (its connection is
    known from the moment it is connected) or a blocked body read (a cancelled or preempted
    fetch)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._response: Optional[Response] = None
        self._conn: object = None
        self.aborted = False

    def connected(self, conn: object) -> None:
        """The request's connection (the network layer's ``on_connect``)."""
        with self._lock:
            self._conn = conn
            aborted = self.aborted
        if aborted:
            shutdown(conn)  # type: ignore[arg-type]

    def attach(self, response: Optional[Response]) -> None:
        with self._lock:
            self._response = response
            self._conn = None  # the response knows it now; it may go back to the pool
            aborted = self.aborted
        if aborted and response is not None:
            _shutdown(response)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            response, conn = self._response, self._conn
        if response is not None:
            _shutdown(response)
        elif conn is not None:
            shutdown(conn)  # type: ignore[arg-type]


def _shutdown(response: Response) -> None:
    response.shutdown()  # a no-op once its connection went back to the pool


class Body:
    """A response body of ``[start, end)`` of ``url`` (``total``: the resource length)."""

    def __init__(self, response: Optional[Response], url: str, start: int, end: Optional[int], total: Optional[int]):
        self._response = response  # None: an empty body (a range past the resource's end)
        self.url = url
        self.start = start
        self.end = end  # None: until the connection closes
        self.total = total
        self.position = start
        self._length_promised = True  # set False for a 200 without Content-Length cut at ``end``

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes; b"" at the end. A body shorter than promised raises."""
        try:
            want = limit if self.end is None else min(limit, self.end - self.position)
            data = self._response.read1(want) if want > 0 and self._response is not None else b""
        except (http.client.HTTPException, OSError) as exc:
            raise errors.ConnectionFailedError(
                "connection broke while reading", url=self.url, byte_range=(self.position, self.end), cause=exc
            ) from None
        if not data and self.end is not None and self.position < self.end and limit > 0 and self._length_promised:
            raise errors.TruncatedBodyError(
                f"body ended after {self.position - self.start} of {self.end - self.start} bytes",
                url=self.url,
                byte_range=(self.start, self.end),
            )
        self.position += len(data)
        return data

    def close(self) -> None:
        if self._response is None:
            return
        if self.end is not None and self.position >= self.end:
            self._response.release_conn()  # read to its end: the connection is reusable
        else:
            self._response.close()


class Transport:
    def __init__(
        self,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Timeout = Timeout(),
        verify: Union[bool, str] = True,
        max_redirects: int = 10,
        cert: Union[None, str, Tuple[str, str]] = None,
        home: Optional[str] = None,
    ) -> None:
        self._count_lock = threading.Lock()
        self.requests = 0  # requests sent (all kinds)
        given = {"User-Agent": USER_AGENT, **dict(headers or {}), "Accept-Encoding": "identity"}
        policy = Policy(home, given, timeout=timeout, verify=verify, cert=cert, max_redirects=max_redirects)
        self._client = Client(policy)  # home None: credentials go everywhere

    def close(self) -> None:
        self._client.close()

    def text(self, url: str, abort: Optional[Abort] = None) -> Tuple[str, Optional[str], str]:
        """GET a playlist: ``(text, content type, final URL)``. InvalidResponseError if it is
        longer than :data:`MAX_PLAYLIST_BYTES`."""
        response = self._request("GET", url, None, abort)
        try:  # decoded, as a server may gzip a playlist whatever we ask
            data = _read_at_most(_decoded(response, url), url, MAX_PLAYLIST_BYTES, "an HLS playlist")
        except errors.StreamError:
            response.close()
            raise
        except (http.client.HTTPException, OSError, zlib.error) as exc:
            response.close()
            raise errors.ConnectionFailedError("connection broke while reading", url=url, cause=exc) from None
        except BaseException:
            response.close()
            raise
        response.release_conn()
        return data.decode("utf-8-sig", errors="replace"), response.headers.get("Content-Type"), response.url

    def data(
        self, url: str, byterange: Optional[Tuple[int, int]] = None, headers: Optional[Mapping[str, str]] = None
    ) -> bytes:
        """GET a small whole resource (a key), or ``(offset, length)`` of it, at most
        :data:`MAX_SMALL_BYTES`; ``headers`` added to this request (whatever its origin)."""
        body = self._open_network(url, *(_span(byterange)), headers=headers)
        try:
            return _read_at_most(lambda: body.read(64 * 1024), url, MAX_SMALL_BYTES, "a key")
        finally:
            body.close()

    def head_length(self, url: str, abort: Optional[Abort] = None) -> Optional[int]:
        """The resource length from a HEAD (None if the server does not say, or says the
        length of something a GET would be refused for: an encoded body, an HTML page)."""
        response = self._request("HEAD", url, None, abort)
        response.release_conn()
        encoded = content_coding(response.headers.get("Content-Encoding")) != "identity"
        if encoded or is_html_page(response.headers, url):
            return None
        return content_length(response.headers.get("Content-Length"))

    def open(self, url: str, start: int = 0, end: Optional[int] = None, abort: Optional[Abort] = None) -> Body:
        """Bytes ``[start, end)`` of ``url`` (``end`` None: to its end) as a streaming Body.
        A server ignoring Range answers 200: the prefix is skipped, the body cut at ``end``."""
        return self._open_network(url, start, end, abort)

    def _open_network(
        self,
        url: str,
        start: int = 0,
        end: Optional[int] = None,
        abort: Optional[Abort] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Body:
        ranged = start > 0 or end is not None
        header = f"bytes={start}-{'' if end is None else end - 1}" if ranged else None
        response = self._request("GET", url, header, abort, extra=headers, unsatisfiable=ranged)
        if response.status == 416:
            # A range from past the end of a part whose length no answer gave before (chunked
            # or close-delimited, a "/*" total): the 416 says the length, nothing to read.
            total = unsatisfied_range(response.headers.get("Content-Range"))
            response.close()
            if total is None or start < total:
                raise status_error(416, response.reason, response.headers, response.url)
            return Body(None, url, start, start, total)
        if ranged and response.status == 200 and may_be_a_slice(Answer.of(response), start, end):
            # Some servers (fsspec's test server, broken proxies) answer a range with 200 and
            # just the bytes asked: believed, the segment would end there. The answer to a
            # request without Range tells (as for a file: HttpSource._get_range).
            response.close()
            response = self._request("GET", url, None, abort, extra=headers)
        try:
            body = self._body(response, url, start, end)
        except BaseException:
            response.close()
            raise
        if abort is not None:
            abort.attach(response)
        return body

    def _body(self, response: Response, url: str, start: int, end: Optional[int]) -> Body:
        encoding = content_coding(response.headers.get("Content-Encoding"))
        if encoding != "identity":
            raise errors.InvalidResponseError(f"unexpected Content-Encoding {encoding!r}", url=url)
        if is_html_page(response.headers, url):
            raise errors.InvalidResponseError(
                "server answered with an HTML page, not the media (an error page or captive portal?)",
                url=url,
                byte_range=(start, end),
            )
        length_value = content_length(response.headers.get("Content-Length"))
        if response.status == 206:
            parsed = content_range(response.headers.get("Content-Range"))
            if parsed is None or parsed[0] != start or parsed[1] < start or (end is not None and parsed[1] >= end):
                raise errors.InvalidResponseError(
                    f"Content-Range {response.headers.get('Content-Range')!r} does not match the request",
                    url=url,
                    byte_range=(start, end),
                )
            return Body(response, url, start, parsed[1] + 1, parsed[2])
        body = Body(response, url, 0, length_value, length_value)  # 200: the whole resource
        while body.position < start:
            if not body.read(min(64 * 1024, start - body.position)):
                raise errors.TruncatedBodyError(
                    "body ended before the requested range", url=url, byte_range=(start, end)
                )
        if end is not None and (body.end is None or body.end > end):
            body._length_promised = body.end is not None
            body.end = end  # read no further than asked; the rest is dropped with the connection
        return body

    def _request(
        self,
        method: str,
        url: str,
        range_header: Optional[str],
        abort: Optional[Abort],
        *,
        extra: Optional[Mapping[str, str]] = None,
        unsatisfiable: bool = False,
    ) -> Response:
        """Send one request; an error status raises HTTPStatusError (a 416 is returned when
        ``unsatisfiable``: the caller reads its length)."""
        headers = {"Range": range_header} if range_header else {}
        if abort is not None and abort.aborted:
            raise errors.ConnectionFailedError("cancelled", url=url)
        with self._count_lock:
            self.requests += 1
        response = self._client.request(
            method, url, headers, extra=extra, on_connect=None if abort is None else abort.connected
        )
        if abort is not None:
            abort.attach(response)  # the response's connection, until it goes back to the pool
        if response.status >= 400 and not (unsatisfiable and response.status == 416):
            response.close()
            raise status_error(response.status, response.reason, response.headers, response.url)
        return response


def _read_at_most(read: Callable[[], bytes], url: str, limit: int, what: str) -> bytes:
    """``read()`` until it returns b""; InvalidResponseError once past ``limit`` bytes
    (memory stays bounded whatever the server sends)."""
    out = bytearray()
    while True:
        piece = read()
        if not piece:
            return bytes(out)
        out += piece
        if len(out) > limit:
            raise errors.InvalidResponseError(f"{what} longer than {limit} bytes", url=url)


def _span(byterange: Optional[Tuple[int, int]]) -> Tuple[int, Optional[int]]:
    if byterange is None:
        return 0, None
    return byterange[0], byterange[0] + byterange[1]


def _decoded(response: Response, url: str) -> Callable[[], bytes]:
    """A reader of ``response``'s body with a gzip or deflate Content-Encoding undone (a
    playlist server may send one whatever we ask); b"" at the end. InvalidResponseError for
    any other encoding."""
    encoding = content_coding(response.headers.get("Content-Encoding"))
    if encoding == "identity":
        return lambda: response.read1(64 * 1024)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise errors.InvalidResponseError(f"playlist in an unsupported Content-Encoding {encoding!r}", url=url)
    inflate = zlib.decompressobj(wbits=47)  # gzip or zlib, told by the header

    def read() -> bytes:
        for _ in range(1 << 16):  # bounded: every turn consumes input or ends
            data = response.read1(64 * 1024)
            if not data:
                return inflate.flush()
            out = inflate.decompress(data, MAX_PLAYLIST_BYTES + 1)
            if out:
                return out
        raise errors.InvalidResponseError("a playlist that does not decompress", url=url)

    return read


def with_retries(call: Callable[[], T], retry: Retry, cancelled: Cancellation, deadline: Optional[float] = None) -> T:
    """``call()`` again after transient failures (backoff, interruptible by ``cancelled``);
    no retry would start after ``deadline`` (a ``time.monotonic()`` value): the error is raised."""
    failures = 0
    while True:
        try:
            return call()
        except errors.StreamError as exc:
            failures += 1
            if cancelled.is_set() or not retry.is_transient(exc) or failures >= retry.attempts:
                raise
            delay = retry.delay(failures, getattr(exc, "retry_after", None))
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise
            if cancelled.wait(delay):
                raise
