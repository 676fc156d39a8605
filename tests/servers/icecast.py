"""The real Icecast 2 server (Debian package ``icecast2``), run from a private directory, and
a Python source client that feeds it an MP3 at about real time.

Icecast refuses to run as root unless it is told to change owner (to ``nobody``); its log
directory must then be writable by nobody. A source client is an HTTP ``PUT /mount`` with the
source password; titles are set through the admin URL.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Optional

from .processes import stop_process

SOURCE_PASSWORD = "kithara-source"
ADMIN_PASSWORD = "kithara-admin"

_CONF = """\
<icecast>
  <location>127.0.0.1</location>
  <admin>test@localhost</admin>
  <limits>
    <clients>20</clients>
    <sources>4</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>{burst}</burst-size>
  </limits>
  <authentication>
    <source-password>{source}</source-password>
    <admin-user>admin</admin-user>
    <admin-password>{admin}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket>
    <port>{port}</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>{logs}</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>3</loglevel>
  </logging>
  {security}
</icecast>
"""

_SECURITY_ROOT = (
    "<security><chroot>0</chroot><changeowner><user>nobody</user>"
    "<group>nogroup</group></changeowner></security>"
)


def find_icecast() -> Optional[str]:
    return shutil.which("icecast2") or (
        "/usr/bin/icecast2" if os.access("/usr/bin/icecast2", os.X_OK) else None
    )


def _free_port() -> int:
    # Icecast binds its own socket (it cannot inherit one): a port free right now.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class IcecastServer:
    """``icecast2`` on 127.0.0.1; ``start_source(mount, data, rate)`` feeds a mount."""

    def __init__(self, burst: int = 65536, start_timeout: float = 10.0) -> None:
        binary = find_icecast()
        if binary is None:
            raise RuntimeError("icecast2 is not installed; `make test` installs it (apt-get install icecast2)")
        self._tmp = tempfile.TemporaryDirectory(prefix="kithara-icecast-")
        self.dir = Path(self._tmp.name)
        logs = self.dir / "logs"
        logs.mkdir()
        # Icecast drops root for nobody: it must reach the directory and write its logs.
        os.chmod(self.dir, 0o755)
        os.chmod(logs, 0o777)
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        conf = self.dir / "icecast.xml"
        conf.write_text(
            _CONF.format(
                port=self.port,
                logs=logs,
                source=SOURCE_PASSWORD,
                admin=ADMIN_PASSWORD,
                burst=burst,
                security=_SECURITY_ROOT if os.geteuid() == 0 else "",
            )
        )
        os.chmod(conf, 0o644)
        self.error_log = logs / "error.log"
        self._sources: list = []
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Icecast binds after reading its config: try to connect, a bounded number of times."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"icecast2 exited with {self._proc.returncode}:\n{self._log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"icecast2 did not listen within {timeout} s:\n{self._log()}")
                time.sleep(0.05)  # a process start-up, polled: nothing else tells us it listens

    def _log(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no error log)"

    def url(self, mount: str) -> str:
        return f"{self.base_url}/{mount.lstrip('/')}"

    def start_source(self, mount: str, data: bytes, rate: float, content_type: str = "audio/mpeg") -> "SourceClient":
        """Feed ``data`` (looped) to ``mount`` at ``rate`` bytes/s from a thread; returns once
        Icecast accepted the source."""
        source = SourceClient(self, mount, data, rate, content_type)
        self._sources.append(source)
        return source

    def set_title(self, mount: str, title: str) -> None:
        """The admin ``updinfo`` call a DJ tool makes on a song change."""
        query = urllib.parse.urlencode({"mount": mount, "mode": "updinfo", "song": title})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", f"/admin/metadata?{query}", headers={"Authorization": _basic("admin", ADMIN_PASSWORD)})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"icecast metadata update failed: {response.status} {body[:200]!r}")
        finally:
            conn.close()

    def stop(self, timeout: float = 10.0) -> None:
        for source in self._sources:
            source.stop()
        self._sources.clear()
        stop_process(self._proc, timeout)
        self._tmp.cleanup()

    def __enter__(self) -> "IcecastServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SourceClient:
    """``PUT /mount`` with the source password, then the bytes paced at ``rate`` (looped)."""

    def __init__(self, server: IcecastServer, mount: str, data: bytes, rate: float, content_type: str) -> None:
        self._data = data
        self._rate = rate
        self._stop = threading.Event()
        self.sent = 0
        self._sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        head = (
            f"PUT /{mount.lstrip('/')} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: {_basic('source', SOURCE_PASSWORD)}\r\nContent-Type: {content_type}\r\n"
            "Ice-Public: 0\r\nIce-Name: Kithara Icecast\r\nIce-Genre: Test\r\nExpect: 100-continue\r\n\r\n"
        )
        self._sock.sendall(head.encode())
        answer = self._sock.recv(4096)  # "HTTP/1.1 100 Continue" (or an error)
        if not answer.startswith(b"HTTP/1.1 100") and not answer.startswith(b"HTTP/1.0 200"):
            self._sock.close()
            raise RuntimeError(f"icecast refused the source: {answer[:200]!r}")
        self._thread = threading.Thread(target=self._run, name=f"test-server-icecast-source-{mount}", daemon=False)
        self._thread.start()

    def _run(self) -> None:
        chunk = 4096
        started = time.monotonic()
        pos = 0
        try:
            while not self._stop.is_set():
                piece = self._data[pos % len(self._data) : pos % len(self._data) + chunk]
                self._sock.sendall(piece)
                pos += len(piece)
                self.sent = pos
                self._stop.wait(max(0.0, started + pos / self._rate - time.monotonic()))
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(10)
        self._sock.close()


__all__ = ["IcecastServer", "SourceClient", "find_icecast"]
