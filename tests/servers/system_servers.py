"""The system lighttpd and Apache httpd, run in the foreground from a private temporary directory.

Two independently written servers for byte-exact range reads: static files from ``root`` on
127.0.0.1, keep-alive, ``Range``, ETags, no compression, HTTP/1.1 only (lighttpd's h2 over TLS is
off, as for ``NginxServer``). Neither takes an inherited socket the way nginx does here, so a free
port is picked (bind port 0, close), the server started on it and confirmed by HEAD requests for
at most ``start_timeout`` s; one that exits because the port was taken meanwhile is restarted on a
new port (3 attempts in all).

As root: lighttpd serves as root (it drops privileges only if ``server.username`` is set). Apache
refuses to serve as uid 0 and as root switches to ``User`` once bound, which could not read the
pytest roots (0700, root's). So as root it is started through ``setpriv`` (util-linux) as nobody
with the one ambient capability CAP_DAC_OVERRIDE (in Docker's default set, unlike
CAP_DAC_READ_SEARCH): its euid is not 0, so it switches no user, and it reads the live ``root``
(and writes its logs here) without copying or chmod-ing anything.

Apache's validators are cautious: a file modified less than 1 s before a request gets a weak ETag
(``W/"..."``, strong a second later), and an ``If-Range`` date is ignored (200, the whole file) until
60 s after the file's mtime (what ``tests/test_weak_validators.py`` checks kithara-io copes with).
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, TypeVar

from .tls import TlsFiles

_S = TypeVar("_S", bound="_SystemServer")

CONTENT_TYPES = {
    "bin": "application/octet-stream", "m3u8": "application/vnd.apple.mpegurl", "ts": "video/mp2t",
    "m4s": "video/mp4", "mp4": "video/mp4", "flac": "audio/flac", "wav": "audio/wav",
    "ogg": "audio/ogg", "opus": "audio/ogg", "mp3": "audio/mpeg", "txt": "text/plain",
}
_BINARIES = {"lighttpd": ("lighttpd",), "apache": ("apache2", "httpd")}
_PACKAGES = {"lighttpd": "lighttpd lighttpd-mod-openssl", "apache": "apache2-bin"}
APACHE_MODULE_DIRS = ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules", "/usr/lib/httpd/modules")
_PORT_TAKEN = "Address already in use"
_ATTEMPTS = 3

_LIGHTTPD_CONF = """\
server.modules = ("mod_accesslog"{openssl})
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{d}/lighttpd.pid"
server.errorlog = "{d}/error.log"
# a pipe: lighttpd writes each line at once (to a file it buffers them for up to 4 s)
accesslog.filename = "|exec cat >> '{d}/access.log'"
server.max-keep-alive-requests = 100000
server.max-keep-alive-idle = 75
server.feature-flags = ("server.h2proto" => "disable")
static-file.etags = "enable"
mimetype.assign = ({types}, "" => "application/octet-stream")
{tls}
"""

_APACHE_CONF = """\
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
DefaultRuntimeDir "{d}"
PidFile "{d}/httpd.pid"
ErrorLog "{d}/error.log"
LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{{Range}}i\\"" ranges
CustomLog "{d}/access.log" ranges
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule mime_module {m}/mod_mime.so
LoadModule dir_module {m}/mod_dir.so
StartServers 1
MinSpareThreads 5
MaxSpareThreads 50
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 75
EnableSendfile On
FileETag MTime Size
TypesConfig /dev/null
{types}
DocumentRoot "{root}"
<Directory "{root}">
    Require all granted
