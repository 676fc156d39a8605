"""Small range requests over libcurl (pycurl), where it is installed: the network layer's
second kind of connection.

Why two: per small request libcurl costs least (it builds the request and parses the answer
in C, where ``http.client`` spends ~80 us of Python, its ``email`` header parser among it), and
per byte of a large body ``http.client`` does (it receives straight into the cache's memory;
libcurl hands every piece over as a new ``bytes``). Measured in bench/README.md, "The
transport" and "Issue #24, sixth round". So :class:`~.client.Client` sends here a GET (http
or https) of one bounded ``Range`` of at most :data:`SMALL` bytes, not through a proxy, when its
caller expects a ``206`` to a random read (the server answered ranges before, and the range
starts away from where the stream's recent ones ended: ``Client.request(random_read=True)``, see
``HttpSource._elsewhere``); every other request goes through ``http.client``.

Over https, libcurl offers HTTP/2 (ALPN ``h2``, then ``http/1.1``) and speaks it where the server
picks it; its answers read as HTTP/1.1's (status, header fields, body). Plain http stays on
HTTP/1.1 (no cleartext upgrade). Measured in bench/README.md, "HTTP/2".

A :class:`CurlConnection` runs libcurl's multi interface on the caller's thread: the request
runs until its headers are in (``getresponse``), then each read of the :class:`CurlAnswer`
runs it until that read has its bytes, so a reader gets the first bytes of a slow body at
once, as over ``http.client``. A body is kept to at most the range's length (the request
decides how much memory it takes, never the server): one that would pass it (a server
ignoring ``Range`` sends the whole file) is cut there, its status and headers left for the
caller to refuse, and a read past the cut raises. The body lands in memory allocated, and
faulted in, right after the request is sent, while the server answers; reads return views of
it. A cache keeps what a random read brings, and new memory costs a page fault per 4 KiB
(~75 us per 64 KiB on this project's VM), which would otherwise fall after the answer came:
see bench/README.md, "thirteenth round". An answer libcurl does not read as
HTTP (an old Shoutcast ``ICY 200 OK``, a malformed status line), or a socket past
select()'s reach, raises :class:`NotBuffered`: the client asks that hop again over
``http.client``.

Abort: ``kept_sock.shutdown()`` (what :func:`.connections.shutdown` calls from another
thread) marks the connection aborted and shuts its socket down; the transfer loop sees
either at once. Timeouts: libcurl's connect timeout, and the loop's read timeout: silence
longer than ``Timeout.read`` between two pieces of an answer fails the request, as a socket
timeout does on ``http.client``; and from the answer's first byte, within each wait, head and
body are held to ``speed_limit`` over ``speed_time``: a read of a piece waits for all of it, so
the fetch loop's check between pieces would not see a trickle, nor a head drip-fed a line at
a time (libcurl stops a head only at 300 KB). A connection that breaks mid-body gives what came and raises on the
read past it; one the server closes early ends the body short, as on ``http.client``.

Thread safety: one thread at a time uses a connection (the pool hands it to one request);
``kept_sock.shutdown`` may come from any thread.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import re
import socket
import time
import weakref
from typing import Any, Callable, List, Mapping, Optional, Tuple, Union, cast

from ..retry import Pace, Timeout
from . import curl_fork
from .connections import Piece, readable
from .heads import header_fields, status_line
from .tls import CertSpec, Verify, ca_bundle, cert_files

SMALL = 256 * 1024  # the largest range a CurlConnection serves
_MAX_FD = 1000  # select() in libcurl's multi interface stops at FD_SETSIZE (1024)
_RANGE = re.compile(r"bytes=(\d+)-(\d+)$|bytes=-(\d+)$")
_MAPPED = 16 * 1024  # a body of at least this bound lands in a mapping of its own (_landing)
_POPULATE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)  # Linux: faulted in by mmap()

# pycurl (libcurl, its OpenSSL, nghttp2...: ~6 MB of RSS) is imported with the first
# CurlConnection: a process that only streams never loads it.
pycurl: Any = None
usable = importlib.util.find_spec("pycurl") is not None


def _load() -> None:
    global pycurl, _NETWORK_FAILURES
    if pycurl is None:
        import pycurl as module

        _NETWORK_FAILURES = (
            module.E_OPERATION_TIMEDOUT,
            module.E_COULDNT_CONNECT,
            module.E_COULDNT_RESOLVE_HOST,
            module.E_GOT_NOTHING,
            module.E_PARTIAL_FILE,
            module.E_RECV_ERROR,
            module.E_SEND_ERROR,
        )
        pycurl = module


def range_bound(headers: Mapping[str, str]) -> Optional[int]:
    """How many body bytes the ``Range`` of these request headers asks for, if it is one
    bounded range of at most :data:`SMALL` bytes and every header can go on the wire as is;
    else None."""
    spec = headers.get("Range")
    if spec is None:
        return None
    match = _RANGE.match(spec)
    if match is None:
        return None
    first, last, suffix = match.groups()
    n = int(suffix) if suffix is not None else int(last) - int(first) + 1
    if not 0 < n <= SMALL:
        return None
    for name, value in headers.items():  # http.client refuses these with its own error
        if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
            return None
    return n


class NotBuffered(Exception):
    """libcurl cannot read this answer (see the module docstring): ask again over
    ``http.client``."""


class _Breaker:
    """What an abort handle shuts down: marks the connection aborted, breaks its socket."""

    def __init__(self, conn: "CurlConnection") -> None:
        self._conn = weakref.ref(conn)  # the connection holds this: no cycle to collect

    def shutdown(self, how: int) -> None:
        conn = self._conn()
        if conn is None:
            return
        conn.aborted = True
        sock = conn.sock
        if sock is not None:
            sock.shutdown(how)


class _Fields:
    """An answer's header fields as ``http.client``'s message gives them to ``Response``."""

    def __init__(self, fields: List[Tuple[str, str]]) -> None:
        self._fields = fields

    def items(self) -> List[Tuple[str, str]]:
        return self._fields


class CurlAnswer:
    """One answer (see :class:`.connections.Answer`): its body comes as the reads ask for it,
    each read running the transfer until it has its bytes (``http.client``'s semantics:
    ``read(n)`` and ``readinto`` fill up unless the body ends, ``read1`` returns what came)."""

    def __init__(self, conn: "CurlConnection") -> None:
        self.status = conn._status
        self.reason = conn._reason
        self.headers = _Fields(conn._fields)
        self._conn = conn

    def read(self, n: Optional[int] = None) -> Piece:
        conn = self._conn
        want = conn._bound if n is None or n < 0 else n
        conn._fill(want)
        return conn._take(want)

    def read1(self, n: int = -1) -> Piece:
        conn = self._conn
        conn._fill(1)
        return conn._take(conn._bound if n < 0 else n)

    def readinto(self, buf: memoryview) -> int:
        conn = self._conn
        conn._fill(len(buf))
        data = conn._take(len(buf))
        buf[: len(data)] = data
        return len(data)

    def isclosed(self) -> bool:
        """The transfer is over and its body read."""
        conn = self._conn
        return not conn._running and not conn._buffered

    def close(self) -> None:
        self._conn._stop()


class CurlConnection:
    """One libcurl handle to one origin (see the module docstring); the
    :class:`.connections.Connection` Protocol."""

    paces_itself = True  # its transfer loop holds an answer to the speed limit (_pump)

    def __init__(
        self, scheme: str, host: str, port: int, timeout: Timeout, verify: Verify = True, cert: CertSpec = None
    ) -> None:
        _load()
        bracketed = f"[{host}]" if ":" in host else host
        self._base = f"{scheme}://{bracketed}:{port}"
        self._timeout = timeout
        self._read_timeout = timeout.read
        self._multiplexed = False  # the last answer came over HTTP/2 (see dropped)
        self.sock: Optional[socket.socket] = None  # the socket libcurl uses now (ours, it holds a dup)
        self.kept_sock = _Breaker(self)
        self.aborted = False
        self._sockets: List[socket.socket] = []
        self._request: Optional[Tuple[str, Mapping[str, str], int]] = None
        self._curl = curl = pycurl.Curl()
        self._multi = pycurl.CurlMulti()
        curl_fork.track(self)
        curl.setopt(pycurl.NOSIGNAL, 1)
        # HTTP/2 where a TLS server offers it (ALPN), else HTTP/1.1; plain http stays on 1.1
        version = pycurl.CURL_HTTP_VERSION_2TLS if scheme == "https" else pycurl.CURL_HTTP_VERSION_1_1
        curl.setopt(pycurl.HTTP_VERSION, version)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout.connect * 1000)))
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.MAXCONNECTS, 1)
        curl.setopt(pycurl.OPENSOCKETFUNCTION, self._open_socket)
        # libcurl appends each header line here in C (no Python call per line); the head
        # is parsed once, when its blank line has come (_head_in).
        self._lines: List[bytes] = []
        curl.setopt(pycurl.HEADERFUNCTION, self._lines.append)
        curl.setopt(pycurl.WRITEFUNCTION, self._on_body)
        if scheme == "https":
            _trust(curl, verify, cert)
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._reason = ""
        self._fields: List[Tuple[str, str]] = []
        self._headers_done = False
        self._lines.clear()
        self._seen = 0  # header lines looked at by _head_in
        self._landing: Optional[Union[bytearray, mmap.mmap]] = None  # the body's memory
        self._given = 0  # body bytes read from it
        self._buffered = 0  # body bytes received and not read yet
        self._kept = 0  # body bytes received
        self._bound = 0
        self._refused = False  # NotBuffered: ask again over http.client
        self._overflow = False  # the body went past the bound: cut there
        self._running = False  # the handle is in the multi handle, its transfer not over
        self._error: Optional[OSError] = None  # what ended the transfer, raised past its bytes
        self._received_at = 0.0

    # -- the Connection Protocol ----------------------------------------------------------
    def connect(self) -> None:
        """Nothing to do: libcurl connects within the request (and reconnects a kept
        connection the server closed)."""

    def dropped(self) -> bool:
        """An idle connection that a late abort reached (an epoch cancel racing its fetch's
        end) is not used again; one the server closed is libcurl's to reconnect. Over
        HTTP/1.1, bytes waiting on an idle connection answer no request of ours (a server
        that sent more than its Content-Length): libcurl would read them as the next
        request's answer, so the connection is not used again either."""
        if self.aborted:
            return True
        sock = self.sock
        if sock is None or self._multiplexed:  # (HTTP/2 frames may come at any time)
            return False
        try:
            if not readable(sock):
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""  # b"": closed
        except OSError:
            return False  # (reset, or nothing after all: libcurl's to see)

    def held_sockets(self) -> List[socket.socket]:
        """The sockets this connection opened and has not closed (libcurl holds a dup of each)."""
        return list(self._sockets)

    def request(self, method: str, url: str, body: None = None, headers: Mapping[str, str] = {}) -> None:
        bound = range_bound(headers)
        if method != "GET" or bound is None:
            raise ValueError("a CurlConnection serves GETs of small bounded ranges only")
        self.request_range(url, headers, bound)

    def request_range(self, url: str, headers: Mapping[str, str], bound: int) -> None:
        """``request("GET", ...)`` with ``range_bound(headers)`` known already."""
        self._request = (url, headers, bound)

    def getresponse(self) -> CurlAnswer:
        """Send the request and run it until its headers are in. Raises :class:`NotBuffered`,
        or an OSError in ``http.client``'s terms (see the module docstring)."""
        assert self._request is not None, "request() first"
        target, headers, bound = self._request
        self._request = None
        self._reset()
        self._bound = bound
        if self.aborted:
            raise ConnectionAbortedError("request aborted")
        curl = self._curl
        curl.setopt(pycurl.URL, self._base + target)
        curl.setopt(pycurl.BUFFERSIZE, max(16 * 1024, bound))  # the body in as few callbacks as may be
        curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()] + ["Accept:", "Expect:"])
        self._multi.add_handle(curl)
        self._running = True
        self._perform()  # the request goes out
        self._land()  # while the server answers
        self._pump(self._head_in)
        self._head_in()  # (the transfer may have ended with the head's last line)
        if self._refused:
            self._stop()
            raise NotBuffered()
        if not self._headers_done:
            error = self._error  # (_stop forgets it)
            self._stop()
            raise error or ConnectionResetError("the answer ended before its headers")
        return CurlAnswer(self)

    def close(self) -> None:
        curl, self._curl = self._curl, None
        if curl is not None:
            self._multi.close()  # closes the connection it keeps (libcurl's copy of the socket)
            curl.close()
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self.sock = None
        self._running = False

    # -- the transfer -------------------------------------------------------------------
    def _fill(self, want: int) -> None:
        """Run the transfer until ``want`` body bytes wait to be read, or it is over."""
        if self._buffered < want and self._running:
            self._pump(lambda: self._buffered >= want)

    def _take(self, n: int) -> Piece:
        """Up to ``n`` waiting body bytes, a view of the body's memory; past the last byte,
        the error that ended the transfer, once."""
        k = min(n, self._buffered)
        if not k:
            error, self._error = self._error, None
            if error is not None and not self._running:
                raise error
            return b""
        start = self._given
        self._given += k
        self._buffered -= k
        landing = cast(Union[bytearray, mmap.mmap], self._landing)
        if not self._running and not self._buffered:
            self._landing = None  # all given: the views keep it as long as they live
            if start == 0 and 2 * k < len(landing):
                # A short answer (a server capping ranges) would keep the whole landing
                # for a few bytes: the server would decide how much memory a piece holds.
                return bytes(landing[:k])
        return memoryview(landing)[start : start + k]

    def _land(self) -> Union[bytearray, mmap.mmap]:
        """The body's memory: the bound, all of it faulted in now. Called as soon as the
        request is out, so the faults overlap the server's work; a larger body gets a
        mapping of its own (a heap block would take the memory that the copy a reader
        gets back just freed, and that copy would fault instead)."""
        if self._landing is None:
            bound = self._bound
            self._landing = mmap.mmap(-1, bound, flags=_POPULATE) if bound >= _MAPPED else bytearray(bound)
        return self._landing

    def _perform(self) -> int:
        """Let libcurl do what it can without waiting (send, receive); returns how many
        transfers are still running (0: this one is over)."""
        multi = self._multi
        ret, active = multi.perform()
        while ret == pycurl.E_CALL_MULTI_PERFORM:
            ret, active = multi.perform()
        return active

    def _pump(self, done: Callable[[], bool]) -> None:
        """Run the transfer until ``done()`` or its end; the read timeout counts silence from
        when this call began or the last bytes came, whichever is later (a body nobody read
        for a while is not silent)."""
        multi = self._multi
        began = time.monotonic()
        self._received_at = max(self._received_at, began)
        pace: Optional[Pace] = None  # from the answer's first line
        mark = (0, 0)  # body bytes and head lines the pace was told of
        while True:
            active = self._perform()
            if self.aborted:
                self._end(ConnectionAbortedError("request aborted"))
                return
            if not active:
                self._end(self._outcome())
                return
            if done():
                return
            now = time.monotonic()
            silent = now - self._received_at
            if not self._lines:  # nothing yet: connecting counts apart
                silent -= self._connect_allowance(now - began)
            elif pace is None:  # the answer has begun: it keeps the pace
                pace, mark = Pace(self._timeout, now), (self._kept, len(self._lines))
            else:
                kept, lines = mark
                mark = (self._kept, len(self._lines))
                if pace.slow(self._kept - kept + sum(map(len, self._lines[lines:])), now):
                    self._end(ConnectionError(pace.describe()))
                    return
            wait = self._read_timeout - silent
            if wait <= 0:
                self._end(TimeoutError("timed out"))
                return
            timer = multi.timeout()
            multi.select(min(wait, timer / 1000 if timer >= 0 else 1.0, 1.0))

    def _outcome(self) -> Optional[OSError]:
        """How the transfer that just ended went: None, or the error it ended with."""
        _, _, failed = self._multi.info_read()
        if not failed:
            return None
        _, code, message = failed[0]
        if self._overflow:
            return ConnectionError(f"the answer is longer than the {self._bound} bytes asked: cut there")
        if not self._head_in() and code not in _NETWORK_FAILURES:
            # Not an answer libcurl reads as HTTP (an old Shoutcast "ICY 200 OK", a
            # malformed status line or header): http.client's way has its own handling.
            self._refused = True
        if self._refused or code == pycurl.E_PARTIAL_FILE:
            return None  # (closed early: the body ends short, as on http.client)
        return _as_os_error(code, message)

    def _end(self, error: Optional[OSError]) -> None:
        """The transfer is over (or given up): what libcurl keeps of the connection stays."""
        if not self._running:
            return
        self._running = False
        self._error = error
        curl = self._curl
        if error is None:
            self._multiplexed = curl.getinfo(pycurl.INFO_HTTP_VERSION) == pycurl.CURL_HTTP_VERSION_2_0
        self._keep_sockets(curl.getinfo(pycurl.ACTIVESOCKET) if error is None else -1)
        self._multi.remove_handle(curl)  # mid-transfer: libcurl closes that connection

    def _stop(self) -> None:
        """Drop the rest of the answer (closed before its end: the connection goes too)."""
        if self._running:
            self._end(ConnectionAbortedError("answer closed"))
        self._buffered = 0
        self._error = None
        self._landing = None  # (a kept connection holds no body's memory)

    def _connect_allowance(self, elapsed: float) -> float:
        """Of the time before the first byte, what connecting took (libcurl's connect
        timeout bounds it; the read timeout counts from the request sent)."""
        connected = self._curl.getinfo(pycurl.CONNECT_TIME)
        return connected if connected > 0 else elapsed

    def _head_in(self) -> bool:
        """Has the answer's head come whole: its blank line, after the last status line
        (an interim 1xx answer's head comes before the real one's)? Parsed then, once."""
        if self._headers_done:
            return True
        lines = self._lines
        count = len(lines)
        if count == self._seen:
            return False
        self._seen = count
        self._received_at = time.monotonic()
        if lines[-1].strip(b"\r\n"):
            return False  # the blank line that ends a head has not come yet
        self._status, self._reason, first = status_line(lines)
        if 100 <= self._status < 200:
            return False  # an interim answer: the real one follows
        self._fields = header_fields(lines[first : count - 1])
        self._headers_done = True
        return True

    def _on_body(self, data: bytes) -> Optional[int]:
        self._received_at = time.monotonic()
        kept = self._kept
        room = self._bound - kept
        n = len(data)
        if n > room:  # more than asked (a 200 with the whole file): cut
            if room > 0:
                self._land()[kept : self._bound] = data[:room]
                self._buffered += room
                self._kept = self._bound
            self._overflow = True
            return 0  # ends the transfer
        self._land()[kept : kept + n] = data
        self._kept = kept + n
        self._buffered += n
        return None

    def _open_socket(self, purpose: int, address: Tuple[int, int, int, Any]) -> Any:
        if self.aborted:
            return pycurl.SOCKET_BAD
        family, socktype, protocol, _ = address
        sock = socket.socket(family, socktype, protocol)
        if sock.fileno() >= _MAX_FD:
            sock.close()
            self._refused = True
            return pycurl.SOCKET_BAD
        self._sockets.append(sock)
        self.sock = sock
        return sock  # libcurl is given a dup of it: shutting this one down breaks both

    def _keep_sockets(self, active: int) -> None:
        """After a transfer: close our copies of the sockets libcurl no longer holds
        (``active``: the fd of the connection it keeps, -1 for none). No close callback:
        libcurl may close a connection where pycurl cannot call into Python."""
        sockets = self._sockets
        if active == -1:
            kept: List[socket.socket] = []
        elif len(sockets) == 1:  # one connection, the one libcurl keeps (MAXCONNECTS 1)
            return
        else:
            inode = os.fstat(active).st_ino
            kept = [s for s in sockets if os.fstat(s.fileno()).st_ino == inode]
        for sock in sockets:
            if sock not in kept:
                sock.close()
        self._sockets = kept
        self.sock = kept[0] if kept else None


