"""The one way to the network: :class:`Client` sends a request under a :class:`Policy`.

Every source kind goes through it: a file's first answer and its range requests, a live
stream and its reconnects, HLS playlists, segments and keys, disk-cache revalidation. It
follows redirects (:mod:`.redirects`), takes the policy's headers, proxy and TLS context for
each hop, keeps connections alive per origin (:mod:`.connections`), and turns a request that
got no answer into a StreamError naming the URL (:func:`.errors.connection_error`). An answer
whose status line is ``ICY 200 OK`` (old Shoutcast) is asked again over a plain socket
(:mod:`kithara_io.sources.live.shoutcast`). Statuses are the caller's to judge.

Thread safety: any number of threads may send at once; the pool and the policy lock their
own state.
"""

from __future__ import annotations

import http.client
from functools import partial
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..errors import StreamError
from ..sources.live.shoutcast import is_icy_status_line, request_icy
from . import curl
from .answer_heads import FinalResponse
from .connections import SHARED, Connection, Pool, SharedKey, new_connection, shutdown
from .errors import connection_error
from .policy import Policy
from .redirects import follow
from .response import Response
from .urls import origin, request_target, without_userinfo

OnConnect = Callable[[Any], None]  # called with the connection (``sock``/``kept_sock``) before sending


