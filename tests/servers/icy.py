"""An internet-radio server for the tests: live audio with ICY metadata, in the framings
real stations use.

Each mount (``server.add("/live.mp3", Station(...))``) is one endless (or ``limit``-long)
stream of audio bytes: ``payload`` looped, at ``rate`` bytes per second (or as fast as the
client takes). A listener joins at the station's live position (its clock starts when the
mount is added, at ``clock_start``), as on a real station, so the first byte it gets is in
the middle of a frame. Framings: ``"close"`` (HTTP/1.0, body delimited by closing, what
Icecast sends), ``"chunked"`` (HTTP/1.1 chunked, no length) and ``"icy"`` (the ``ICY 200
OK`` status line of old Shoutcast servers, written by hand on the socket: no HTTP library
sends it). When the request has ``Icy-MetaData: 1`` and ``metaint`` is set, a metadata block
follows every ``metaint`` audio bytes; the title changes every ``title_every`` bytes of the
station's position. The first ``drops`` connections to reach ``drop_after`` audio bytes are
cut there; with ``fail_status``, connections after those cuts are refused with that status.

Everything a connection sent is recorded (:class:`Listener`): where it joined, how many
audio bytes, which titles at which audio offset, so tests can assert exactly.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ._base import ServerBase, is_disconnect

KiB = 1024


def encode_block(fields: Mapping[str, str]) -> bytes:
    """One metadata block (without its length byte): ``Key='value';`` pairs, NUL-padded to
    a multiple of 16 bytes (at most 255 * 16)."""
    text = "".join(f"{key}='{value}';" for key, value in fields.items()).encode("utf-8")
    padded = text + b"\0" * (-len(text) % 16)
    if len(padded) > 255 * 16:
        raise ValueError("metadata block too long")
    return padded


def icy_frame(fields: Optional[Mapping[str, str]]) -> bytes:
    """Length byte and block; ``None`` is the one-byte ``L = 0`` (no change)."""
    if fields is None:
        return b"\0"
    block = encode_block(fields)
    return bytes([len(block) // 16]) + block


def icy_body(audio: bytes, interval: int, titles: Sequence[Optional[str]]) -> bytes:
    """``audio`` with a block after every ``interval`` bytes: block k carries ``titles[k]``
    as ``StreamTitle`` (None: L = 0). One title per complete interval."""
    out = bytearray()
    for k in range(len(audio) // interval):
        out += audio[k * interval : (k + 1) * interval]
        title = titles[k]
        out += icy_frame(None if title is None else {"StreamTitle": title})
    out += audio[(len(audio) // interval) * interval :]
    return bytes(out)


@dataclasses.dataclass
class Station:
    """One mount point. ``payload`` is looped; ``header`` is sent first to every listener
    (Ogg header pages); ``join_points`` are the payload offsets where a listener may start
    (Ogg page starts; None: any byte)."""

    payload: bytes
    content_type: str = "audio/mpeg"
    metaint: Optional[int] = 16000
    titles: Sequence[str] = ("Station ident",)
    title_every: Optional[int] = None  # station bytes between title changes (None: one title)
    stream_url: Optional[str] = None  # StreamUrl sent beside the title
    rate: Optional[float] = None  # audio bytes per second; None: as fast as the client reads
    burst: int = 0  # bytes sent at once on connect, before pacing (Icecast's burst-on-connect)
    framing: str = "close"  # "close" | "chunked" | "icy"
    limit: Optional[int] = None  # audio bytes per connection, then a clean end
    drops: int = 0  # the first `drops` connections to reach `drop_after` audio bytes are cut
    drop_after: int = 64 * KiB
    drop_how: str = "reset"  # "reset" (RST) or "close" (FIN, as when a source goes away)
    fail_status: Optional[int] = None  # once the drops are done, new connections get this status
    clock_start: int = 0  # station position when the mount is added
    header: bytes = b""
    join_points: Optional[Sequence[int]] = None
    icy_headers: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {
            "icy-name": "Kithara Test FM",
            "icy-genre": "Test",
            "icy-description": "Sweeps and noise",
            "icy-br": "160",
            "icy-url": "http://radio.invalid/",
        }
    )
    chunk: int = 4 * KiB  # bytes per write (with a rate), 64 KiB without
    started: float = dataclasses.field(default_factory=time.monotonic)
    cuts: int = 0  # connections cut so far

    def title_at(self, position: int) -> str:
        if not self.title_every:
            return self.titles[0]
        return self.titles[(position // self.title_every) % len(self.titles)]

    def live_position(self, now: float) -> int:
        if self.rate is None:
            return self.clock_start
        return self.clock_start + int((now - self.started) * self.rate)

    def join(self, position: int) -> int:
        """The station position where a listener arriving at ``position`` starts."""
        if self.join_points is None:
            return position
        size = len(self.payload)
        base, offset = divmod(position, size)
        later = [p for p in self.join_points if p >= offset]
        return base * size + later[0] if later else (base + 1) * size + self.join_points[0]


@dataclasses.dataclass
class Listener:
    """What one connection was sent."""

    path: str
    request_headers: Dict[str, str]
    joined_at: int = 0  # station position of its first audio byte
    audio_sent: int = 0
    titles: List[Tuple[int, str]] = dataclasses.field(default_factory=list)  # (audio offset, title)
    dropped: bool = False
    finished: bool = False
    status: int = 200


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "KitharaIcy/1.0"
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        server: IcyServer = self.server.owner  # type: ignore[attr-defined]
        station = server.station(self.path.split("?")[0])
        if station is None:
            self.send_error(404)
            return
        if isinstance(station, str):
            self._send_text(station)
            return
        listener = server.connect(self.path, dict(self.headers.items()))
        with server.lock:
            failing = station.fail_status is not None and station.cuts >= station.drops
            if failing:
                listener.status = station.fail_status
        if failing:
            self.send_error(station.fail_status)
            return
        wants_meta = self.headers.get("Icy-MetaData", "").strip() == "1" and station.metaint
        self._send_headers(station, bool(wants_meta))
        try:
            self._stream(server, station, listener, bool(wants_meta))
        except OSError as exc:
            if not is_disconnect(exc):
                raise

    def _send_text(self, text: str) -> None:
        body = text.encode("utf-8")
        kind = "audio/x-scpls" if self.path.endswith(".pls") else "audio/x-mpegurl"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_headers(self, station: Station, meta: bool) -> None:
        headers = [("Content-Type", station.content_type), *station.icy_headers.items()]
        if meta:
            headers.append(("icy-metaint", str(station.metaint)))
        headers += [("Cache-Control", "no-cache"), ("Server", self.server_version)]
        if station.framing == "chunked":
            status = "HTTP/1.1 200 OK"
            headers.append(("Transfer-Encoding", "chunked"))
        elif station.framing == "icy":
            status = "ICY 200 OK"
        else:
            status = "HTTP/1.0 200 OK"
            headers.append(("Connection", "close"))
        head = status + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        self.wfile.write(head.encode("latin-1"))

    def _stream(self, server: "IcyServer", station: Station, listener: Listener, meta: bool) -> None:
        now = time.monotonic()
        position = station.join(station.live_position(now))
        listener.joined_at = position
        writer = _BodyWriter(self.wfile, station.framing == "chunked")
        if station.header:
            writer.write(station.header)  # before any metadata interval counts (as Icecast)
        sent = 0  # audio bytes on this connection
        until_meta = station.metaint if meta else None
        last_title: Optional[str] = None
        chunk = station.chunk if station.rate else 64 * KiB
        limit = station.limit
        # A suffix request (the tail probe kithara_io.open sends beside its first request)
        # is never cut: it is dropped by the client at once, and must not use up a cut.
        probe = self.headers.get("Range", "").startswith("bytes=-")
        cut = station.drop_after if station.drops and not probe else None
        while not server.stop_event.is_set():
            want = chunk
            if limit is not None:
                want = min(want, limit - sent)
            if cut is not None:
                if sent >= cut:
                    with server.lock:
                        if station.cuts < station.drops:
                            station.cuts += 1
                            break
                    cut = None  # the drops are done: this one plays on
                    continue
                want = min(want, cut - sent)
            if want <= 0:
                break
            if station.rate and sent >= station.burst:
                server.stop_event.wait(max(0.0, now + (sent - station.burst) / station.rate - time.monotonic()))
            out = bytearray()
            while want > 0:
                take = want if until_meta is None else min(want, until_meta)
                out += station_bytes(station.payload, position + sent, take)
                sent += take
                want -= take
                if until_meta is not None:
                    until_meta -= take
                    if until_meta == 0:
                        title = station.title_at(position + sent)
                        fields = None
                        if title != last_title:
                            fields = {"StreamTitle": title}
                            if station.stream_url is not None:
                                fields["StreamUrl"] = station.stream_url
                            with server.lock:
                                listener.titles.append((sent, title))
                            last_title = title
                        out += icy_frame(fields)
                        until_meta = station.metaint
            writer.write(bytes(out))
            with server.lock:
                listener.audio_sent = sent
        if cut is not None and sent >= cut and not server.stop_event.is_set():
            with server.lock:
                listener.dropped = True
            self._cut(station.drop_how)
            return
        if not server.stop_event.is_set():
            writer.end()
            with server.lock:
                listener.finished = True

    def _cut(self, how: str) -> None:
        self.close_connection = True
        if how == "close":
            self.connection.shutdown(socket.SHUT_WR)  # FIN: what a listener sees when a source leaves
            return
        # RST: linger 0, then really close (the makefile objects hold references too).
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.wfile.close()
        self.rfile.close()
        self.connection.close()
        self.wfile = io.BytesIO()  # what the handler's epilogue flushes and closes
        self.rfile = io.BytesIO()


class _BodyWriter:
    def __init__(self, wfile, chunked: bool) -> None:
        self._wfile = wfile
        self._chunked = chunked

    def write(self, data: bytes) -> None:
        if self._chunked:
            self._wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._wfile.write(data)

    def end(self) -> None:
        if self._chunked:
            self._wfile.write(b"0\r\n\r\n")


def head_listeners(listeners: List[Listener]) -> List[Listener]:
    """Connections other than the tail probe ``kithara_io.open`` sends beside its first
    request (``Range: bytes=-N``; a station answers it with its stream, dropped at once)."""
    return [x for x in listeners if not x.request_headers.get("Range", "").startswith("bytes=-")]


def station_bytes(payload: bytes, position: int, n: int) -> bytes:
    """``n`` bytes of the looped payload from station position ``position``."""
    size = len(payload)
    out = bytearray()
    while n > 0:
        offset = position % size
        take = min(n, size - offset)
        out += payload[offset : offset + take]
        position += take
        n -= take
    return bytes(out)


class IcyServer(ServerBase):
    """The radio server; add mounts with :meth:`add`. Context manager, like the others."""

    kind = "icy"

    def __init__(self) -> None:
        # The registry's root: nothing is served from a directory, this one holds no media.
        super().__init__(Path(__file__).parent, _Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.lock = threading.Lock()
        self.stop_event = self.httpd.stop_event
        self._stations: Dict[str, "Station | str"] = {}
        self._listeners: List[Listener] = []

    def add(self, path: str, station: Station) -> str:
        """Mount ``station`` at ``path``; its clock starts now. Returns its URL."""
        station.started = time.monotonic()
        with self.lock:
            self._stations[path] = station
        return self.url(path)

    def add_playlist(self, path: str, text: str) -> str:
        """Serve ``text`` at ``path`` (a .pls or .m3u station playlist). Returns its URL."""
        with self.lock:
            self._stations[path] = text
        return self.url(path)

    def station(self, path: str) -> "Optional[Station | str]":
        with self.lock:
            return self._stations.get(path)

    def connect(self, path: str, headers: Dict[str, str]) -> Listener:
        listener = Listener(path, headers)
        with self.lock:
            self._listeners.append(listener)
        return listener

    def listeners(self, path: Optional[str] = None) -> List[Listener]:
        """Copies of the connections so far (of ``path`` only, when given)."""
        with self.lock:
            found = [dataclasses.replace(x, titles=list(x.titles)) for x in self._listeners]
        return [x for x in found if path is None or x.path.split("?")[0] == path]


__all__ = ["IcyServer", "Listener", "Station", "encode_block", "icy_body", "head_listeners", "icy_frame", "station_bytes"]
