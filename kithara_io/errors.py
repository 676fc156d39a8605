"""Every error kithara-io raises about a resource derives from :class:`StreamError`.

Messages are in the user's terms: :func:`describe_cause` turns the exception a transport
raised (urllib3, requests, sockets, TLS) into a short phrase, and :func:`redact` hides the
password of ``user:password@`` URLs, in error text and (:func:`redacting_logger`) in logs.
"""

from __future__ import annotations

import errno
import http.client
import io
import logging
import re
import socket
import ssl
from typing import List, Optional, Tuple

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@/\s]*@")
# The secret fields of signed URLs (an Azure SAS, presigned S3 and GCS URLs, CloudFront)
_SIGNATURE = re.compile(r"(?i)([?&](?:sig|signature|x-amz-signature|x-amz-security-token|x-goog-signature)=)[^&#\s\]]*")
# "_TrackedHTTPPool(host='h', port=9): ", "NewConnectionError(" and the like: internal names.
_POOL_PREFIX = re.compile(r"\b\w+\(host=[^)]*\):\s*")
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Warning|Timeout):\s*)+")
_CAUSED_BY = re.compile(r"\s*\(Caused by .*\)\s*$", re.S)


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` and the signature of
    every signed URL (``sig=``, ``X-Amz-Signature=``...) replaced by ``***``."""
    if "@" in text:
        text = _USERINFO.sub(r"\1:***@", text)
    if "=" in text:
        text = _SIGNATURE.sub(r"\1***", text)
    return text


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            message = record.getMessage()
            record.msg, record.args = message, ()
        else:
            message = str(record.msg)
        if "@" in message or "=" in message:
            record.msg = redact(message)
        return True


def redacting_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` whose records never carry a URL password."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RedactFilter) for f in logger.filters):
        logger.addFilter(_RedactFilter())
    return logger


def cause_chain(exc: Optional[BaseException]) -> List[BaseException]:
    """``exc`` and what it wraps (``__cause__``, ``__context__``, urllib3's ``reason`` and
    ``original_error``, exceptions among ``args``), outermost first, each once; bounded, as
    chains can loop."""
    found: List[BaseException] = []
    todo = [exc] if exc is not None else []
    while todo and len(found) < 16:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        inner = [current.__cause__, current.__context__]
        inner += [getattr(current, "reason", None), getattr(current, "original_error", None)]
        inner += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        todo.extend(e for e in inner if isinstance(e, BaseException))
    return found


def _phrase(exc: BaseException) -> Optional[str]:
    """The short phrase for a well-known cause, or None."""
    name = type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None)
        return "TLS certificate verification failed" + (f" ({detail})" if detail else "")
    if isinstance(exc, socket.gaierror) or name == "NameResolutionError":
        return "host name could not be resolved"
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return "connection reset by the server"
    if name == "ConnectTimeoutError" or name == "ConnectTimeout":
        return "timed out connecting"
    if name in ("ReadTimeoutError", "ReadTimeout"):
        return "timed out waiting for data"
    if isinstance(exc, (TimeoutError, socket.timeout)) or getattr(exc, "errno", None) == errno.ETIMEDOUT:
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the body was complete"
    if isinstance(exc, BrokenPipeError):
        return "the server closed the connection"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "TLS certificate verification failed"
    return None


def _plain(exc: BaseException) -> str:
    """``str(exc)`` without internal class names (pool reprs, ``NameError:`` prefixes)."""
    if isinstance(exc, StreamError):
        return str(exc)  # its own words, URL and byte range
    if isinstance(exc, OSError) and exc.strerror and not exc.args[2:]:
        return exc.strerror
    text = _CAUSED_BY.sub("", str(exc))
    text = _POOL_PREFIX.sub("", text)
    text = _CLASS_PREFIX.sub("", text.strip())
    return text.strip(" :") or "unexpected error"


def describe_cause(exc: BaseException) -> str:
    """What went wrong, in the user's terms: a short phrase for the common network causes
    (connection refused, timed out, name resolution, reset, certificate) found anywhere in
    its chain of causes, else its message without internal class names. Passwords in URLs
    are redacted."""
    if isinstance(exc, StreamError):
        return redact(_plain(exc))
    for item in cause_chain(exc):
        phrase = _phrase(item)
        if phrase is not None:
            return phrase
    return redact(_plain(exc))


class StreamError(OSError):
    """A resource could not be read. Carries the URL, the byte range and the cause."""

    def __init__(
        self,
        message: str,
        *,
        url: Optional[str] = None,
        byte_range: Optional[Tuple[int, Optional[int]]] = None,
        cause: Optional[BaseException] = None,
    ) -> None:
        self.message = redact(message)
        self.url = redact(url) if url else url
        self.byte_range = byte_range
        self.cause = cause
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = self.message
        if self.byte_range is not None:
            start, end = self.byte_range
            text += f" (bytes {start}-{'' if end is None else end - 1})"
        if self.url:
            text += f" [{self.url}]"
        if self.cause is not None:
            text += f": {describe_cause(self.cause)}"
        return redact(text)

    def __str__(self) -> str:
        return self._describe()

    def __reduce__(self):  # keep pickling (multiprocessing, pytest-xdist) working
        return (_rebuild, (type(self), self.message, self.url, self.byte_range, self.cause))


def _rebuild(cls, message, url, byte_range, cause):
    return cls(message, url=url, byte_range=byte_range, cause=cause)


class HTTPStatusError(StreamError):
    """The server answered with an error status (404, 403, 500 after retries, ...)."""

    def __init__(self, status: int, reason: str = "", **kwargs) -> None:
        self.status = status
        self.reason = reason
        self.retry_after: Optional[float] = None  # seconds, when the server sent Retry-After
        super().__init__(f"HTTP {status} {reason}".rstrip(), **kwargs)

    def __reduce__(self):
        return (_rebuild_status, (type(self), self.status, self.reason, self.url, self.byte_range, self.cause))


def _rebuild_status(cls, status, reason, url, byte_range, cause):
    return cls(status, reason, url=url, byte_range=byte_range, cause=cause)


class ConnectionFailedError(StreamError):
    """The server could not be reached or the connection broke, and retrying did not help."""


class TlsError(StreamError):
    """The TLS handshake failed for a reason retrying will not change: the server does not
    speak TLS (an ``https://`` URL to a plain-http port), or its certificate (below)."""


class CertificateError(TlsError):
    """The server's TLS certificate could not be verified (not retried: it will not change)."""


class InvalidResponseError(StreamError):
    """The server's answer cannot be trusted: bad Content-Range, unexpected encoding, HTML page."""


class TruncatedBodyError(StreamError):
    """The body ended before the promised length, and resuming made no progress."""


class ResourceChangedError(StreamError):
    """The resource changed on the server while it was being read (validator or length)."""


class StreamClosedError(StreamError, ValueError):
    """The stream was closed while a read was waiting (also a ``ValueError``, like a closed file)."""


class LiveWindowError(StreamError, io.UnsupportedOperation):
    """A seek in a live HLS stream to a place its window no longer (or not yet) lists
    (also an ``io.UnsupportedOperation``, what a seek a stream cannot do raises)."""


def server_unreachable(error: BaseException) -> bool:
    """The server could not be asked (connection failed, timed out) or failed itself (5xx):
    what lets a disk cache serve its copy offline, unlike a 404 or a changed resource."""
    if isinstance(error, HTTPStatusError):
        return error.status >= 500
    return isinstance(error, ConnectionFailedError)