class Client:
    """Requests under one :class:`Policy` over one :class:`Pool` (see the module docstring).
    ``keep_alive`` False: no connection is kept after its answer (a live stream's). ``share``:
    idle connections (``http.client``'s and libcurl's) go to the store every sharing client
    takes from, under a key naming the origin, the proxy (with its credentials), over https
    the CA bundle and client certificate, and for libcurl the timeouts its handle holds (see
    :mod:`.connections`)."""

    def __init__(self, policy: Policy, *, keep_alive: bool = True, share: bool = False) -> None:
        self.policy = policy
        self.pool = Pool(keep_alive, shared=SHARED if share else None)
        self._share = share
        self._tls_identity = (policy.verify, policy.cert)  # what a shared https connection is bound to

    def request(
        self,
        method: str,
        url: str,
        headers: Optional[Mapping[str, str]] = None,
        *,
        extra: Optional[Mapping[str, str]] = None,
        on_connect: Optional[OnConnect] = None,
        span: Optional[tuple] = None,
        icy: bool = False,
        random_read: bool = False,
    ) -> Response:
        """``method`` ``url`` with the policy's headers for each hop plus ``headers`` (and
        ``extra``, sent whatever the origin), redirects followed. ``icy``: ask as an old
        Shoutcast server wants (no HTTP attempt first). ``random_read``: the caller expects a
        ``206`` to a small bounded ``Range`` (the server answered ranges before, and this is
        a random read), so it may go over libcurl (see :mod:`.curl`). Raises a StreamError."""
        mine = dict(headers or {})
        if extra:
            mine.update(extra)

        def send(hop: str) -> Response:
            if icy:
                return self._icy(hop, mine, on_connect, span)
            return self._send(method, hop, mine, on_connect, span, random_read)

        # A connection an on_connect callback saw is not pooled after a redirect: the
        # caller's abort handle may still reach it until the next hop replaces it.
        return follow(send, url, self.policy.max_redirects, keep=on_connect is None)

    def abort_all(self) -> None:
        """Break every request in flight, also those still waiting for their answer."""
        self.pool.shutdown_all()

    def close(self) -> None:
        """Close the kept-alive connections (answers still open close their own)."""
        self.pool.close()

    # -- one hop -------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        on_connect: Optional[OnConnect],
        span,
        random_read: bool = False,
    ) -> Response:
        policy = self.policy
        scheme, host, port = origin(url)
        proxy = policy.proxy_for(url)
        key: tuple = (scheme, host, port, proxy)
        if self._share:
            key = SharedKey((*key, self._tls_identity if scheme == "https" else None))
        sent = {**policy.headers_for(url), **headers}
        target = request_target(url)
        tunnel: Optional[Tuple[str, int, Dict[str, str]]] = None
        bare = host.strip("[]")  # an IPv6 literal without its brackets
        via = (bare, port)
        if proxy is not None:
            via = (proxy.host, proxy.port)
            if scheme == "https":
                tunnel = (
                    bare,
                    port,
                    {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {},
                )
            else:
                target = without_userinfo(url)  # absolute-form through a forward proxy
                if proxy.authorization:
                    sent["Proxy-Authorization"] = proxy.authorization
        bound = curl.range_bound(sent) if random_read and proxy is None and method == "GET" and curl.usable else None
        if bound is not None:
            buffered = self._send_curl(url, key, target, sent, bound, on_connect, span)
            if buffered is not None:
                return buffered
        conn = self.pool.take(key)
        try:
            fresh = conn is None
            if conn is None:
                tls = policy.tls_context(url) if scheme == "https" else None
                conn = new_connection(*via, tls=tls, timeout=policy.timeout.connect, tunnel=tunnel)
                self.pool.opened(conn)
            # Answers past interim heads, their heads held to this policy's speed limit (a
            # proxy's answer to CONNECT too; a shared connection may have served other timeouts).
            conn.response_class = partial(FinalResponse, timeout=policy.timeout)
            if fresh:
                conn.connect()
            if conn.sock is not None:  # (a shared one may come from a source with other timeouts)
                conn.sock.settimeout(policy.timeout.read)  # per gap between reads from now on
            if on_connect is not None:
                on_connect(conn)
            conn.request(method, target, headers=sent)
            raw = conn.getresponse()
        except StreamError:
            _drop(conn)
            raise
        except http.client.BadStatusLine as exc:
            _drop(conn)
            if is_icy_status_line(exc) and method == "GET":
                return self._icy(url, headers, on_connect, span)
            raise connection_error(exc, url, span) from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            _drop(conn)
            raise connection_error(exc, url, span) from exc
        response = Response(raw, conn, url, method, pool=self.pool, key=key)
        policy.remember_cookies(url, response.headers)
        return response

    def _send_curl(
        self,
        url: str,
        key: tuple,
        target: str,
        sent: Mapping[str, str],
        bound: int,
        on_connect: Optional[OnConnect],
        span,
    ) -> Optional[Response]:
        """A small range GET over libcurl (see :mod:`.curl`); None when libcurl cannot read
        the answer (then ``http.client`` asks again)."""
        policy = self.policy
        # libcurl's handle also holds the timeouts it was made with: part of a shared key.
        key = SharedKey((*key, "curl", policy.timeout)) if self._share else (*key, "curl")
        conn: Any = self.pool.take(key)
        if conn is None:
            scheme, host, port = key[0], key[1], key[2]
            conn = curl.CurlConnection(scheme, host.strip("[]"), port, policy.timeout, policy.verify, policy.cert)
            self.pool.opened(conn)
        try:
            if on_connect is not None:
                on_connect(conn)
            conn.request_range(target, sent, bound)
            raw = conn.getresponse()
        except curl.NotBuffered:
            self.pool.give_back(key, conn)
            return None
        except (OSError, ValueError) as exc:
            _drop(conn)
            raise connection_error(exc, url, span) from exc
        response = Response(raw, conn, url, "GET", pool=self.pool, key=key)
        policy.remember_cookies(url, response.headers)
        return response

    def _icy(
        self,
        url: str,
        headers: Mapping[str, str],
        on_connect: Optional[OnConnect],
        span,
    ) -> Response:
        """The request over a plain (or TLS) socket, accepting ``ICY 200 OK``."""
        policy = self.policy
        context = policy.tls_context(url) if origin(url)[0] == "https" else True  # True: plain http
        attach = None if on_connect is None else (lambda sock: on_connect(_Socket(sock)))
        try:
            raw = request_icy(
                without_userinfo(url),
                {**policy.headers_for(url), **headers},
                policy.timeout.connect,
                policy.timeout.read,
                context,
                attach,
                policy.timeout,
            )
        except StreamError:
            raise
        except OSError as exc:
            raise connection_error(exc, url, span) from exc
        return Response(raw, raw.connection, url, "GET")


class _Socket:
    """A bare socket as an abort handle sees a connection."""

    def __init__(self, sock: Any) -> None:
        self.sock = self.kept_sock = sock


def _drop(conn: Optional[Connection]) -> None:
    if conn is not None:
        shutdown(conn)
        conn.close()


__all__ = ["Client", "OnConnect"]
