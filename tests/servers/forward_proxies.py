"""Squid and tinyproxy, real forward proxies run in the foreground on 127.0.0.1.

What stands between a client and the origin when ``http_proxy``/``https_proxy`` are set: plain
http arrives in absolute form (``GET http://host:port/path``), https as ``CONNECT host:port``.
Each proxy runs as a child process in its own session, with its configuration and logs in a
private temporary directory, on a free port (picked and retried as in ``system_servers``). It is
confirmed up by ``CONNECT`` to a listening socket on a high port (what the tests' origins use,
and what a stock configuration refuses) answered ``200``, for at most ``start_timeout`` s.
``url`` is ``http://127.0.0.1:PORT``; ``access_log`` is the file that names every request.

Squid 5 (``squid -N``): ``http_access`` allows localhost, CONNECT to any port included (no
``SSL_ports`` rule); memory cache only (no ``cache_dir``), objects up to 32 MB, its caching left as
it is by default: a range request is forwarded as it is (``range_offset_limit 0``), a whole GET
fills the cache, then it answers ranges itself (``TCP_MEM_HIT/206``; revalidating a stale object,
``TCP_REFRESH_UNMODIFIED/206``; ``If-None-Match``, ``TCP_INM_HIT/304``; a range past the end,
200 and the whole object). It adds ``Via: 1.1 kithara-squid (squid/5.7)`` and ``X-Cache``, keeps
client connections alive, and logs a transaction when it ends (a tunnel: when it closes). As root
it switches to ``cache_effective_user``, who owns the temporary directory. It takes ~2 s to stop.

tinyproxy 1.11 (``tinyproxy -d``): ``Allow 127.0.0.1``, no ``ConnectPort`` line (CONNECT allowed
to every port), no ``Upstream``; its log (``LogLevel Connect``) names each request as it arrives.
It adds ``Via: 1.1 kithara-tinyproxy (tinyproxy/1.11.1)``, passes ranges and 416s through, and
closes the client connection after each plain-http answer without ``Connection: close``. Tunnels
stay open, but it relays them 2 KiB at a time without ``TCP_NODELAY``: about 45 ms per request
and answer inside one (Nagle and delayed ACKs; Squid: under 2 ms). As root it stays root (it
warns that no ``User`` is set).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple, TypeVar

from .caches import SQUID_COMMON, _squid_user
from .processes import ChildServer
from .system_servers import _ATTEMPTS, _free_port

_P = TypeVar("_P", bound="ForwardProxy")

_SQUID_CONF = """\
http_port 127.0.0.1:{port}
acl tunnel method CONNECT
http_access allow localhost tunnel
http_access allow localhost
http_access deny all
""" + SQUID_COMMON

_TINYPROXY_CONF = """\
Listen 127.0.0.1
Port {port}
Timeout 60
MaxClients 100
Allow 127.0.0.1
ViaProxyName "kithara-tinyproxy"
LogFile "{d}/access.log"
LogLevel Connect
PidFile "{d}/tinyproxy.pid"
"""

# What each writes when the port was taken between _free_port() and its bind.
_PORT_TAKEN = {"squid": "address already in use", "tinyproxy": "could not create listening sockets"}


def _find(kind: str) -> Optional[str]:
    return next((p for p in (shutil.which(kind), f"/usr/sbin/{kind}") if p and os.access(p, os.X_OK)), None)


def unavailable(kind: str) -> Optional[str]:
    """None if the ``kind`` ("squid" / "tinyproxy") proxy can run here, else why not (one line)."""
    if kind not in _PORT_TAKEN:
        raise ValueError(f"unknown proxy kind {kind!r}")
    if _find(kind) is None:
        return f"{kind} is not installed; `make test` installs it (apt-get install -y {kind})"
    if kind == "squid" and os.geteuid() == 0 and _squid_user() is None:
        return "running as root, Squid needs a user to switch to (proxy, squid or nobody)"
    return None


class ForwardProxy(ChildServer):
    """One forward proxy (``kind``) on 127.0.0.1; ``stop()`` ends it and removes its directory."""

    kind = ""
    flags: Tuple[str, ...] = ()  # the binary's, before the configuration file
    template = ""  # the configuration, formatted with d (the directory), port and user

    def __init__(self, start_timeout: float = 15.0) -> None:
        reason = unavailable(self.kind)
        if reason is not None:
            raise RuntimeError(reason)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"kithara-{self.kind}-proxy-")
        self.dir = Path(self._tmp.name)
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"  # Squid's cache.log; tinyproxy logs to access_log
        self.console_log = self.dir / "console.log"  # stdout + stderr
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._proc: Optional[subprocess.Popen[bytes]] = None
        try:
            if self.kind == "squid" and os.geteuid() == 0:  # Squid writes here as this user
                user = _squid_user()
                assert user is not None
                os.chown(self.dir, user.pw_uid, user.pw_gid)
            for _ in range(_ATTEMPTS):
                if self._start(start_timeout):
                    break
            else:
                raise RuntimeError(f"{self.kind}: {_ATTEMPTS} free ports taken before it bound\n{self.read_logs()}")
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> bool:
        """Start on a new free port: True once it tunnels, False if it exits for lack of the port."""
        self.port: int = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = self.dir / f"{self.kind}.conf"
        conf.write_text(self._config())
        with open(self.console_log, "wb") as console:
            self._proc = subprocess.Popen(
                self._argv(conf), stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        error = "no answer"
        while self._proc.poll() is None and time.monotonic() < deadline:
            try:
                status = self._probe(max(0.1, min(1.0, deadline - time.monotonic())))
            except OSError as exc:
                error = repr(exc)
                time.sleep(0.05)
                continue
            if status.split(" ")[1:2] == ["200"] and self._proc.poll() is None:
                return True
            error = f"CONNECT answered {status!r}"
            time.sleep(0.05)
        code, logs = self._proc.poll(), self.read_logs()
        if code is not None and _PORT_TAKEN[self.kind] in logs.lower():
            return False
        raise RuntimeError(f"{self.kind} did not start (exit code {code}): {error}\n{logs}")

    def _probe(self, timeout: float) -> str:
        """The proxy's status line for ``CONNECT`` to a socket listening on a high port (never
        accepted: the kernel completes the handshake)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as target:
            target.bind(("127.0.0.1", 0))
            target.listen(1)
            where = f"127.0.0.1:{target.getsockname()[1]}"
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n\r\n".encode())
                with sock.makefile("rb") as reader:
                    head = reader.readline(65536)
        return head.decode("latin-1").rstrip("\r\n")

    def log_lines(self) -> List[str]:
        """The access log's lines so far."""
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def read_logs(self) -> str:
        return "\n".join(
            f"--- {log} ---\n{log.read_text(errors='replace') if log.exists() else '(none)'}"
            for log in (self.console_log, self.error_log, self.access_log)
        )

    def _config(self) -> str:
        user = _squid_user() if os.geteuid() == 0 else None  # only Squid's template uses it
        return self.template.format(d=self.dir, port=self.port, user=f"cache_effective_user {user.pw_name}" if user else "")

    def _argv(self, conf: Path) -> List[str]:
        return [str(_find(self.kind)), *self.flags, str(conf)]



class SquidProxy(ForwardProxy):
    """Squid 5 as a forward proxy with a memory cache (``-N``: no daemon)."""

    kind, flags, template = "squid", ("-N", "-f"), _SQUID_CONF


class TinyProxy(ForwardProxy):
    """tinyproxy 1.11 in the foreground (``-d``)."""

    kind, flags, template = "tinyproxy", ("-d", "-c"), _TINYPROXY_CONF


PROXIES = {"squid": SquidProxy, "tinyproxy": TinyProxy}