_NETWORK_FAILURES: Tuple[int, ...] = ()  # libcurl's codes of a failed network (set by _load)


def _trust(curl: Any, verify: Verify, cert: CertSpec) -> None:
    """The TLS settings of ``tls.context_for`` (the http.client connections'): the same CA
    bundle, hostname and certificate checks, client certificate."""
    ca = ca_bundle(verify)
    if ca is None:
        curl.setopt(pycurl.SSL_VERIFYPEER, 0)
        curl.setopt(pycurl.SSL_VERIFYHOST, 0)
    elif os.path.isdir(ca):
        curl.setopt(pycurl.CAPATH, ca)
    else:
        curl.setopt(pycurl.CAINFO, ca)
    cert_file, key_file = cert_files(cert)
    if cert_file:
        curl.setopt(pycurl.SSLCERT, cert_file)
        if key_file:
            curl.setopt(pycurl.SSLKEY, key_file)


def _as_os_error(code: int, message: str) -> OSError:
    """libcurl's failure as the exception ``http.client`` or ``ssl`` would have raised."""
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return TimeoutError(f"timed out ({message})")
    if code == pycurl.E_COULDNT_CONNECT:
        return ConnectionRefusedError(message)
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        return socket.gaierror(message)
    if code in (pycurl.E_GOT_NOTHING, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR):
        return ConnectionResetError(message)
    return OSError(message)


__all__ = ["SMALL", "CurlAnswer", "CurlConnection", "NotBuffered", "range_bound", "usable"]
