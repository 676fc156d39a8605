"""The faults of :class:`~tests.servers.faults.FaultServer`: frozen dataclasses, each setting its
part of a :class:`_Plan` (what one response must do); :func:`_make_plan` combines a request's
faults into one plan. Where each fault acts is listed in ``tests/servers/faults.py``."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class _Plan:
    """What one response must do, assembled from the fault(s) of the request."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.answer: Optional[Fault] = None  # Disconnect / Status / Redirect / HtmlPage
        self.ignore_range = False
        self.dates_fail_if_range = False
        self.cap: Optional[int] = None
        self.slice_as_200 = False
        # (first, last, total) -> Content-Range value, or None to omit it; forces a 206
        self.content_range: Optional[Callable[[int, int, int], Optional[str]]] = None
        self.total: Optional[int] = None  # ChangedLength: the total shown in 416/HEAD
        self.etag: Optional[str] = None
        self.gzip = False
        self.extra_headers: List[Tuple[str, str]] = []
        self.chunked = False
        self.no_length = False
        self.stalls: List[Tuple[int, float]] = []  # (after_bytes, seconds; inf = until stop)
        self.cut: Optional[Tuple[int, str]] = None  # (after_bytes, "reset" | "truncate")
        self.rate: Optional[float] = None

    def set_cut(self, after: int, kind: str) -> None:
        if self.cut is None or after < self.cut[0]:
            self.cut = (after, kind)


class Fault:
    """Base class of every fault."""

    def _apply(self, plan: _Plan) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Normal(Fault):
    """No fault: use in a script to let one request through normally (same as ``None``)."""

    def _apply(self, plan: _Plan) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Reset(Fault):
    """Send the headers and ``after_bytes`` body bytes, then abort the connection with a TCP RST
    (SO_LINGER 0 + close). With ``after_bytes`` >= the body, the whole body goes out first."""

    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.set_cut(self.after_bytes, "reset")


@dataclasses.dataclass(frozen=True)
class Truncate(Fault):
    """Send ``after_bytes`` body bytes, then close cleanly (FIN) although the framing
    (Content-Length / chunked) promised more."""

    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.set_cut(self.after_bytes, "truncate")


@dataclasses.dataclass(frozen=True)
class Stall(Fault):
    """After the headers and ``after_bytes`` body bytes, send nothing for ``seconds``, then go on
    (a stall point beyond the body or a Reset/Truncate point never happens)."""

    seconds: float
    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.stalls.append((self.after_bytes, float(self.seconds)))


@dataclasses.dataclass(frozen=True)
class StallForever(Fault):
    """After the headers and ``after_bytes`` body bytes, stall until the server stops (then the
    connection is reset)."""

    after_bytes: int = 0

    def _apply(self, plan: _Plan) -> None:
        plan.stalls.append((self.after_bytes, math.inf))


@dataclasses.dataclass(frozen=True)
class Status(Fault):
    """Answer ``code`` (503, 429, 404, 403, 500, 408, ...) instead of the resource, with an
    optional ``Retry-After``, body and extra headers; ``close`` adds ``Connection: close``."""

    code: int
    retry_after: Optional[str] = None
    body: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    close: bool = False

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class WrongContentRange(Fault):
    """206 whose Content-Range first/last are off by ``shift``; the bytes are the requested ones.
    A request without Range is treated as ``bytes=0-``."""

    shift: int

    def _apply(self, plan: _Plan) -> None:
        s = self.shift
        plan.content_range = lambda a, b, total: f"bytes {a + s}-{b + s}/{total}"


@dataclasses.dataclass(frozen=True)
class BadContentRange(Fault):
    """206 with literally ``Content-Range: value`` (garbage, wrong total, ...) and the requested
    bytes. A request without Range is treated as ``bytes=0-``."""

    value: str

    def _apply(self, plan: _Plan) -> None:
        v = self.value
        plan.content_range = lambda a, b, total: v


@dataclasses.dataclass(frozen=True)
class NoContentRange(Fault):
    """206 with the requested bytes but no Content-Range header at all."""

    def _apply(self, plan: _Plan) -> None:
        plan.content_range = lambda a, b, total: None


@dataclasses.dataclass(frozen=True)
class ChangedLength(Fault):
    """Content-Range (206 and 416) and HEAD's Content-Length show ``new_total`` as the total;
    the bytes are the requested ones. A GET without Range is treated as ``bytes=0-``."""

    new_total: int

    def _apply(self, plan: _Plan) -> None:
        n = self.new_total
        plan.content_range = lambda a, b, total: f"bytes {a}-{b}/{n}"
        plan.total = n


@dataclasses.dataclass(frozen=True)
class IgnoreRange(Fault):
    """A server without range support: 200 with the whole body, no Accept-Ranges."""

    def _apply(self, plan: _Plan) -> None:
        plan.ignore_range = True


