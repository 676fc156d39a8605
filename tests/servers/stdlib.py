"""The stdlib ``SimpleHTTPRequestHandler``: ignores Range, answers 200 + whole body, HTTP/1.0."""

from __future__ import annotations

import functools
import http.server
from pathlib import Path
from typing import Any, BinaryIO, Optional

from ._base import RequestRecord, ServerBase, TrackingHTTPServer


class StdlibHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler, quiet, with every response recorded in the server's log."""

    disable_nagle_algorithm = True
    server: TrackingHTTPServer
    _record: Optional[RequestRecord] = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        headers = getattr(self, "headers", None)
        get = headers.get if headers is not None else (lambda _name: None)
        self._record = self.server.log.add(
            RequestRecord(self.command or "", self.path or "", get("Range"), get("If-Range"), code)
        )
        super().send_response(code, message)

    def copyfile(self, source: BinaryIO, outputfile: Any) -> None:
        while True:
            data = source.read(64 * 1024)
            if not data:
                return
            if self._record is not None:
                self.server.log.count_bytes(self._record, len(data))
            outputfile.write(data)


class StdlibServer(ServerBase):
    """``python -m http.server`` equivalent in a thread: the no-range fallback path."""

    kind = "stdlib"
    supports_ranges = False

    def __init__(self, root: "str | Path") -> None:
        handler = functools.partial(StdlibHandler, directory=str(Path(root).resolve()))
        super().__init__(root, handler)

