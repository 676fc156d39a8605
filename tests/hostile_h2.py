"""A TLS range server speaking HTTP/2 (the ``h2`` library, server side) for the libcurl
HTTP/2 audit: serves ``data`` correctly (206 with Content-Range, Content-Length, ETag,
Accept-Ranges; flow control kept) except requests whose Range starts at or past ``far``,
which go to ``misbehave(link, stream_id, start, end, data)``. A client that does not pick
``h2`` by ALPN (``http.client``, which offers none) is served HTTP/1.1, always correctly: the
open's requests, and a request libcurl hands back to ``http.client``.

Every thread is named ``THREAD_PREFIX...`` and joined on exit; the port is in ``REGISTRY``
while the server runs (see tests/hostile_raw.py, its HTTP/1.1 counterpart)."""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from tests.raw_server import RawServer

Misbehave = Callable[["H2Link", int, int, int, bytes], Optional[bool]]
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class H2Link:
    """One HTTP/2 connection, run on its own thread: what a misbehave callback is given.
    Every method that waits keeps receiving (WINDOW_UPDATEs, resets, new requests, which
    queue up) and returns False once the client has gone or the server stops."""

    def __init__(self, server: "HostileH2Server", sock: ssl.SSLSocket, index: int) -> None:
        self.server, self.sock, self.index = server, sock, index
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.requests: Deque[Tuple[int, Dict[str, str]]] = deque()
        self.reset_by_client: List[int] = []
        self.gone = False

    # -- the wire ---------------------------------------------------------------------------
    def write(self, raw: bytes) -> bool:
        if self.gone:
            return False
        try:
            self.sock.sendall(raw)
        except OSError:
            self.gone = True
        return not self.gone

    def write_frame(self, frame) -> bool:
        """A frame as is (a hyperframe ``Frame``), past h2's state machine: what the
        protocol forbids. What h2 has queued goes first."""
        return self.flush() and self.write(frame.serialize())

    def flush(self) -> bool:
        out = self.h2.data_to_send()
        return self.write(out) if out else not self.gone

    def pump(self, timeout: float) -> bool:
        """Receive for up to ``timeout`` seconds and answer what the protocol wants."""
        if self.gone or self.server.stop.is_set():
            return False
        self.sock.settimeout(timeout)
        try:
            piece = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        except OSError:
            piece = b""
        if not piece:
            self.gone = True
            return False
        try:
            events = self.h2.receive_data(piece)
        except h2.exceptions.ProtocolError as exc:
            self.server.errors.append(repr(exc))
            self.gone = True
            return False
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.requests.append((event.stream_id, dict(event.headers)))
            elif isinstance(event, h2.events.StreamReset):
                self.reset_by_client.append(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.gone = True
        return self.flush()

    def wait(self, seconds: float) -> bool:
        """Keep the connection (receive, answer pings) for ``seconds``; False if it went."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return not self.gone
            if not self.pump(min(left, 0.05)):
                return False

    # -- answers ----------------------------------------------------------------------------
    def send_headers(self, stream_id: int, status: int, fields: Sequence[Tuple[str, str]] = (), end: bool = False) -> bool:
        self.h2.send_headers(stream_id, [(":status", str(status)), *fields], end_stream=end)
        return self.flush()

    def range_headers(self, start: int, end: int, length: Optional[int] = None) -> List[Tuple[str, str]]:
        """The fields of a right 206 for ``start``-``end`` (``length``: another Content-Length)."""
        return [
            ("content-range", f"bytes {start}-{end - 1}/{len(self.server.data)}"),
            ("content-length", str(end - start if length is None else length)),
            ("etag", '"v1"'),
            ("accept-ranges", "bytes"),
        ]

    def send_data(self, stream_id: int, data: bytes, end: bool = False, frame: int = 0) -> bool:
        """``data`` in DATA frames (at most ``frame`` bytes each, if given) as the client's
        windows let them go; False if the client reset the stream or went."""
        view = memoryview(data)
        while True:
            if stream_id in self.reset_by_client:
                return False
            try:
                room = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                return False
            if frame:
                room = min(room, frame)
            if room <= 0 and view:
                if not self.pump(0.05):
                    return False
                continue
            piece, view = view[:room], view[room:]
            self.h2.send_data(stream_id, bytes(piece), end_stream=end and not view)
            if not self.flush():
                return False
            if not view:
                return True

    def answer(self, stream_id: int, start: int, end: int) -> bool:
        """The right 206, whole."""
        if not self.send_headers(stream_id, 206, self.range_headers(start, end)):
            return False
        return self.send_data(stream_id, self.server.data[start:end], end=True)

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.INTERNAL_ERROR) -> bool:
        self.h2.reset_stream(stream_id, error_code=code)
        return self.flush()

    def goaway(self, last_stream_id: int, code: int = h2.errors.ErrorCodes.NO_ERROR) -> bool:
        self.h2.close_connection(error_code=code, last_stream_id=last_stream_id)
        return self.flush()


class HostileH2Server(RawServer):
    """See the module docstring. ``alpn``: the protocols offered (``h2`` first);
    ``settings``: the server's own HTTP/2 SETTINGS (h2.settings.SettingCodes -> value)."""

    name = "hostile-h2"

    def __init__(
        self,
        data: bytes,
        far: int,
        misbehave: Misbehave,
        tls_files,
        alpn: Sequence[str] = ("h2", "http/1.1"),
        settings: Optional[Dict[int, int]] = None,
    ) -> None:
        super().__init__()
        self.data, self.far, self.misbehave = data, far, misbehave
        self.settings = settings or {}
        self.errors: List[str] = []
        self.h2_connections = 0
        # (connection index, stream id, start, end) of every HTTP/2 request; (start, end) over 1.1
        self.h2_requests: List[Tuple[int, int, int, int]] = []
        self.h1_requests: List[Tuple[int, int]] = []
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(tls_files.cert), str(tls_files.key))
        self._context.set_alpn_protocols(list(alpn))

    def url(self, path: str = "/f") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def _on_connection(self, raw: socket.socket, index: int) -> None:
        with raw:
            raw.settimeout(5)
            try:
                sock = self._context.wrap_socket(raw, server_side=True)
            except OSError:
                return  # (a client that went during the handshake)
            with sock:
                if sock.selected_alpn_protocol() == "h2":
                    self._serve_h2(sock)
                else:
                    self._serve_h1(sock)

    def _range(self, spec: Optional[str]) -> Optional[Tuple[int, int]]:
        m = _RANGE.match(spec or "")
        if m is None:
            return None
        start = int(m.group(1))
        end = min(int(m.group(2)) + 1, len(self.data)) if m.group(2) else len(self.data)
        return start, end

    def _serve_h2(self, sock: ssl.SSLSocket) -> None:
        self.h2_connections += 1
        link = H2Link(self, sock, self.h2_connections)
        if self.settings:
            link.h2.local_settings = h2.settings.Settings(client=False, initial_values=self.settings)
        link.h2.initiate_connection()
        if not link.flush():
            return
        while not self.stop.is_set():
            if not link.requests:
                if not link.pump(0.05):
                    return
                continue
            stream_id, headers = link.requests.popleft()
            asked = self._range(headers.get("range"))
            if asked is None:  # (libcurl asks ranges only)
                link.send_headers(stream_id, 416, [("content-length", "0")], end=True)
                continue
            start, end = asked
            self.h2_requests.append((link.index, stream_id, start, end))
            if start >= self.far:
                if not self.misbehave(link, stream_id, start, end, self.data):
                    link.flush()
                    return  # (True: the connection goes on)
            elif not link.answer(stream_id, start, end):
                return

    def _serve_h1(self, sock: ssl.SSLSocket) -> None:
        buf = b""
        sock.settimeout(0.05)
        while not self.stop.is_set():
            while b"\r\n\r\n" not in buf:
                if self.stop.is_set():
                    return
                try:
                    piece = sock.recv(65536)
                except (socket.timeout, ssl.SSLWantReadError):
                    continue
                except OSError:
                    return
                if not piece:
                    return
                buf += piece
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^range:\s*(bytes=\d+-\d*)", head)
            total = len(self.data)
            asked = self._range(m.group(1).decode()) if m else None
            start, end = asked if asked else (0, total)
            if asked:
                self.h1_requests.append(asked)
                status = f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end - 1}/{total}\r\n"
            else:
                status = "HTTP/1.1 200 OK\r\n"
            status += f'Accept-Ranges: bytes\r\nETag: "v1"\r\nContent-Length: {end - start}\r\n\r\n'
            view = memoryview(status.encode() + self.data[start:end])
            while view:  # (a timeout per send: the server stops within 0.05 s)
                if self.stop.is_set():
                    return
                try:
                    n = sock.send(view)
                except (socket.timeout, ssl.SSLWantWriteError):
                    continue
                except OSError:
                    return
                view = view[n:]