@dataclasses.dataclass(frozen=True)
class DatesFailIfRange(Fault):
    """Apache within 60 s of a file's mtime: an ``If-Range`` date never matches (too fresh to
    be a strong validator), so a range asked with one is answered 200 with the whole body."""

    def _apply(self, plan: _Plan) -> None:
        plan.dates_fail_if_range = True


@dataclasses.dataclass(frozen=True)
class CapRange(Fault):
    """A legal but surprising server (CDN slice limit): a 206 carries at most ``max_bytes``, with
    an honest Content-Range. Requests without Range are unaffected."""

    max_bytes: int

    def _apply(self, plan: _Plan) -> None:
        plan.cap = self.max_bytes


@dataclasses.dataclass(frozen=True)
class RangeAs200(Fault):
    """A broken server or proxy (fsspec's own test server): a range request gets ``200``
    with only the bytes asked and no Content-Range, so the answer looks like a whole file
    of that length. Requests without Range are unaffected."""

    def _apply(self, plan: _Plan) -> None:
        plan.slice_as_200 = True


@dataclasses.dataclass(frozen=True)
class ChangedETag(Fault):
    """Correct bytes, but a different ETag header (``etag``, or a fresh strong one each time).
    If-Range is still evaluated against the real ETag."""

    etag: Optional[str] = None

    def _apply(self, plan: _Plan) -> None:
        plan.etag = self.etag or f'"changed-{next(_ETAG_COUNTER)}"'


@dataclasses.dataclass(frozen=True)
class HtmlPage(Fault):
    """A captive-portal / proxy error page (text/html) with ``status`` for any request."""

    status: int = 200

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class Gzip(Fault):
    """The body that would be sent (206 slice or whole) gzip-compressed, with
    ``Content-Encoding: gzip``, whatever Accept-Encoding said. Content-Range is unchanged."""

    def _apply(self, plan: _Plan) -> None:
        plan.gzip = True


@dataclasses.dataclass(frozen=True)
class Header(Fault):
    """An extra response header, the body unchanged (e.g. ``Content-Encoding: gzip`` on a
    stored ``.gz``, as werkzeug and twisted send it)."""

    name: str
    value: str

    def _apply(self, plan: _Plan) -> None:
        plan.extra_headers.append((self.name, self.value))


@dataclasses.dataclass(frozen=True)
class Redirect(Fault):
    """Redirect to ``location`` (relative or absolute) with ``code`` (301/302/303/307/308)."""

    location: str
    code: int = 302

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class Latency(Fault):
    """Wait ``seconds`` before the headers (``math.inf``: until the server stops)."""

    seconds: float

    def _apply(self, plan: _Plan) -> None:
        plan.latency += float(self.seconds)


@dataclasses.dataclass(frozen=True)
class Throttle(Fault):
    """Token-bucket body rate of ``bytes_per_second`` (burst: 1/20 s of data)."""

    bytes_per_second: float

    def _apply(self, plan: _Plan) -> None:
        plan.rate = float(self.bytes_per_second)


@dataclasses.dataclass(frozen=True)
class Disconnect(Fault):
    """Read the request, then close without any response (FIN; ``rst=True``: RST) - like a
    keep-alive connection the server dropped, or a crashed backend."""

    rst: bool = False

    def _apply(self, plan: _Plan) -> None:
        plan.answer = plan.answer or self


@dataclasses.dataclass(frozen=True)
class Chunked(Fault):
    """``Transfer-Encoding: chunked`` instead of Content-Length (body faults count payload)."""

    def _apply(self, plan: _Plan) -> None:
        plan.chunked = True


@dataclasses.dataclass(frozen=True)
class NoContentLength(Fault):
    """No Content-Length: the body is delimited by closing the connection (HTTP/1.0 style)."""

    def _apply(self, plan: _Plan) -> None:
        plan.no_length = True


FaultSpec = Union[None, Fault, Sequence[Fault]]

_ETAG_COUNTER = itertools.count(1)

_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sign in to Wi-Fi</title></head>\n"
    b"<body><h1>Welcome to Free Wi-Fi</h1><p>Please accept the terms of use to continue.</p>\n"
    b"<form method=\"post\" action=\"/login\"><button>Connect</button></form></body></html>\n"
)


def _make_plan(fault: FaultSpec) -> _Plan:
    plan = _Plan()
    if fault is None:
        return plan
    faults = fault if isinstance(fault, (tuple, list)) else (fault,)
    for f in faults:
        if f is None:
            continue
        if not isinstance(f, Fault):
            raise TypeError(f"not a fault: {f!r}")
        f._apply(plan)
    return plan
