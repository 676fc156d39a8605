"""The system lighttpd, Apache httpd and Caddy, run in the foreground from a private temporary directory.

Three independently written servers for byte-exact range reads (Caddy's ``file_server`` is Go's
net/http ``ServeContent``, the file server of many Go services): static files from ``root`` on
127.0.0.1, keep-alive, ``Range``, ETags, no compression, HTTP/1.1 only (lighttpd's h2 over TLS is
off, as for ``NginxServer``; Caddy's h2 and h3 too). None takes an inherited socket the way nginx
does here, so a free port is picked (bind port 0, close), the server started on it and confirmed by HEAD requests for
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

Caddy (Go's ``ServeContent``): a strong ETag ``"<mtime in s, base 36><size, base 36>"``, the same
from the first request on (no 1 s rule: a file rewritten within the second at the same size keeps
it); ``If-Range``: an ETag by strong comparison (its own weakened, ``W/"..."``: 200), a date only if
it equals the Last-Modified to the second (an older one: 200); a range past the end: 416 with
``Content-Range: bytes */<size>``; a multi-range whose ranges add up to more than the file: 200.
It runs with its admin endpoint off, no automatic HTTPS, and ``HOME``/``XDG_*`` pointed at the
temporary directory (its autosave.json and storage go there).
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, TypeVar

from .processes import ChildServer, head
from .tls import TlsFiles

_S = TypeVar("_S", bound="_SystemServer")

CONTENT_TYPES = {
    "bin": "application/octet-stream", "m3u8": "application/vnd.apple.mpegurl", "ts": "video/mp2t",
    "m4s": "video/mp4", "mp4": "video/mp4", "flac": "audio/flac", "wav": "audio/wav",
    "ogg": "audio/ogg", "opus": "audio/ogg", "mp3": "audio/mpeg", "txt": "text/plain",
}
_BINARIES = {"lighttpd": ("lighttpd",), "apache": ("apache2", "httpd"), "caddy": ("caddy",)}
_PACKAGES = {"lighttpd": "lighttpd lighttpd-mod-openssl", "apache": "apache2-bin", "caddy": "caddy"}
APACHE_MODULE_DIRS = ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules", "/usr/lib/httpd/modules")
_PORT_TAKEN = "address already in use"  # compared ignoring case (Go writes it in lower case)
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

# Caddyfile (Caddy 2.6: no persist_config / default_bind yet). Plain http: auto_https off and an
# http:// site address; https: the site's own certificate files. `protocols h1`: HTTP/1.1 only
# (no h2, and no h3 listener on UDP). No `encode`: no compression. grace_period bounds stop().
_CADDYFILE = """\
{{
	admin off
	auto_https off
	grace_period 1s
	log {{
		output file "{d}/error.log"
	}}
	servers {{
		protocols h1
	}}
}}
{scheme}://127.0.0.1:{port} {{
	bind 127.0.0.1
{tls}	root * "{root}"
{types}	file_server
	log {{
		output file "{d}/access.log"
	}}
}}
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
    """None if the ``kind`` ("lighttpd" / "apache" / "caddy") server can run here, else why not (one line)."""
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


class _SystemServer(ChildServer):
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
            self._start_on_a_free_port(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _start_on_a_free_port(self, timeout: float) -> None:
        for _ in range(_ATTEMPTS):
            if self._start(timeout):
                return
        raise RuntimeError(f"{self.kind}: {_ATTEMPTS} free ports taken before it bound\n{self._read_logs()}")

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
                self._argv(conf), stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True,
                env=self._env(),
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
        if code is not None and _PORT_TAKEN in logs.lower():
            return False
        raise RuntimeError(f"{self.kind} did not start (exit code {code}): {error}\n{logs}")

    def _head(self, timeout: float) -> str:
        """One HEAD / request; the ``Server`` header of the answer."""
        return head(self.port, timeout, self.tls).getheader("Server", "")

    def _config(self) -> str:
        raise NotImplementedError

    def _argv(self, conf: Path) -> List[str]:
        raise NotImplementedError

    def _env(self) -> Optional[Dict[str, str]]:
        """The server's environment (None: this process's)."""
        return None

    def _read_logs(self) -> str:
        return "\n".join(
            f"--- {log} ---\n{log.read_text(errors='replace') if log.exists() else '(none)'}"
            for log in (self.console_log, self.error_log)
        )

    def url(self, name: str) -> str:
        """URL of ``name`` (a path relative to the served directory)."""
        return f"{self.base_url}/{name.lstrip('/')}"

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


class CaddyServer(_SystemServer):
    """Caddy 2 (``caddy run``, Go net/http ``ServeContent``) serving ``root``; https with the
    ``tls`` certificate files when given. Content types as lighttpd's and Apache's (``CONTENT_TYPES``,
    other files application/octet-stream), set by ``header`` before ``file_server``, which keeps
    them (its own come from /etc/mime.types, where ``.ts`` is a Qt translation file)."""

    kind = "caddy"
    product = "Caddy"

    def _config(self) -> str:
        tls = self.tls
        types = "".join(
            f"\t@type_{ext} path *.{ext}\n\theader @type_{ext} Content-Type {mime}\n"
            for ext, mime in CONTENT_TYPES.items()
        )
        known = " ".join(f"*.{ext}" for ext in CONTENT_TYPES)
        types += f"\t@type_other {{\n\t\tfile\n\t\tnot path {known}\n\t}}\n"
        types += "\theader @type_other Content-Type application/octet-stream\n"
        return _CADDYFILE.format(
            d=self.dir, root=self.root, port=self.port, scheme="https" if tls else "http", types=types,
            tls=f'\ttls "{tls.cert}" "{tls.key}"\n' if tls else "",
        )

    def _argv(self, conf: Path) -> List[str]:
        return [str(_find(self.kind)), "run", "--config", str(conf), "--adapter", "caddyfile"]

    def _env(self) -> Optional[Dict[str, str]]:
        # its data (certificate storage, autosave.json) and config directories: here, not ~
        home = str(self.dir)
        return {**os.environ, "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home}
