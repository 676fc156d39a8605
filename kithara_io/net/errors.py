"""Why a request got no answer, in the user's terms: the StreamError for a network failure."""

from __future__ import annotations

import re
import ssl
from typing import Optional, Tuple

import urllib3

from ..errors import (
    CertificateError,
    ConnectionFailedError,
    HTTPStatusError,
    StreamError,
    TlsError,
    cause_chain,
)


def connection_error(exc: BaseException, url: str, span: Optional[tuple]) -> StreamError:
    """The StreamError for a request that got no answer: a certificate that cannot be
    verified is its own, permanent error; a proxy refusing the tunnel is its HTTP status
    (407 is not retried, 5xx are); anything else is a (transient) connection failure."""
    failure = _certificate_failure(exc)
    if failure is not None:
        host = urllib3.util.parse_url(url).host
        reason = getattr(failure, "verify_message", None) or "certificate verify failed"
        # The reason in the user's terms; the library's wrappers stay in __cause__.
        return CertificateError(
            f"the TLS certificate of {host} could not be verified: {reason}",
            url=url,
            byte_range=span,
        )
    if _speaks_no_tls(exc):
        parsed = urllib3.util.parse_url(url)
        where = f"{parsed.host}:{parsed.port or 443}"
        return TlsError(
            f"the server at {where} does not speak TLS (a plain http:// server?)",
            url=url,
            byte_range=span,
        )
    refusal = _tunnel_refusal(exc)
    if refusal is not None:
        status, reason = refusal
        return HTTPStatusError(status, f"{reason} from the proxy".lstrip(), url=url, byte_range=span)
    return ConnectionFailedError("request failed", url=url, byte_range=span, cause=exc)


def _certificate_failure(exc: Optional[BaseException]) -> Optional[BaseException]:
    """The certificate verification failure in ``exc``'s chain: the ``ssl`` error itself,
    else a wrapper that says so; None if the failure was something else."""
    chain = cause_chain(exc)
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return link
    for link in chain:
        if isinstance(link, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(link):
            return link
    return None


# OpenSSL's reasons when the bytes that came back are no TLS record (an HTTP answer, mostly).
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "UNKNOWN_PROTOCOL",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
)


def _speaks_no_tls(exc: Optional[BaseException]) -> bool:
    """Whether the TLS handshake in ``exc``'s chain failed because the peer answered with
    something else than TLS (a plain-http server): retrying will not change it."""
    for link in cause_chain(exc):
        if isinstance(link, ssl.SSLError) and link.reason in _NOT_TLS:
            return True
    return False


# http.client's words when a proxy answers CONNECT with an error status.
_TUNNEL_FAILED = re.compile(r"^Tunnel connection failed: (\d{3})\b ?(.*)$")


def _tunnel_refusal(exc: Optional[BaseException]) -> Optional[Tuple[int, str]]:
    """(status, reason) if a proxy refused to open the tunnel."""
    for link in cause_chain(exc):
        if type(link) is OSError and link.args and isinstance(link.args[0], str):
            match = _TUNNEL_FAILED.match(link.args[0])
            if match:
                return int(match.group(1)), match.group(2).strip()
    return None


__all__ = ["connection_error"]
