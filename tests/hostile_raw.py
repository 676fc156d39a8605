"""A raw-socket HTTP/1.1 range server for the libcurl audit: serves ``data`` correctly
(ranges, keep-alive) except requests whose Range starts at or past ``far``, which go to
``misbehave(sock, start, end, data, stop)``."""

from __future__ import annotations

import re
import select
import socket
import threading
from typing import Callable, List, Optional

from tests.raw_server import RawServer

Misbehave = Callable[[socket.socket, int, int, bytes, threading.Event], Optional[bool]]


class HostileServer(RawServer):
    name = "hostile"

    def __init__(self, data: bytes, far: int, misbehave: Misbehave) -> None:
        super().__init__()
        self.data, self.far, self.misbehave = data, far, misbehave
        self.heads: List[bytes] = []

    def url(self, path: str = "/f") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _on_connection(self, sock: socket.socket, index: int) -> None:
        buf = bytearray()
        with sock:
            while True:
                head = self._recv_head(sock, buf)
                if head is None:
                    return
                self.heads.append(head)
                m = re.search(rb"(?im)^range:\s*bytes=(\d+)-(\d*)", head)
                total = len(self.data)
                start = int(m.group(1)) if m else 0
                end = min(int(m.group(2)) + 1, total) if m and m.group(2) else total
                try:
                    if m and start >= self.far:
                        if not self.misbehave(sock, start, end, self.data, self.stop):
                            return  # (True: the connection goes on)
                        continue
                    if m:
                        hdr = f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end - 1}/{total}\r\n"
                    else:
                        hdr = "HTTP/1.1 200 OK\r\n"
                    hdr += f'Accept-Ranges: bytes\r\nETag: "v1"\r\nContent-Length: {end - start}\r\n\r\n'
                    sock.sendall(hdr.encode() + self.data[start:end])
                except OSError:
                    return


def send_all(sock: socket.socket, piece: bytes, stop: threading.Event) -> bool:
    """Send all of ``piece`` unless the client goes or the server stops (then False)."""
    view = memoryview(piece)
    while view:
        if stop.is_set():
            return False
        _, ready, _ = select.select([], [sock], [], 0.05)
        if not ready:
            continue
        try:
            n = sock.send(view)
        except OSError:
            return False
        view = view[n:]
    return True


def send_until_stopped(sock: socket.socket, piece: bytes, stop: threading.Event, limit: float = 30.0) -> int:
    """Send ``piece`` again and again until the client goes, the server stops or ``limit``
    seconds pass; bytes sent."""
    import time

    sent = 0
    began = time.monotonic()
    while time.monotonic() - began < limit and send_all(sock, piece, stop):
        sent += len(piece)
    return sent
