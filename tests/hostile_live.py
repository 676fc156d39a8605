"""A raw-socket hostile live-stream server for the live-path audit (test_live_hostile.py).

Every connection's request head is recorded (``heads``, with the time it came in
``times``), then ``handler(conn)`` writes whatever it likes on the socket: a station's head
and ICY-framed audio, a dripped body, broken chunk framing, a redirect, nothing. Handlers
wait on ``conn.stop`` (set when the server stops) instead of sleeping, so every thread is
joined on exit. Threads are named with ``THREAD_PREFIX`` and the port is registered, so
``no_leaks`` tells the server's side from the client's.

:data:`AUDIO` is the station's audio: ``audio(start, n)`` its bytes from ``start`` (cyclic),
which a test compares with what the reader got.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from typing import Callable, Iterable, List, Optional

from tests.raw_server import RawServer

AUDIO = random.Random(14).randbytes(1 << 20)


def audio(start: int, n: int) -> bytes:
    """``n`` bytes of the station's audio from offset ``start`` (the payload repeats)."""
    out = bytearray()
    pos = start % len(AUDIO)
    while len(out) < n:
        piece = AUDIO[pos : pos + n - len(out)]
        out += piece
        pos = 0
    return bytes(out)


def station_head(metaint: Optional[object] = None, status: str = "HTTP/1.1 200 OK", extra: str = "") -> bytes:
    """A station's answer head (``icy-name``; ``icy-metaint`` when given: any text),
    close-delimited unless ``extra`` says otherwise."""
    lines = [status, "Content-Type: audio/mpeg", "icy-name: Hostile FM"]
    if metaint is not None:
        lines.append(f"icy-metaint: {metaint}")
    head = "\r\n".join(lines) + "\r\n" + extra
    return (head + "\r\n").encode("latin-1")


def meta_block(text: bytes) -> bytes:
    """A metadata block: its length byte and ``text`` NUL-padded to a multiple of 16."""
    blocks = -(-len(text) // 16)
    assert blocks < 256
    return bytes([blocks]) + text.ljust(blocks * 16, b"\0")


def icy_frame(data: bytes, metaint: int, block: Callable[[int], bytes], first: int = 0) -> bytes:
    """``data`` with ``block(i)`` (a whole block, its length byte first) after every
    ``metaint`` audio bytes; ``first``: the index of the first block."""
    out = bytearray()
    for i, at in enumerate(range(0, len(data), metaint)):
        out += data[at : at + metaint]
        if at + metaint <= len(data):
            out += block(first + i)
    return bytes(out)


def chunked(pieces: Iterable[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


class Conn:
    """One accepted connection as a handler sees it."""

    def __init__(self, sock: socket.socket, index: int, head: bytes, stop: threading.Event) -> None:
        self.sock, self.index, self.head, self.stop = sock, index, head, stop
        self.sent = 0  # bytes handed to the socket

    def send(self, data: bytes) -> bool:
        """All of ``data`` unless the client goes or the server stops (then False)."""
        view = memoryview(data)
        while view:
            if self.stop.is_set():
                return False
            _, ready, _ = select.select([], [self.sock], [], 0.05)
            if not ready:
                continue
            try:
                n = self.sock.send(view)
            except OSError:
                return False
            self.sent += n
            view = view[n:]
        return True

    def drip(self, data: bytes, gap: float, limit: float = 60.0) -> bool:
        """``data`` one byte every ``gap`` seconds (at most ``limit`` seconds)."""
        began = time.monotonic()
        for i in range(len(data)):
            if time.monotonic() - began > limit or not self.send(data[i : i + 1]) or self.stop.wait(gap):
                return False
        return True

    def push(self, piece: Callable[[int], bytes], limit: float = 30.0) -> int:
        """``piece(i)`` for i = 0, 1, ... until the client goes, the server stops or
        ``limit`` seconds pass; the number of pieces sent."""
        began, i = time.monotonic(), 0
        while time.monotonic() - began < limit and self.send(piece(i)):
            i += 1
        return i

    def until_gone(self, limit: float = 30.0) -> None:
        """Hold the connection open, silent, until the client closes it (or the server stops)."""
        began = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - began < limit:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                try:
                    if not self.sock.recv(4096):
                        return
                except OSError:
                    return


Handler = Callable[[Conn], None]


class LiveServer(RawServer):
    """Accepts connections on 127.0.0.1; each one's head is recorded, then ``handler(conn)``."""

    name = "hostile-live"

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.heads: List[bytes] = []
        self.times: List[float] = []
        self.errors: List[BaseException] = []
        self._lock = threading.Lock()

    def url(self, path: str = "/live.mp3", userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def _on_connection(self, sock: socket.socket, index: int) -> None:
        with sock:
            head = self._recv_head(sock, bytearray())
            if head is None:
                return
            with self._lock:
                self.heads.append(head)
                self.times.append(time.monotonic())
            try:
                self.handler(Conn(sock, index, head, self.stop))
            except OSError:
                pass
            except BaseException as exc:  # a broken handler fails the test, not silently
                self.errors.append(exc)
