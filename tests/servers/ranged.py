"""A small HTTP/1.1 file server with byte ranges, validators, throttling and a request log."""

from __future__ import annotations

import dataclasses
import email.utils
import http.server
import mimetypes
import os
import posixpath
import threading
import time
import urllib.parse
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from ._base import RequestRecord, ServerBase, TrackingHTTPServer, is_disconnect


class RangeNotSatisfiable(Exception):
    """The Range header is valid but selects no byte of the file (-> 416)."""


def parse_range(value: str, total: int) -> Optional[tuple[int, int]]:
    """Parse a single ``bytes=`` range against a file of ``total`` bytes.

    Returns the inclusive ``(first, last)`` to serve, or ``None`` when the header must be
    ignored (other unit, several ranges, bad syntax). Raises :class:`RangeNotSatisfiable`.
    """
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not dash or not (first_s or last_s):
        return None
    if (first_s and not first_s.isdigit()) or (last_s and not last_s.isdigit()):
        return None
    if not first_s:  # bytes=-n: the last n bytes
        n = int(last_s)
        if n == 0 or total == 0:
            raise RangeNotSatisfiable
        return max(0, total - n), total - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None
    if first >= total:
        raise RangeNotSatisfiable
    last = int(last_s) if last_s else total - 1
    return first, min(last, total - 1)


class TokenBucket:
    """Thread-safe token bucket shared by all connections of a server: one slow link."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self, n: int, wait: Callable[[float], None]) -> None:
        """Reserve ``n`` bytes, then ``wait`` until the link has carried them."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            wait(debt / self.rate)


class StallingBucket(TokenBucket):
    """The server's one link, which stops for ``stall`` seconds once ``after`` bytes went."""

    def __init__(self, rate: float, burst: int, after: int, stall: float) -> None:
        super().__init__(rate, burst)
        self.after, self.stall = after, stall
        self._sent = 0
        self._resume_at = None
        self._stall_lock = threading.Lock()

    def take(self, n, wait) -> None:
        with self._stall_lock:
            self._sent += n
            if self._resume_at is None and self._sent >= self.after:
                self._resume_at = time.monotonic() + self.stall
            resume_at = self._resume_at
        if resume_at is not None and resume_at > time.monotonic():
            wait(resume_at - time.monotonic())
        super().take(n, wait)


@dataclasses.dataclass
class RangedConfig:
    latency: float
    chunk_size: int
    bucket: Optional[TokenBucket]
    timeout: float


class RangedHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of files under the server root, single byte ranges, ETag/If-Range, and
    conditional requests (If-None-Match, If-Modified-Since -> 304)."""

    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle, a small body waits for the client's
    # delayed ACK (~40 ms per request on keep-alive connections).
    disable_nagle_algorithm = True
    server: TrackingHTTPServer

    def setup(self) -> None:
        self.timeout = self.server.config.timeout
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    # -- internals ---------------------------------------------------------------------------

    def _resolve(self) -> Optional[Path]:
        root = self.server.root
        assert root is not None
        rel = posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path))
        candidate = (root / rel.lstrip("/")).resolve()
        if candidate != root and root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None

    def _serve(self, send_body: bool) -> None:
        try:
            self._respond(send_body)
        except Exception as exc:
            if not is_disconnect(exc):
                raise
            self.close_connection = True

    def _respond(self, send_body: bool) -> None:
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        path = self._resolve()
        if path is None:
            self._start(404, [("Content-Type", "text/plain")], 10, rng, if_range)
            if send_body:
                self.wfile.write(b"not found\n")
            return
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            total = st.st_size
            etag = f'"{total:x}-{st.st_mtime_ns:x}"'
            last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            headers = [
                ("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream"),
                ("Accept-Ranges", "bytes"),
                ("ETag", etag),
                ("Last-Modified", last_modified),
            ]
            if _not_modified(self.headers, etag, st.st_mtime):
                self._start(304, headers[2:], None, rng, if_range)
                return
            first, last, status = 0, total - 1, 200
            if rng is not None and _validator_matches(if_range, etag, last_modified):
                try:
                    selected = parse_range(rng, total)
                except RangeNotSatisfiable:
                    headers.append(("Content-Range", f"bytes */{total}"))
                    self._start(416, headers, 0, rng, if_range)
                    return
                if selected is not None:
                    (first, last), status = selected, 206
                    headers.append(("Content-Range", f"bytes {first}-{last}/{total}"))
            length = last - first + 1
            record = self._start(status, headers, length, rng, if_range)
            if send_body and length > 0:
                f.seek(first)
                self._send_body(f, length, record)

    def _start(
        self,
        status: int,
        headers: list[tuple[str, str]],
        length: Optional[int],
        rng: Optional[str],
        if_range: Optional[str],
    ) -> RequestRecord:
        """Log the request, wait the simulated latency, send status line and headers
        (``length`` None: no body and no Content-Length, as for a 304)."""
        record = self.server.log.add(
            RequestRecord(self.command, self.path, rng, if_range, status)
        )
        self.server.pause(self.server.config.latency)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        return record

    def _send_body(self, f: BinaryIO, length: int, record: RequestRecord) -> None:
        config: RangedConfig = self.server.config
        remaining = length
        while remaining > 0:
            data = f.read(min(config.chunk_size, remaining))
            if not data:  # file truncated under us: the client sees a short body
                self.close_connection = True
                return
            if config.bucket is not None:
                config.bucket.take(len(data), self.server.pause)
            self.server.log.count_bytes(record, len(data))
            try:
                self.wfile.write(data)
            except BaseException:
                self.server.log.count_bytes(record, -len(data))
                raise
            remaining -= len(data)


def _not_modified(headers, etag: str, mtime: float) -> bool:
    """RFC 9110 13.1.2/13.1.3: If-None-Match (weak comparison) when present, else
    If-Modified-Since against the file's time (whole seconds, as Last-Modified says)."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [t.strip() for t in if_none_match.split(",")]
        return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)
    since = headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        when = email.utils.parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False
    return int(mtime) <= when


def _validator_matches(if_range: Optional[str], etag: str, last_modified: str) -> bool:
    """If-Range: absent, or an exactly matching strong ETag / Last-Modified date."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag  # a weak tag never matches (strong comparison)
    return value == last_modified


class RangedServer(ServerBase):
    """Threaded HTTP/1.1 keep-alive file server on 127.0.0.1 with single-range support.

    ``bandwidth`` (bytes/s) throttles all bodies through one shared token bucket, like one
    slow link; ``latency`` (s) is waited before every response's headers. ``timeout`` is the
    per-connection socket timeout (idle keep-alive and stalled writes), like nginx's.
    """

    kind = "ranged"
    supports_ranges = True

    def __init__(
        self,
        root: "str | Path",
        *,
        bandwidth: Optional[float] = None,
        latency: float = 0.0,
        chunk_size: Optional[int] = None,
        timeout: float = 60.0,
        host: str = "127.0.0.1",
    ) -> None:
        if chunk_size is None:
            chunk_size = 64 * 1024
            if bandwidth is not None:  # ~50 writes per second keeps the pacing smooth
                chunk_size = int(min(64 * 1024, max(1024, bandwidth / 50)))
        self.bandwidth = bandwidth
        self.latency = latency
        bucket = TokenBucket(bandwidth, chunk_size) if bandwidth is not None else None
        super().__init__(root, RangedHandler, RangedConfig(latency, chunk_size, bucket, timeout), host=host)
