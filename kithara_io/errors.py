"""Every error kithara-io raises about a resource derives from :class:`StreamError`."""

from __future__ import annotations

import re
from typing import Optional, Tuple

# ``scheme://user:password@`` (or ``user@``): the userinfo part of a URL.
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/?#@\s]*@", re.I)


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by ``***``: credentials given
    in a URL never show up in an error message or a log line."""
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)


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
        self.message = message
        self.url = url
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
            text += f": {type(self.cause).__name__}: {self.cause}"
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
        super().__init__(f"HTTP {status} {reason}".rstrip(), **kwargs)

    def __reduce__(self):
        return (_rebuild_status, (type(self), self.status, self.reason, self.url, self.byte_range, self.cause))


def _rebuild_status(cls, status, reason, url, byte_range, cause):
    return cls(status, reason, url=url, byte_range=byte_range, cause=cause)


class ConnectionFailedError(StreamError):
    """The server could not be reached or the connection broke, and retrying did not help."""


class CertificateError(StreamError):
    """The server's TLS certificate could not be verified (not retried: it will not change)."""


class InvalidResponseError(StreamError):
    """The server's answer cannot be trusted: bad Content-Range, unexpected encoding, HTML page."""


class TruncatedBodyError(StreamError):
    """The body ended before the promised length, and resuming made no progress."""


class ResourceChangedError(StreamError):
    """The resource changed on the server while it was being read (validator or length)."""


class StreamClosedError(StreamError, ValueError):
    """The stream was closed while a read was waiting (also a ``ValueError``, like a closed file)."""


def server_unreachable(error: BaseException) -> bool:
    """The server could not be asked (connection failed, timed out) or failed itself (5xx):
    what lets a disk cache serve its copy offline, unlike a 404 or a changed resource."""
    if isinstance(error, HTTPStatusError):
        return error.status >= 500
    return isinstance(error, ConnectionFailedError)
