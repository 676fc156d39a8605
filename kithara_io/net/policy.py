"""Per-origin decisions for every request of a source: one place that knows them all.

A :class:`Policy` is built from what the caller gave for one URL (``home``): headers,
``verify``, ``cert``, timeouts, ``max_redirects``. For each URL a request goes to it says

- which headers to send: the caller's, less its credentials (``Authorization``, ``Cookie``,
  ``Proxy-Authorization``) on any origin other than home (scheme, host, port); home also gets
  the URL's userinfo or, failing that and an ``Authorization`` header, the netrc entry of its
  host; and every origin gets the cookies a response set for it (a sign-in redirect);
- which proxy to go through: the environment's (``http_proxy``, ``https_proxy``,
  ``all_proxy``, ``NO_PROXY``, decided by requests' public helpers), with the proxy URL's
  credentials as ``Proxy-Authorization``; https goes through a CONNECT tunnel;
- which TLS context: one shared per CA bundle and client certificate (:mod:`.tls`).

The environment is read once per origin. Thread safety: ``_lock`` guards the per-origin
caches, and is held around each use of the cookie jar (the jar's own lock is private to it:
held across a fork instead, see :mod:`kithara_io.forking`).
"""

from __future__ import annotations

import base64
import http.cookiejar
import ssl
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import requests.utils

from ..errors import StreamError, TlsError
from ..forking import guard
from ..retry import Timeout
from .tls import CertSpec, Verify, context_for, resolve_verify
from .urls import Origin, origin, without_userinfo

USER_AGENT = "kithara-io"
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


def without_credentials(headers: Mapping[str, str]) -> Dict[str, str]:
    """``headers`` less the credentials: what goes to an origin they were not given for."""
    return {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("latin-1", "replace")).decode("ascii")


@dataclass(frozen=True)
class Proxy:
    """A forward proxy: where to connect, and the header that authenticates us to it."""

    host: str
    port: int
    authorization: Optional[str]

    @classmethod
    def parse(cls, url: str, for_url: str) -> "Proxy":
        if "://" not in url:
            url = "http://" + url  # as requests reads a bare host:port
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise StreamError(
                f"the proxy {without_userinfo(url)} is not an http:// proxy (not supported)",
                url=for_url,
            )
        auth = None
        if parts.username is not None:
            auth = basic_auth(
                urllib.parse.unquote(parts.username),
                urllib.parse.unquote(parts.password or ""),
            )
        return cls(parts.hostname, parts.port or 80, auth)


class Policy:
    """What every request of one source sends, and where (see the module docstring)."""

    def __init__(
        self,
        home: Optional[str],
        headers: Optional[Mapping[str, str]] = None,
        *,
        timeout: Timeout = Timeout(),
        verify: Verify = True,
        cert: CertSpec = None,
        max_redirects: int = 10,
        netrc: bool = True,
    ) -> None:
        given = dict(headers or {})
        if not any(k.lower() == "user-agent" for k in given):
            given = {"User-Agent": USER_AGENT, **given}
        self.home: Optional[Origin] = None if home is None else origin(home)
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.verify = resolve_verify(verify)
        # A (cert, key) pair given as a list (a JSON or YAML config) is the same pair.
        self.cert: CertSpec = tuple(cert) if isinstance(cert, list) else cert
        self.cookies = http.cookiejar.CookieJar()  # used under _lock
        self._cookies_set = False  # whether an answer ever set one (len() of the jar walks it)
        self._given = given
        self._away = without_credentials(given)
        self._home_headers = dict(given)
        if home is not None and not any(k.lower() == "authorization" for k in given):
            auth = _userinfo_auth(home) or (_netrc_auth(home) if netrc else None)
            if auth is not None:
                self._home_headers["Authorization"] = auth
        self._lock = threading.Lock()
        self._proxies: Dict[Origin, Optional[Proxy]] = {}
        guard(self)

    def fork_lock(self) -> threading.Lock:
        return self._lock

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it

    # -- headers -----------------------------------------------------------------------
    def headers_for(self, url: str) -> Dict[str, str]:
        """The headers a request to ``url`` carries (see the module docstring)."""
        home = self.home is None or origin(url) == self.home
        out = dict(self._home_headers if home else self._away)
        if self._cookies_set and not (home and any(k.lower() == "cookie" for k in out)):
            request = urllib.request.Request(without_userinfo(url))
            with self._lock:
                self.cookies.add_cookie_header(request)
            cookie = request.get_header("Cookie")
            if cookie:
                out["Cookie"] = cookie
        return out

    def remember_cookies(self, url: str, headers: Mapping[str, str]) -> None:
        """Keep the cookies an answer from ``url`` set (for that host only, per the jar's rules)."""
        if headers.get("Set-Cookie") is None:
            return
        answered = _Answered(headers)  # what the jar reads of a response: its headers
        with self._lock:
            self.cookies.extract_cookies(answered, urllib.request.Request(without_userinfo(url)))  # type: ignore[arg-type]
            self._cookies_set = True

    # -- proxies and TLS ---------------------------------------------------------------
    def proxy_for(self, url: str) -> Optional[Proxy]:
        """The environment's proxy for ``url`` (None: direct), decided once per origin."""
        key = origin(url)
        with self._lock:
            if key in self._proxies:
                return self._proxies[key]
        proxies = requests.utils.get_environ_proxies(url, no_proxy=None)
        chosen = requests.utils.select_proxy(url, proxies) if proxies else None
        proxy = Proxy.parse(chosen, url) if chosen else None
        with self._lock:
            self._proxies[key] = proxy
        return proxy

    def tls_context(self, url: str) -> ssl.SSLContext:
        try:
            return context_for(self.verify, self.cert)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                "the CA bundle or client certificate cannot be loaded",
                url=url,
                cause=exc,
            ) from exc


class _Answered:
    """What ``CookieJar.extract_cookies`` reads of a response: ``info()`` with ``get_all``."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def info(self):
        return self._headers


def _userinfo_auth(url: str) -> Optional[str]:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return None
    return basic_auth(urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))


def _netrc_auth(url: str) -> Optional[str]:
    """Credentials for ``url``'s host from ~/.netrc (or $NETRC), as requests finds them; a
    netrc that cannot be read is ignored, as requests does."""
    try:
        found: Optional[Tuple[str, str]] = requests.utils.get_netrc_auth(url)
    except Exception:  # noqa: BLE001 - a broken netrc must not break the stream
        return None
    return basic_auth(*found) if found else None


__all__ = [
    "CREDENTIAL_HEADERS",
    "Policy",
    "Proxy",
    "USER_AGENT",
    "basic_auth",
    "without_credentials",
]
