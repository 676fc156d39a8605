"""The system nginx, run in the foreground from a private temporary prefix directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional, TypeVar

from .processes import ChildServer, head
from .tls import TlsFiles

_N = TypeVar("_N", bound="NginxServer")

FALLBACK_PATH = "/usr/sbin/nginx"  # not always on a non-root PATH

_CONF = """\
daemon off;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{
        audio/wav wav; audio/flac flac; audio/ogg ogg opus; audio/mpeg mp3;
        text/plain txt;
    }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port}{ssl};
        server_name localhost;
        {tls}
        root {root};
        location / {{ }}
    }}
}}
"""


def find_nginx() -> str:
    """Path of the nginx binary, or RuntimeError explaining how to get it."""
    path = shutil.which("nginx")
    if path is None and os.access(FALLBACK_PATH, os.X_OK):
        path = FALLBACK_PATH
    if path is None:
        raise RuntimeError(
            "nginx is not installed; `make test` installs it "
            "(apt-get install -y nginx-light)"
        )
    return path


class NginxServer(ChildServer):
    """nginx serving ``root`` on 127.0.0.1 with sendfile and keep-alive.

    The listening socket is bound here and handed to nginx through its ``NGINX``
    inherited-socket variable: no free-port race, and connections queue in the backlog until
    nginx serves them, so start-up is confirmed by one bounded request, without polling.
    """

    kind = "nginx"
    supports_ranges = True
    config_template = _CONF  # formatted with ``_config_values()``

    def __init__(self, root: "str | Path", start_timeout: float = 10.0, tls: "Optional[TlsFiles]" = None) -> None:
        self.root = Path(root).resolve()
        self.tls = tls  # serve https with these certificates
        binary = find_nginx()
        self._tmp = tempfile.TemporaryDirectory(prefix="kithara-nginx-")
        self.dir = Path(self._tmp.name)
        (self.dir / "tmp").mkdir()
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._proc: Optional[subprocess.Popen[bytes]] = None
        try:
            self._start(binary, start_timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: str, timeout: float) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(511)
            self.port: int = listener.getsockname()[1]
            self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
            conf = self.dir / "nginx.conf"
            conf.write_text(self.config_template.format(**self._config_values()))
            fd = listener.fileno()
            self._proc = subprocess.Popen(
                [binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.error_log)],
                pass_fds=(fd,),
                env={**os.environ, "NGINX": f"{fd};"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        # Our copy of the listener is closed: if nginx dies, the request below fails fast.
        try:
            head(self.port, timeout, self.tls)
        except OSError as exc:
            raise RuntimeError(
                f"nginx did not start (exit code {self._proc.poll()}): {exc}\n"
                f"--- {self.error_log} ---\n{self._read_error_log()}"
            ) from exc

    def _config_values(self) -> dict:
        return {
            "d": self.dir,
            "port": self.port,
            "root": self.root,
            "user": "user root;" if os.geteuid() == 0 else "",
            "ssl": " ssl" if self.tls else "",
            "tls": (
                f"ssl_certificate {self.tls.cert}; ssl_certificate_key {self.tls.key}; "
                "ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:1m;"
                if self.tls
                else ""
            ),
        }

    def _read_error_log(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return "(no error log)"

    def url(self, name: str) -> str:
        """URL of ``name`` (a path relative to the served directory)."""
        return f"{self.base_url}/{name.lstrip('/')}"

    def __repr__(self) -> str:
        return f"<NginxServer {getattr(self, 'base_url', '?')} root={self.root}>"


class Http2NginxServer(NginxServer):
    """nginx offering HTTP/2 on its TLS port (ALPN ``h2``, then ``http/1.1``): what most CDNs
    and object stores offer. Its access log names each request's protocol (``HTTP/2.0``)."""

    kind = "nginx-http2"

    def __init__(self, root: "str | Path", tls: "TlsFiles", start_timeout: float = 10.0) -> None:
        super().__init__(root, start_timeout=start_timeout, tls=tls)

    def _config_values(self) -> dict:
        return {**super()._config_values(), "ssl": " ssl http2"}


class ChunkedNginxServer(NginxServer):
    """nginx passing every file through ``sub_filter`` (a substitution that never matches, so
    the bytes are the file's): what nginx sends for any filtered body (sub_filter, gzip, SSI)
    and many dynamic servers send for files. Chunked, no Content-Length, no ``Range`` (200 to
    a range request), no ETag / Last-Modified; HEAD answers without a length too."""

    kind = "nginx-chunked"
    supports_ranges = False
    config_template = _CONF.replace(
        "location / {{ }}", "location / {{ sub_filter_types *; sub_filter 'kithara-never-in-media' 'x'; }}"
    )
