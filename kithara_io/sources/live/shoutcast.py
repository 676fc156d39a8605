"""Old Shoutcast (v1) servers: an answer whose status line is ``ICY 200 OK``.

http.client — so urllib3 and requests — refuses a status line that does not start with
``HTTP/`` (``BadStatusLine``), and no maintained Python HTTP client accepts this one; ffmpeg
and mpv special-case it too. So when a request fails that way it is sent again over a plain
socket and the head is parsed here (``http.client.parse_headers`` for the header block). The
request is HTTP/1.0: the body is close-delimited, never chunked.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Mapping, Optional, Tuple, Union

import urllib3

from ...errors import ConnectionFailedError, InvalidResponseError, cause_chain
from ...headers import decimal
from ...retry import FirstBytePace, Timeout

MAX_HEAD = 64 * 1024  # the most header bytes accepted


def is_icy_status_line(exc: Optional[BaseException]) -> bool:
    """Whether a request failed on an ``ICY ...`` status line (anywhere in its causes)."""
    return any(
        isinstance(link, http.client.BadStatusLine) and str(getattr(link, "line", "")).startswith("ICY")
        for link in cause_chain(exc)
    )


class IcyResponse:
    """The answer to a raw request: status, headers, and the socket the body follows on.

    Offers what the engine's HTTP body reads of a urllib3 response (``read1``, ``close``,
    ``release_conn``, ``connection.sock`` for aborts)."""

    def __init__(self, sock: socket.socket, status: int, reason: str, headers, first: bytes) -> None:
        self.sock = sock
        self.status = status
        self.reason = reason
        self.headers = headers
        self._pending = first  # body bytes that came in with the head

    @property
    def connection(self) -> "IcyResponse":
        return self  # what an abort handle shuts down: ``.sock``

    def read1(self, amt: int, decode_content: bool = False) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:amt], self._pending[amt:]
            return data
        return self.sock.recv(amt)

    def read(self, amt: Optional[int] = None, decode_content: bool = False) -> bytes:
        """Up to ``amt`` bytes (all until the server closes, for None), fewer only at the end."""
        out = bytearray()
        while amt is None or len(out) < amt:
            piece = self.read1(65536 if amt is None else amt - len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

    def readinto(self, buf: memoryview) -> int:
        if self._pending:
            n = min(len(buf), len(self._pending))
            buf[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        return self.sock.recv_into(buf)

    def close(self) -> None:
        self.sock.close()

    def release_conn(self) -> None:
        pass  # no pool: the socket is closed by close()


def request_icy(
    url: str,
    headers: Mapping[str, str],
    connect_timeout: Optional[float],
    read_timeout: Optional[float],
    verify: Union[bool, str, ssl.SSLContext] = True,
    attach=None,
    pace: Optional[Timeout] = None,
) -> IcyResponse:
    """GET ``url`` over a plain (or TLS) socket, accepting any ``XXX nnn reason`` status
    line. ``attach(sock)`` is called as soon as the socket is connected (for aborts);
    ``pace``: the head is held to its speed limit (a dripped head never trips the read
    timeout). Raises OSError (connection), ConnectionFailedError (a head too slow or cut)
    or InvalidResponseError (an unreadable head)."""
    parsed = urllib3.util.parse_url(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    sock = socket.create_connection((parsed.host, port), connect_timeout)
    try:
        if parsed.scheme == "https":
            sock = _tls_context(verify).wrap_socket(sock, server_hostname=parsed.host)
        if attach is not None:
            attach(sock)
        sock.settimeout(read_timeout)
        lines = [f"GET {parsed.request_uri} HTTP/1.0", f"Host: {parsed.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head, rest = _read_head(sock, url, pace)
        status, reason, fields = parse_head(head, url)
        return IcyResponse(sock, status, reason, fields, rest)
    except BaseException:
        sock.close()
        raise


def parse_head(head: bytes, url: str) -> Tuple[int, str, http.client.HTTPMessage]:
    """``(status, reason, headers)`` of a response head (without its blank line), any
    ``XXX nnn reason`` status line accepted. InvalidResponseError if it cannot be read."""
    status_line, _, header_block = head.partition(b"\r\n")
    parts = status_line.decode("latin-1").split(None, 2)
    status = decimal(parts[1]) if len(parts) >= 2 else None
    if status is None or not 100 <= status <= 999:
        raise InvalidResponseError(f"invalid status line {status_line[:80]!r}", url=url)
    try:
        fields = http.client.parse_headers(_Lines(header_block + b"\r\n\r\n"))
    except http.client.HTTPException as exc:  # a line over 64 KiB, more than 100 headers
        raise InvalidResponseError("unreadable response headers", url=url, cause=exc) from None
    return status, parts[2] if len(parts) > 2 else "", fields


def _tls_context(verify: Union[bool, str, ssl.SSLContext]) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify  # the network layer's shared one
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


def _read_head(sock: socket.socket, url: str, timeout: Optional[Timeout] = None) -> Tuple[bytes, bytes]:
    """The head and the body bytes that came with it; held to ``timeout``'s speed limit from
    the head's first byte (waiting for that byte is the read timeout's), as
    ``net.answer_heads`` holds a head ``http.client`` reads."""
    data = b""
    pace = FirstBytePace(timeout)
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise InvalidResponseError("response head too long", url=url)
        piece = sock.recv(4096)
        if not piece:
            raise ConnectionFailedError("connection closed before the response head", url=url)
        data += piece
        if pace.slow(len(piece)):
            raise ConnectionFailedError(f"the answer's head came too slowly: {pace.describe()}", url=url)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class _Lines:
    """The ``readline`` that ``http.client.parse_headers`` wants, over bytes."""

    def __init__(self, data: bytes) -> None:
        self._lines = data.splitlines(keepends=True)

    def readline(self, limit: int = -1) -> bytes:
        return self._lines.pop(0) if self._lines else b""


__all__ = ["IcyResponse", "is_icy_status_line", "parse_head", "request_icy"]
