"""Static-file HTTP servers the project did not write, each serving a directory on
127.0.0.1 with Range support, each in its own child process: aiohttp (``web.static``),
tornado (``StaticFileHandler``), werkzeug (Flask ``send_from_directory``: werkzeug's
``SharedDataMiddleware`` answers Range with a 200), Twisted (``twisted.web.static.File``,
its own Range code) and Node.js ``http-server`` (npm, installed under .npm/ by ``make
test``). Plain http, each server's default headers, no compression. ``unavailable(kind)``
says why one cannot run here (a ``pytest.skip`` reason).

Seen differences from nginx: aiohttp judges ``If-Range`` only as a date (an ETag there
is ignored) and answers a multi-range with 416; tornado ignores ``If-Range``, answers a
multi-range with the whole file (200) and keeps a path's ETag (a SHA-512 of the content)
for the life of its process; werkzeug closes every connection (no keep-alive) and takes a
weak ETag in ``If-Range``; Twisted sends no ETag and ignores ``If-Range``; http-server's
ETags are weak, it ignores ``If-Range``, answers a suffix range (``bytes=-N``) with 416
(no Content-Range) and a multi-range with its first range only.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, List, Optional, Union

from .processes import ChildServer, head

REPO = Path(__file__).resolve().parents[2]
HTTP_SERVER_JS = REPO / ".npm" / "node_modules" / "http-server" / "bin" / "http-server"

_AIOHTTP = """\
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[1])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None, shutdown_timeout=1.0)
"""

_TORNADO = """\
import asyncio, sys
import tornado.web
async def main():
    app = tornado.web.Application([(r"/(.*)", tornado.web.StaticFileHandler, {"path": sys.argv[1]})])
    app.listen(int(sys.argv[2]), address="127.0.0.1")
    await asyncio.Event().wait()
asyncio.run(main())
"""

_WERKZEUG = """\
import logging, sys
from flask import Flask, send_from_directory
from werkzeug.serving import run_simple
root = sys.argv[1]
app = Flask("kithara_static")
@app.route("/<path:name>")
def static_file(name):
    return send_from_directory(root, name, conditional=True)
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
run_simple("127.0.0.1", int(sys.argv[2]), app, threaded=True)
"""

# reactor.listenTCP, not an endpoint: a port taken meanwhile raises CannotListenError here (a
# traceback naming "Address already in use", and the child exits) instead of a silent failed Deferred.
_TWISTED = """\
import sys
from twisted.internet import reactor
from twisted.web import server, static
class QuietSite(server.Site):
    def log(self, request):  # no line per request
        pass
reactor.listenTCP(int(sys.argv[2]), QuietSite(static.File(sys.argv[1])), interface="127.0.0.1")
reactor.run()
"""

_IN_USE = ("address already in use", "eaddrinuse", "errno 98", "is in use by another program")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listens(pid: int, port: int) -> bool:
    """Does process ``pid`` hold the socket listening on 127.0.0.1:``port``? (True where
    /proc cannot tell.)"""
    try:
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return True
    inodes = {f"socket:[{row[9]}]" for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "0A"}
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            pass  # closed meanwhile
    return False


def unavailable(kind: str) -> Optional[str]:
    """None if servers of ``kind`` can run here, else a one-line reason to skip."""
    modules = {
        "aiohttp": ["aiohttp"], "tornado": ["tornado"], "werkzeug": ["flask", "werkzeug"], "twisted": ["twisted"],
    }
    if kind in modules:
        missing = [m for m in modules[kind] if importlib.util.find_spec(m) is None]
        return f"{', '.join(missing)} not installed" if missing else None
    if kind == "node-http-server":
        if shutil.which("node") is None:
            return "node (Node.js) is not installed"
        if not HTTP_SERVER_JS.exists():
            return "npm package http-server is not installed (make test installs it with npm)"
        return None
    return f"unknown server kind {kind!r}"


class AppServer(ChildServer):
    """One static-file server in a child process (own session) serving ``root``."""

    kind = ""
    start_timeout = 10.0

    def __init__(self, root: Union[Path, str]) -> None:
        reason = unavailable(self.kind)
        if reason is not None:
            raise RuntimeError(f"{self.kind} server cannot run: {reason}")
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"no directory to serve: {self.root}")
        self._tmp = tempfile.TemporaryDirectory(prefix=f"kithara-{self.kind}-")
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None
        self._log_path = Path(self._tmp.name) / "server.log"
        self._stop_lock = threading.Lock()
        self._stopped = False
        self.port = 0
        self.base_url = ""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def command(self, port: int) -> List[str]:
        raise NotImplementedError

    def _start(self) -> None:
        for attempt in range(3):
            self.port = free_port()
            self.base_url = f"http://127.0.0.1:{self.port}"
            self._log_path = Path(self._tmp.name) / f"server-{attempt}.log"
            self._log = open(self._log_path, "wb")
            self._proc = subprocess.Popen(
                self.command(self.port), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self._tmp.name,
            )
            if self._await_start():
                return
            text = self.log_text()
            if not any(word in text.lower() for word in _IN_USE):
                break  # not a port taken meanwhile: no use trying another
            self._log.close()
        raise RuntimeError(
            f"{self.kind} server did not start (exit code {self._proc.poll() if self._proc else None}):\n"
            f"--- its log ---\n{self.log_text()[-3000:]}"
        )

    def _await_start(self) -> bool:
        """HEAD / until this child answers (True) or exits (False); RuntimeError after the timeout.
        An answer counts only once the child holds the listening socket (not another process
        that took the port meanwhile)."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                head(self.port, 1.0)
                if self._proc.poll() is None and _listens(self._proc.pid, self.port):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.kind} server did not answer within {self.start_timeout} s:\n{self.log_text()[-3000:]}"
        )

    def log_text(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def url(self, name: str) -> str:
        """URL of ``name`` (a path relative to the served directory)."""
        return f"{self.base_url}/{name.lstrip('/')}"

    def stop(self, timeout: float = 10.0) -> None:
        """As ``ChildServer.stop``, and close the child's log. Idempotent."""
        super().stop(timeout)
        if self._log is not None:
            self._log.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url or '?'} root={self.root}>"


