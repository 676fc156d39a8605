"""A key server as apps run them: AES-128 keys behind a token, wrapped by the app.

``KeyServer(keys, token=..., kek=...)`` answers ``GET /keys/<name>`` with the key ``keys[name]``
only when the request carries ``X-Key-Token: <token>`` (else 401), and, with ``kek`` given,
wrapped with it (RFC 3394 AES key wrap, 24 bytes: the app unwraps it). ``seen`` records every
request's path and headers, so a test can check which credentials reached it. It runs on its
own port: another origin than the HLS server's.

``keyed_playlist(media_root, folder, key_uri)`` writes ``folder/index.m3u8``: the AES-128
playlist of ``hls_media`` with its key URI replaced by ``key_uri`` and its segments
referenced from ``../aes/``.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from ._base import RequestRecord, ServerBase, TrackingHTTPServer

TOKEN_HEADER = "X-Key-Token"


class _KeyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TrackingHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:
        state = self.server.config
        with state["lock"]:
            state["seen"].append((self.path, dict(self.headers.items())))
        name = self.path.split("?")[0].rpartition("/keys/")[2]
        key = state["keys"].get(name)
        if self.headers.get(TOKEN_HEADER) != state["token"]:
            self._answer(401, b"token required")
        elif key is None:
            self._answer(404, b"no such key")
        else:
            self._answer(200, aes_key_wrap(state["kek"], key) if state["kek"] else key)

    def _answer(self, status: int, body: bytes) -> None:
        self.server.log.add(RequestRecord("GET", self.path, None, None, status, len(body)))
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class KeyServer(ServerBase):
    kind = "keys"

    def __init__(self, root, keys: Dict[str, bytes], token: str, kek: Optional[bytes] = None) -> None:
        self._state = {"keys": dict(keys), "token": token, "kek": kek, "seen": [], "lock": threading.Lock()}
        super().__init__(root, _KeyHandler, self._state)

    @property
    def seen(self) -> List[Tuple[str, Dict[str, str]]]:
        with self._state["lock"]:
            return list(self._state["seen"])


def keyed_playlist(media_root: Path, folder: str, key_uri: str) -> Path:
    """``media_root/folder/index.m3u8``: the ``aes`` playlist with its key at ``key_uri``."""
    target = media_root / folder
    target.mkdir(parents=True, exist_ok=True)
    text = (media_root / "aes" / "index.m3u8").read_text()
    assert 'URI="key.bin"' in text
    text = text.replace('URI="key.bin"', f'URI="{key_uri}"').replace("\nseg", "\n../aes/seg")
    (target / "index.m3u8").write_text(text)
    return target / "index.m3u8"
