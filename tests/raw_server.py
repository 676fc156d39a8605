"""The lifecycle the suite's raw-socket servers share: a listener on 127.0.0.1, an accept
loop and one thread per connection, all named for the suite's leak checks (``THREAD_PREFIX``),
the port registered while it runs, every thread joined on exit."""

from __future__ import annotations

import select
import socket
import threading
from pathlib import Path
from typing import Any, List, Optional

from tests.servers._base import REGISTRY, THREAD_PREFIX


class RawServer:
    """Subclasses serve each accepted connection in :meth:`_on_connection` (its own thread),
    returning when ``stop`` is set."""

    name = "raw"  # of the threads and the registered path

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._threads: List[threading.Thread] = []

    def __enter__(self) -> Any:
        REGISTRY.add(self.port, Path(f"/nonexistent-{self.name}"))
        self._start(self._accept, self.name)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in list(self._threads):
            t.join(10)
        alive = [t for t in self._threads if t.is_alive()]
        self._listener.close()
        REGISTRY.remove(self.port)
        assert not alive, f"{self.name} threads did not end: {alive}"

    def _start(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=THREAD_PREFIX + name)
        self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            index, self.connections = self.connections, self.connections + 1
            self._start(self._on_connection, f"{self.name}-conn", sock, index)

    def _on_connection(self, sock: socket.socket, index: int) -> None:
        raise NotImplementedError

    def _recv_head(self, sock: socket.socket, buf: bytearray) -> Optional[bytes]:
        """The next request head on ``sock`` (``buf`` keeps what came after it); None if the
        client went or the server stops first."""
        while b"\r\n\r\n" not in buf:
            if self.stop.is_set():
                return None
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            try:
                piece = sock.recv(65536)
            except OSError:
                return None
            if not piece:
                return None
            buf += piece
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        buf[:] = rest
        return head