class _PythonServer(AppServer):
    script = ""

    def command(self, port: int) -> List[str]:
        return [sys.executable, "-c", self.script, str(self.root), str(port)]


class AiohttpServer(_PythonServer):
    """aiohttp's ``web.static`` (``FileResponse``, sendfile): strong ETag ``"<mtime_ns>-<size>"``
    (hex), Last-Modified, keep-alive; If-Range is judged only as a date (an ETag: range served)."""

    kind = "aiohttp"
    script = _AIOHTTP


class TornadoServer(_PythonServer):
    """tornado's ``StaticFileHandler``: ETag a SHA-512 of the content (computed once per path
    for the life of the process: a replaced file keeps its old ETag), Last-Modified,
    keep-alive; If-Range ignored."""

    kind = "tornado"
    script = _TORNADO


class WerkzeugServer(_PythonServer):
    """Flask's ``send_from_directory(conditional=True)`` (werkzeug ``send_file``) on werkzeug's
    threaded development server, which answers ``Connection: close`` every time (it has no
    keep-alive); ETag ``"<mtime>-<size>-<adler32 of the path>"``, ``Cache-Control: no-cache``,
    If-Range honoured (ETag, also a weak one, or date). ``SharedDataMiddleware`` has no Range."""

    kind = "werkzeug"
    script = _WERKZEUG


class TwistedServer(_PythonServer):
    """Twisted's ``twisted.web.static.File`` (``twisted.web.server.Site``): no ETag at all,
    Last-Modified the mtime rounded *up* to the second (so up to 1 s in the future for a fresh
    file), keep-alive; If-Range ignored (the range is served whatever the validator); a range past
    the end: 416 with ``Content-Range: bytes */<size>``; content types from /etc/mime.types
    (``.ts``: ``text/vnd.trolltech.linguist``, ``.m4s``: ``video/iso.segment``)."""

    kind = "twisted"
    script = _TWISTED


class NodeHttpServer(AppServer):
    """Node.js ``http-server`` 14 (npm): weak ETag ``W/"<inode>-<size>-<mtime ISO>"``,
    ``cache-control: max-age=3600``, keep-alive (5 s); no Server header; If-Range ignored."""

    kind = "node-http-server"

    def command(self, port: int) -> List[str]:
        node = shutil.which("node") or "node"
        return [node, str(HTTP_SERVER_JS), str(self.root), "-a", "127.0.0.1", "-p", str(port), "-s"]


SERVERS = {cls.kind: cls for cls in (AiohttpServer, TornadoServer, WerkzeugServer, TwistedServer, NodeHttpServer)}

__all__ = [
    "AiohttpServer", "AppServer", "NodeHttpServer", "SERVERS", "TornadoServer", "TwistedServer", "WerkzeugServer",
    "unavailable",
]
