"""A server that behaves like the one of fsspec's own HTTP tests (``fsspec/tests/conftest.py``).

Its behaviour is chosen per request by request headers, as there, so one ``headers=`` dict
configures fsspec's ``http`` filesystem and ``kithara::`` alike:

- GET, by default: status 200, no Content-Length, no Content-Range; a ``Range`` header is
  honoured anyway (the body is the slice, still with 200). ``use_206``: status 206 instead.
  ``ignore_range``: the whole body. ``give_length``: a Content-Length (of the slice);
  with ``gzip_encoding`` too, the body gzip-compressed whatever the client accepts.
  ``give_range``: a Content-Range and no length. ``give_mimetype``: ``text/html``.
  ``redirect``: 301 to ``/index/realfile`` (except for that file itself). ``give_path``:
  the request's path, as JSON.
- HEAD: 405 unless ``head_ok``; ``head_not_auth``: 403. With ``give_length`` or
  ``head_give_length``: the length (``zero_length``: 0); ``give_etag``: ``ETag: xxx``;
  ``accept_range: none``: ``Accept-Ranges: none``.
- ``/unauthorized``: 401; unknown paths: 404. HTTP/1.0: each response ends its connection.
"""

from __future__ import annotations

import gzip
import http.server
import json
import random
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ._base import RequestRecord, ServerBase, TrackingHTTPServer, is_disconnect

#: The body fsspec's tests serve: 14,999 bytes.
DATA = b"\n".join([b"some test data"] * 1000)
#: A body longer than one first request of kithara-io (64 KiB): 200,000 bytes.
BIG = random.Random(23).randbytes(200_000)
REALFILE = "/index/realfile"
FILES: Dict[str, bytes] = {REALFILE: DATA, "/index/otherfile": DATA, "/index/bigfile": BIG}


class FsspecLikeHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD as fsspec's test handler answers them (see the module docstring)."""

    server: TrackingHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_HEAD(self) -> None:
        self._guarded(self._head)

    def _guarded(self, answer) -> None:
        try:
            answer()
        except Exception as exc:
            if not is_disconnect(exc):
                raise

    def _has(self, name: str) -> bool:
        return name in self.headers

    def _get(self) -> None:
        path = self.path
        if self._has("give_path"):
            return self._send(200, [], json.dumps({"path": path}).encode())
        if self._has("redirect") and path != REALFILE:
            return self._send(301, [("Location", f"http://127.0.0.1:{self.server.server_port}{REALFILE}")])
        if path == "/unauthorized":
            return self._send(401)
        body = FILES.get(urllib.parse.urlsplit(path).path)  # a query does not name another file
        if body is None:
            return self._send(404)
        status, total = 200, len(body)
        first, last = 0, total - 1
        if "Range" in self.headers and not self._has("ignore_range"):
            first, last = _slice(self.headers["Range"], total)
            body = body[first : last + 1]
            if self._has("use_206"):
                status = 206
        headers: List[Tuple[str, str]] = []
        if self._has("give_length"):
            if self._has("gzip_encoding"):
                body = gzip.compress(body)
                headers.append(("Content-Encoding", "gzip"))
            headers.append(("Content-Length", str(len(body))))
        elif self._has("give_range"):
            headers.append(("Content-Range", f"bytes {first}-{last}/{total}"))
        elif self._has("give_mimetype"):
            headers.append(("Content-Type", "text/html; charset=utf-8"))
        self._send(status, headers, body)

    def _head(self) -> None:
        if self._has("head_not_auth"):
            return self._send(403, [("Content-Length", "123")])
        if not self._has("head_ok"):
            return self._send(405)
        body = FILES.get(self.path.rstrip("/"))
        if body is None:
            return self._send(404)
        headers: List[Tuple[str, str]] = []
        if self._has("give_length") or self._has("head_give_length"):
            if self._has("zero_length"):
                headers.append(("Content-Length", "0"))
            elif self._has("gzip_encoding"):
                headers += [("Content-Encoding", "gzip"), ("Content-Length", str(len(gzip.compress(body))))]
            else:
                headers.append(("Content-Length", str(len(body))))
        elif self._has("give_range"):
            headers.append(("Content-Range", f"0-{len(body) - 1}/{len(body)}"))
        elif self._has("give_etag"):
            headers.append(("ETag", "xxx"))
        if self.headers.get("accept_range") == "none":
            headers.append(("Accept-Ranges", "none"))
        self._send(200, headers)

    def _send(self, status: int, headers: Optional[List[Tuple[str, str]]] = None, body: bytes = b"") -> None:
        record = self.server.log.add(
            RequestRecord(self.command, self.path, self.headers.get("Range"), self.headers.get("If-Range"), status)
        )
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.server.log.count_bytes(record, len(body))
            self.wfile.write(body)


def _slice(value: str, total: int) -> Tuple[int, int]:
    """``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` as fsspec's handler reads them (no checks:
    it trusts its client), as an inclusive ``(first, last)`` clipped to the body."""
    first_s, _, last_s = value.partition("=")[2].partition("-")
    if not first_s:
        return max(0, total - int(last_s)), total - 1
    last = int(last_s) if last_s else total - 1
    return int(first_s), min(last, total - 1)


class FsspecLikeServer(ServerBase):
    """fsspec's test server's behaviours, in this project's tracked, joined server thread."""

    kind = "fsspec-like"

    def __init__(self, root: "str | Path") -> None:
        """``root``: an empty directory (the bodies are in memory), named for ``no_leaks``."""
        super().__init__(root, FsspecLikeHandler)

    @property
    def realfile(self) -> str:
        return self.url(REALFILE)