</Directory>
{tls}
"""


def _find(kind: str) -> Optional[str]:
    for name in _BINARIES[kind]:
        for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"):
            if path and os.access(path, os.X_OK):
                return path
    return None


def _apache_modules() -> Optional[str]:
    return next((d for d in APACHE_MODULE_DIRS if os.path.exists(f"{d}/mod_mpm_event.so")), None)


def unavailable(kind: str) -> Optional[str]:
    """None if the ``kind`` ("lighttpd" / "apache") server can run here, else why not (one line)."""
    if kind not in _BINARIES:
        raise ValueError(f"unknown server kind {kind!r}")
    if _find(kind) is None:
        return f"{kind} is not installed; `make test` installs it (apt-get install -y {_PACKAGES[kind]})"
    if kind == "apache" and _apache_modules() is None:
        return f"Apache modules not found in {', '.join(APACHE_MODULE_DIRS)}"
    if kind == "apache" and os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "running as root, Apache needs setpriv (util-linux) to run as nobody"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _SystemServer:
    kind = ""
    product = ""  # how the ``Server`` header starts
    supports_ranges = True

    def __init__(self, root: "Path | str", tls: Optional[TlsFiles] = None, start_timeout: float = 10.0) -> None:
        reason = unavailable(self.kind)
        if reason is not None:
            raise RuntimeError(reason)
        self.root = Path(root).resolve()
        self.tls = tls  # serve https with these certificates
        self._tmp = tempfile.TemporaryDirectory(prefix=f"kithara-{self.kind}-")
        self.dir = Path(self._tmp.name)
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.console_log = self.dir / "console.log"  # stdout + stderr: errors before error.log opens
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._proc: Optional[subprocess.Popen[bytes]] = None
        try:
            for _ in range(_ATTEMPTS):
                if self._start(start_timeout):
                    break
            else:
                raise RuntimeError(f"{self.kind}: {_ATTEMPTS} free ports taken before it bound\n{self._read_logs()}")
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> bool:
        """Start on a new free port: True once it answers, False if it exits for lack of the port."""
        self.port: int = _free_port()
        self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        for log in (self.error_log, self.console_log):
            log.unlink(missing_ok=True)
        conf = self.dir / f"{self.kind}.conf"
        conf.write_text(self._config())
        with open(self.console_log, "wb") as console:
            self._proc = subprocess.Popen(
                self._argv(conf), stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        error: object = "no answer"
        while self._proc.poll() is None and time.monotonic() < deadline:
            try:
                server = self._head(max(0.1, min(1.0, deadline - time.monotonic())))
            except (OSError, http.client.HTTPException) as exc:
                error = exc
                time.sleep(0.05)
                continue
            if server.startswith(self.product) and self._proc.poll() is None:
                return True
            error = f"another server answered on the port: {server!r}"
            time.sleep(0.05)
        code = self._proc.poll()
        logs = self._read_logs()
        if code is not None and _PORT_TAKEN in logs:
            return False
        raise RuntimeError(f"{self.kind} did not start (exit code {code}): {error}\n{logs}")

    def _head(self, timeout: float) -> str:
        """One HEAD / request; the ``Server`` header of the answer."""
        if self.tls is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=self.tls.client_context()
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("HEAD", "/")
            response = conn.getresponse()
            response.read()
            return response.getheader("Server", "")
        finally:
            conn.close()

    def _config(self) -> str:
        raise NotImplementedError

    def _argv(self, conf: Path) -> List[str]:
        raise NotImplementedError

    def _read_logs(self) -> str:
        return "\n".join(
            f"--- {log} ---\n{log.read_text(errors='replace') if log.exists() else '(none)'}"
            for log in (self.console_log, self.error_log)
        )

    def url(self, name: str) -> str:
        """URL of ``name`` (a path relative to the served directory)."""
        return f"{self.base_url}/{name.lstrip('/')}"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server, kill its process group if it lingers, remove the directory. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
            self._tmp.cleanup()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'base_url', '?')} root={self.root}>"


class LighttpdServer(_SystemServer):
    """lighttpd (``-D``, one process) serving ``root``; https through mod_openssl when ``tls``."""

    kind = "lighttpd"
    product = "lighttpd"

    def _config(self) -> str:
        tls = self.tls
        return _LIGHTTPD_CONF.format(
            d=self.dir, root=self.root, port=self.port,
            openssl=', "mod_openssl"' if tls else "",
            types=", ".join(f'".{ext}" => "{mime}"' for ext, mime in CONTENT_TYPES.items()),
            tls=f'ssl.engine = "enable"\nssl.pemfile = "{tls.cert}"\nssl.privkey = "{tls.key}"' if tls else "",
        )

    def _argv(self, conf: Path) -> List[str]:
        return [str(_find(self.kind)), "-D", "-f", str(conf)]


class ApacheServer(_SystemServer):
    """Apache httpd (``-DFOREGROUND``, mpm_event) serving ``root``; https through mod_ssl when ``tls``."""

    kind = "apache"
    product = "Apache"

    def _config(self) -> str:
        modules, tls = _apache_modules(), self.tls
        return _APACHE_CONF.format(
            d=self.dir, root=self.root, port=self.port, m=modules,
            types="\n".join(f"AddType {mime} .{ext}" for ext, mime in CONTENT_TYPES.items()),
            tls=(
                f"LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so\n"
                f"LoadModule ssl_module {modules}/mod_ssl.so\n"
                f'SSLSessionCache "shmcb:{self.dir}/ssl_scache(512000)"\n'
                f'SSLEngine on\nSSLCertificateFile "{tls.cert}"\nSSLCertificateKeyFile "{tls.key}"'
                if tls else ""
            ),
        )

    def _argv(self, conf: Path) -> List[str]:
        argv = [str(_find(self.kind)), "-DFOREGROUND", "-d", str(self.dir), "-f", str(conf)]
        if os.geteuid() != 0:
            return argv
        nobody = pwd.getpwnam("nobody")  # see the module docstring
        return [
            "setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
            "--inh-caps=+dac_override", "--ambient-caps=+dac_override", *argv,
        ]
