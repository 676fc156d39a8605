"""Varnish and Squid, caching reverse proxies run in the foreground in front of an nginx origin.

What a CDN edge does to range reads, with each cache's own defaults: ``NginxServer(root)`` is the
origin, the cache listens on a free 127.0.0.1 port (picked and retried as in ``system_servers``)
with its configuration, state and logs in a private temporary directory, memory storage only, and
objects up to 32 MB cached. Start-up is confirmed by HEAD requests whose answer carries the
cache's own headers (``Via`` and ``X-Varnish`` / ``X-Cache``). Plain http only: ``tls`` raises
ValueError.

Varnish (``varnishd -F -b <origin>``: the builtin VCL, ``-s malloc,64m``, no CLI port):
it fetches the whole object on a miss (its builtin VCL drops ``Range`` from the backend request)
and answers a range from the object while it streams or from cache: 206 cold and warm; past the
end, and any multi-range, 416 with ``Content-Range: bytes */<size>``; ``If-Range``: the origin's
ETag 206, another 200. As root it runs its jail (``-j unix``: users varnish and vcache, from the
package). No access log file: ``varnishncsa -n <dir>/work -d`` reads its shared memory while it runs.

Squid (``squid -N``, ``cache_mem``, no ``cache_dir``): with its default ``range_offset_limit 0`` a
range request is forwarded to the origin as it is and its answer not cached; only a whole GET
fills the cache, after which Squid answers ranges itself and, nginx sending no freshness
information, revalidates with the origin (``TCP_REFRESH_UNMODIFIED``). A range past the end: the
origin's 416 on a miss, 200 and the whole object from cache (a multi-range too); ``If-Range``: the
origin's ETag 206, another 200. As root it switches to an unprivileged user
(``cache_effective_user``), who owns the temporary directory. It takes about 2 s to stop.
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import tempfile
import threading
from pathlib import Path
from typing import List, Optional

from .nginx import NginxServer, find_nginx
from .processes import head
from .system_servers import _SystemServer
from .tls import TlsFiles

_BINARIES = {"varnish": "varnishd", "squid": "squid"}
_SQUID_USERS = ("proxy", "squid", "nobody")  # as root: the first that exists (Debian's: proxy)

# Squid 5. Not defaults: memory cache sizes (64 MB, objects up to 32 MB: maximum_object_size is
# 4 MB by default), no ICMP pinger helper, a fixed visible_hostname (not this host's name, which
# need not resolve), and shutdown_lifetime 0 (it waits 30 s for clients by default).
SQUID_COMMON = """\
{user}
visible_hostname kithara-squid
cache_mem 64 MB
maximum_object_size_in_memory 32 MB
maximum_object_size 32 MB
pid_filename {d}/squid.pid
cache_log {d}/error.log
access_log stdio:{d}/access.log
cache_store_log none
coredump_dir {d}
pinger_enable off
shutdown_lifetime 0 seconds
"""
_SQUID_CONF = """\
http_port 127.0.0.1:{port} accel defaultsite=127.0.0.1 no-vhost
cache_peer 127.0.0.1 parent {origin} 0 no-query originserver name=origin
http_access allow localhost
http_access deny all
""" + SQUID_COMMON


def _find(kind: str) -> Optional[str]:
    name = _BINARIES[kind]
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _squid_user() -> Optional[pwd.struct_passwd]:
    for name in _SQUID_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def unavailable(kind: str) -> Optional[str]:
    """None if the ``kind`` ("varnish" / "squid") cache and its nginx origin can run here, else why not."""
    if kind not in _BINARIES:
        raise ValueError(f"unknown cache kind {kind!r}")
    if _find(kind) is None:
        return f"{kind} is not installed; `make test` installs it (apt-get install -y {kind})"
    try:
        find_nginx()
    except RuntimeError as exc:
        return str(exc)
    if kind == "varnish" and shutil.which("cc") is None:
        return "varnishd needs a C compiler (cc) to compile its VCL"
    if kind == "squid" and os.geteuid() == 0 and _squid_user() is None:
        return f"running as root, Squid needs one of the users {', '.join(_SQUID_USERS)}"
    return None


class _CacheServer(_SystemServer):
    """A cache in front of ``self.origin`` (an ``NginxServer`` of ``root``); ``stop()`` stops both."""

    def __init__(self, root: "Path | str", tls: Optional[TlsFiles] = None, start_timeout: float = 15.0) -> None:
        if tls is not None:
            raise ValueError(f"{self.kind}: plain http only (tls is not supported)")
        reason = unavailable(self.kind)
        if reason is not None:
            raise RuntimeError(reason)
        self.root = Path(root).resolve()
        self.tls = None
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._proc = None
        self.origin: Optional[NginxServer] = None
        self._tmp = tempfile.TemporaryDirectory(prefix=f"kithara-{self.kind}-")
        self.dir = Path(self._tmp.name)
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.console_log = self.dir / "console.log"  # stdout + stderr
        try:
            self.origin = NginxServer(self.root)
            self._prepare()
            self._start_on_a_free_port(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _prepare(self) -> None:
        """Set up the temporary directory before the first start."""

    def _is_cache(self, response: http.client.HTTPResponse) -> bool:
        raise NotImplementedError

    def _head(self, timeout: float) -> str:
        """One HEAD / request (the origin's 403 passed on): ``product`` if the cache answered."""
        response = head(self.port, timeout)
        if self._is_cache(response):
            return self.product
        return f"{response.status}, Server {response.getheader('Server')!r}, Via {response.getheader('Via')!r}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the cache (terminate, then kill its process group), then the origin. Idempotent."""
        try:
            super().stop(timeout)
        finally:
            if self.origin is not None:
                self.origin.stop(timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'base_url', '?')} origin={getattr(self, 'origin', '?')}>"


class VarnishServer(_CacheServer):
    """Varnish Cache (``varnishd -F``, malloc storage) in front of nginx serving ``root``."""

    kind = "varnish"
    product = "varnish"

    def _is_cache(self, response: http.client.HTTPResponse) -> bool:
        via = response.getheader("Via") or ""
        return response.getheader("X-Varnish") is not None and "varnish" in via.lower()

    def _config(self) -> str:
        # unused: -b names the backend (a -f VCL file would have to be readable by the varnish user)
        return "# varnishd " + " ".join(self._argv(self.dir / "-")[1:]) + "\n"

    def _argv(self, conf: Path) -> List[str]:
        assert self.origin is not None
        return [
            str(_find(self.kind)), "-F", "-a", f"127.0.0.1:{self.port}", "-b", f"127.0.0.1:{self.origin.port}",
            "-T", "none", "-n", str(self.dir / "work"), "-s", "malloc,64m",
        ]


class SquidServer(_CacheServer):
    """Squid (``squid -N``, memory cache only) as an accelerator in front of nginx serving ``root``."""

    kind = "squid"
    product = "squid"

    def _prepare(self) -> None:
        if os.geteuid() == 0:  # Squid switches to this user once started: its files are here
            user = _squid_user()
            assert user is not None
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    def _is_cache(self, response: http.client.HTTPResponse) -> bool:
        via = response.getheader("Via") or ""
        return response.getheader("X-Cache") is not None and "(squid/" in via.lower()

    def _config(self) -> str:
        assert self.origin is not None
        user = _squid_user() if os.geteuid() == 0 else None
        return _SQUID_CONF.format(
            d=self.dir, port=self.port, origin=self.origin.port,
            user=f"cache_effective_user {user.pw_name}" if user else "",
        )

    def _argv(self, conf: Path) -> List[str]:
        return [str(_find(self.kind)), "-N", "-f", str(conf)]
