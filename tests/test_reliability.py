"""Issue #5 "Reliability": every network fault either leaves the result exact or ends in a
clear error of the right type, promptly. Never wrong bytes or samples, never a hang.

The faults come from ``tests/servers/faults.py`` (a scripted in-process HTTP server). Its
request log is the ground truth for what the client asked for: which Range a resume starts
at, how many attempts a fetch made, which headers went out.

Conventions: backoffs and timeouts are tiny (``FAST``) so a failing fetch gives up within a
fraction of a second; ``ORDERLY`` makes the request sequence deterministic (no tail probe, one
fetch at a time, fixed sizes) for the tests that look at individual requests. Nothing waits
with ``time.sleep``: tests block on the stream, on the server (``wait_requests``,
``wait_idle``) or on thread joins, all with bounds.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import threading
import time
import traceback
from typing import Callable, List, Optional

import numpy as np
import pytest
import soundfile as sf

import kithara_io
from kithara_io import (
    ConnectionFailedError,
    HTTPStatusError,
    InvalidResponseError,
    ResourceChangedError,
    Retry,
    StreamClosedError,
    StreamError,
    Timeout,
    TruncatedBodyError,
)
from kithara_io.headers import retry_after as parse_retry_after
from tests.servers.faults import (
    BadContentRange,
    CapRange,
    ChangedETag,
    ChangedLength,
    Chunked,
    Disconnect,
    FaultServer,
    Gzip,
    HtmlPage,
    IgnoreRange,
    Latency,
    NoContentLength,
    NoContentRange,
    Redirect,
    RequestRecord,
    Reset,
    Stall,
    StallForever,
    Status,
    Throttle,
    Truncate,
    WrongContentRange,
)
from tests.servers.media import decoded, media_bytes

pytestmark = pytest.mark.timeout(30)

KiB = 1024
MiB = 1024 * KiB
READ_TIMEOUT = 0.3
RETRY = Retry(attempts=4, backoff=0.01, max_backoff=0.05)
FAST = dict(retry=RETRY, timeout=Timeout(connect=2, read=READ_TIMEOUT))
# One request at a time, fixed sizes, no tail probe: the n-th request is predictable.
ORDERLY = dict(
    FAST,
    tail=0,
    max_outstanding=1,
    first_fetch=64 * KiB,
    min_fetch=64 * KiB,
    max_fetch=64 * KiB,
    read_ahead=64 * KiB,
    cache_budget=None,
)
# The open request asks for everything: a fault on request 1 cuts the only body there is.
WHOLE = dict(FAST, tail=0, first_fetch=1 << 30, cache_budget=None)
BOUND = 10.0  # seconds: a permanent fault must surface well within this


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def srv(fault_server: FaultServer) -> FaultServer:
    return fault_server


def blob(media, size: int = 1 * MiB) -> bytes:
    """The first ``size`` bytes of random.bin (incompressible: a shifted copy never matches)."""
    return media_bytes(media, "random.bin")[:size]


def range_start(rec: RequestRecord) -> Optional[int]:
    """First byte of a ``bytes=a-b`` / ``bytes=a-`` request (None for suffix or no Range)."""
    if not rec.range or not rec.range.startswith("bytes="):
        return None
    first = rec.range[len("bytes=") :].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def gets(srv: FaultServer, path: str) -> List[RequestRecord]:
    return [r for r in srv.requests if r.method == "GET" and r.path == path]


def read_checked(f, expected: bytes, step: int = 64 * KiB) -> bytes:
    """Read ``f`` to its end in ``step`` pieces, asserting every piece is the right bytes.
    Returns what was read; an exception propagates after the correct prefix was checked."""
    got = bytearray()
    for _ in range(len(expected) // step + 2):
        piece = f.read(step)
        assert piece == expected[len(got) : len(got) + len(piece)], f"wrong bytes at {len(got)}"
        if not piece:
            break
        got += piece
    return bytes(got)


def same_error(stored, raised) -> bool:
    """The stored failure and the one raised (the same object, or a copy of it)."""
    return type(stored) is type(raised) and str(stored) == str(raised)


def close_quietly(f) -> None:
    """Close, tolerating the stored failure that close() may raise again (by design)."""
    with contextlib.suppress(StreamError):
        f.close()


def final_stats(f):
    """Counters once every fetch has finished: close() waits for them."""
    close_quietly(f)
    return f.stats()


def wait_for_request(srv: FaultServer, match: Callable[[RequestRecord], bool], timeout: float = 5.0) -> bool:
    """Block until a request satisfying ``match`` has arrived (event-driven, bounded)."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        seen = srv.requests
        if any(match(r) for r in seen):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        srv.wait_requests(len(seen) + 1, timeout=remaining)
    return False


# -- retries: which faults, how many, how long -----------------------------------------------


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_transient_status_is_retried_and_each_retry_counted(srv, media, code):
    data = blob(media, 300 * KiB)
    url = srv.add("/f", data)
    srv.script("/f", [Status(code), Status(code, retry_after="0")])
    with kithara_io.open(url, **ORDERLY) as f:
        assert read_checked(f, data) == data
    assert final_stats(f).retries == 2
    assert [range_start(r) for r in gets(srv, "/f")[:3]] == [0, 0, 0]
    assert [r.status for r in gets(srv, "/f")[:3]] == [code, code, 206]


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 501])
def test_permanent_status_is_not_retried(srv, media, code):
    url = srv.add("/f", blob(media, 100 * KiB))
    srv.always("/f", Status(code))
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(url, **ORDERLY)
    assert info.value.status == code
    assert url in str(info.value) and str(code) in str(info.value)
    assert srv.count("/f") == 1


def test_each_transient_fault_mid_stream_is_one_retry(srv, media):
    """Sequential reads, one fetch at a time: every scripted transient fault costs exactly one
    retry (stats().retries) and the bytes are exact."""
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    faults = [
        Status(503),
        Disconnect(),
        Reset(after_bytes=1000),
        Truncate(after_bytes=5000),
        Status(429, retry_after="0"),
        Latency(5),  # silent before the headers: read timeout
        Stall(5, after_bytes=2000),  # silent in the body: read timeout
        HtmlPage(502),  # a proxy's error page
    ]
    srv.script("/f", [None] + faults)
    # Several faults in a row may hit one fetch without progress: allow them all.
    policy = Retry(attempts=len(faults) + 1, backoff=0.01, max_backoff=0.05)
    with kithara_io.open(url, **dict(ORDERLY, retry=policy)) as f:
        assert read_checked(f, data) == data
    stats = final_stats(f)
    assert stats.cancels == 0  # so no fault was absorbed by a cancelled fetch
    assert stats.retries == len(faults)
    assert srv.pending("/f") == 0


def test_retry_after_seconds_is_honoured(srv, media):
    data = blob(media, 100 * KiB)
    url = srv.add("/f", data)
    srv.script("/f", [Status(503, retry_after="1")])
    started = time.monotonic()
    with kithara_io.open(url, **dict(ORDERLY, retry=Retry(attempts=3, backoff=0.01, max_backoff=5))) as f:
        elapsed = time.monotonic() - started
        assert read_checked(f, data) == data
    assert 0.9 <= elapsed < 5
    assert final_stats(f).retries == 1


def test_retry_after_http_date_is_honoured(srv, media):
    data = blob(media, 100 * KiB)
    url = srv.add("/f", data)
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # 1 to 2 s away (whole seconds)
    srv.script("/f", [Status(429, retry_after=when)])
    started = time.monotonic()
    with kithara_io.open(url, **dict(ORDERLY, retry=Retry(attempts=3, backoff=0.01, max_backoff=5))) as f:
        elapsed = time.monotonic() - started
        assert read_checked(f, data) == data
    assert 0.9 <= elapsed < 5


def test_retry_after_is_capped_by_max_backoff(srv, media):
    data = blob(media, 100 * KiB)
    url = srv.add("/f", data)
    srv.script("/f", [Status(503, retry_after="3600")])
    started = time.monotonic()
    with kithara_io.open(url, **ORDERLY) as f:
        assert read_checked(f, data) == data
    assert time.monotonic() - started < 5


def test_backoff_grows_exponentially_and_attempts_are_bounded(srv, media):
    url = srv.add("/f", blob(media, 100 * KiB))
    srv.always("/f", Status(503))
    policy = Retry(attempts=4, backoff=0.1, max_backoff=10, jitter=0)
    started = time.monotonic()
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(url, **dict(ORDERLY, retry=policy))
    elapsed = time.monotonic() - started
    assert info.value.status == 503
    assert srv.count("/f") == 4
    assert 0.1 + 0.2 + 0.4 <= elapsed < 0.7 + BOUND


def test_retry_delay_policy():
    policy = Retry(backoff=0.25, max_backoff=2.0, jitter=0.25)
    for failures in range(1, 10):
        base = min(2.0, 0.25 * 2 ** (failures - 1))
        for _ in range(20):
            assert base * 0.75 <= policy.delay(failures) <= base * 1.25
    assert len({policy.delay(3) for _ in range(20)}) > 1  # jittered
    exact = Retry(backoff=0.1, max_backoff=10, jitter=0)
    assert [exact.delay(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert policy.delay(1, retry_after=1.5) == 1.5  # the server's wish, no jitter
    assert policy.delay(1, retry_after=3600) == 2.0  # capped
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(email.utils.formatdate(1000.0 + 30, usegmt=True), now=1000.0) == pytest.approx(30)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    transient = [HTTPStatusError(s) for s in (408, 429, 500, 502, 503, 504)]
    transient += [ConnectionFailedError("x"), TruncatedBodyError("x")]
    assert all(Retry().is_transient(e) for e in transient)
    permanent = [HTTPStatusError(s) for s in (400, 403, 404, 410, 501)]
    permanent += [InvalidResponseError("x"), ResourceChangedError("x")]
    assert not any(Retry().is_transient(e) for e in permanent)


@pytest.mark.parametrize(
    "fault, error",
    [
        (Status(503), HTTPStatusError),
        (Disconnect(), ConnectionFailedError),
        (Disconnect(rst=True), ConnectionFailedError),
        (Reset(after_bytes=0), ConnectionFailedError),
        (Truncate(after_bytes=0), TruncatedBodyError),
        (StallForever(), ConnectionFailedError),
        (Latency(float("inf")), ConnectionFailedError),
    ],
    ids=["503", "disconnect", "disconnect-rst", "reset-0", "truncate-0", "stall-forever", "no-headers"],
)
def test_first_fetch_gives_up_after_bounded_attempts(srv, media, fault, error, no_leaks):
    """Raised by open() (no answer at all) or by the first read (headers came, so the length
    is known and open() returned, but the body never does)."""
    url = srv.add("/f", blob(media, 100 * KiB))
    srv.always("/f", fault)
    started = time.monotonic()
    with pytest.raises(error) as info:
        with kithara_io.open(url, **ORDERLY) as f:
            f.read(1)
    assert time.monotonic() - started < BOUND
    assert url in str(info.value)
    assert srv.count("/f") == RETRY.attempts


def test_connection_refused_is_retried_then_fails(no_leaks):
    with socket.socket() as s:  # bound, never listening: every connect is refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/x.flac"
        policy = Retry(attempts=3, backoff=0.1, max_backoff=1, jitter=0)
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError) as info:
            kithara_io.open(url, **dict(ORDERLY, retry=policy))
        elapsed = time.monotonic() - started
    assert url in str(info.value)
    assert 0.1 + 0.2 <= elapsed < BOUND  # two backoffs: three attempts


# -- timeouts: per gap, not total --------------------------------------------------------------


def test_slow_but_moving_download_never_times_out(srv, media):
    data = blob(media, 300 * KiB)
    url = srv.add("/f", data)
    srv.always("/f", Throttle(200_000))  # a chunk every 50 ms, 1.5 s in all
    started = time.monotonic()
    with kithara_io.open(url, **WHOLE) as f:
        assert read_checked(f, data) == data
    assert time.monotonic() - started > 3 * READ_TIMEOUT  # far longer than the read timeout
    stats = final_stats(f)
    assert stats.retries == 0 and stats.requests == 1


@pytest.mark.parametrize("fault", [Stall(10, after_bytes=20_000), Latency(10)], ids=["in-body", "before-headers"])
def test_silent_download_times_out_and_is_retried(srv, media, fault):
    data = blob(media, 300 * KiB)
    url = srv.add("/f", data)
    srv.script("/f", [fault])
    started = time.monotonic()
    with kithara_io.open(url, **WHOLE) as f:
        assert read_checked(f, data) == data
    assert time.monotonic() - started < 5  # did not sit out the 10 s silence
    assert final_stats(f).retries == 1
    assert srv.count("/f") == 2


# -- mid-body resume -----------------------------------------------------------------------------

CUT = 100_000


@pytest.mark.parametrize(
    "fault",
    [
        Truncate(after_bytes=CUT),
        (NoContentLength(), Truncate(after_bytes=CUT)),
        Reset(after_bytes=CUT),
        Stall(10, after_bytes=CUT),
        (Chunked(), Truncate(after_bytes=CUT)),
    ],
    ids=["truncate", "no-length-truncate", "reset", "stall", "chunked-truncate"],
)
def test_resume_starts_where_the_body_was_cut(srv, media, fault):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [fault])
    with kithara_io.open(url, **WHOLE) as f:
        assert read_checked(f, data) == data
    first, resume = gets(srv, "/f")[:2]
    assert first.range == f"bytes=0-{(1 << 30) - 1}" and first.if_range is None
    assert resume.range == f"bytes={CUT}-{len(data) - 1}"
    assert resume.if_range == srv.etag("/f")  # the resume is conditional on the same version
    assert srv.count("/f") == 2


def test_resume_after_cut_is_exact_for_every_fault(srv, media):
    """Whatever the cut, the resumed stream is byte-exact and a resume never starts past the
    cut (each fault cuts CUT bytes into its own request's body)."""
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [Reset(after_bytes=CUT), Stall(10, after_bytes=CUT), (Chunked(), Truncate(after_bytes=CUT))])
    with kithara_io.open(url, **WHOLE) as f:
        assert read_checked(f, data) == data
    starts = [range_start(r) for r in gets(srv, "/f")]
    assert len(starts) == 4 and starts[0] == 0
    assert all(prev <= nxt <= prev + CUT for prev, nxt in zip(starts, starts[1:])), starts


def test_bytes_stored_are_never_fetched_again(srv, media):
    """Clean cuts (FIN) deliver every byte sent: the server sends each byte exactly once."""
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [Truncate(after_bytes=n) for n in (30_000, 70_000, 1, 250_000)])
    with kithara_io.open(url, **WHOLE) as f:
        assert read_checked(f, data) == data
    assert srv.wait_idle()
    recs = gets(srv, "/f")
    assert [range_start(r) for r in recs] == [0, 30_000, 100_000, 100_001, 350_001]
    assert sum(r.bytes_sent for r in recs) == len(data)


def test_stats_count_bytes_stored_before_a_cut(srv, media):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [Truncate(after_bytes=CUT)])
    with kithara_io.open(url, **WHOLE) as f:
        assert read_checked(f, data) == data
    assert final_stats(f).bytes_fetched == len(data)


def test_resume_keeps_going_while_each_attempt_makes_progress(srv, media):
    """``attempts`` bounds failures *without progress*: 11 cuts in a row, each after
    100 kB, still complete with attempts=2."""
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.always("/f", Truncate(after_bytes=CUT))
    with kithara_io.open(url, **dict(WHOLE, retry=Retry(attempts=2, backoff=0.001, max_backoff=0.01))) as f:
        assert read_checked(f, data) == data
    starts = [range_start(r) for r in gets(srv, "/f")]
    assert starts == list(range(0, len(data), CUT))


@pytest.mark.parametrize(
    "fault, error",
    [(Truncate(after_bytes=0), TruncatedBodyError), (Reset(after_bytes=0), ConnectionFailedError)],
    ids=["truncate", "reset"],
)
def test_resume_without_progress_ends_in_a_clear_error(srv, media, fault, error, no_leaks):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [None])
    srv.always("/f", fault)
    f = kithara_io.open(url, **ORDERLY)
    try:
        started = time.monotonic()
        with pytest.raises(error) as info:
            read_checked(f, data)
        assert time.monotonic() - started < BOUND
        assert same_error(f.error, info.value)
        assert info.value.url == url and info.value.byte_range is not None
        stuck = info.value.byte_range[0]
        assert sum(1 for r in gets(srv, "/f") if range_start(r) == stuck) == RETRY.attempts
    finally:
        close_quietly(f)


# -- validation ------------------------------------------------------------------------------------

BAD_RANGES = [
    WrongContentRange(shift=1),
    WrongContentRange(shift=-1),
    BadContentRange("bytes 0-9/100"),
    BadContentRange("garbage"),
    BadContentRange("bytes */1048576"),
    NoContentRange(),
]


@pytest.mark.parametrize("where", ["open", "later"])
@pytest.mark.parametrize(
    "fault", BAD_RANGES, ids=["shift+1", "shift-1", "other-range", "garbage", "unsatisfied-form", "missing"]
)
def test_content_range_must_match_the_request(srv, media, fault, where, no_leaks):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [fault] if where == "open" else [None, fault])
    if where == "open":
        with pytest.raises(InvalidResponseError):
            kithara_io.open(url, **ORDERLY)
        assert srv.count("/f") == 1  # not retried
        return
    f = kithara_io.open(url, **ORDERLY)
    try:
        with pytest.raises(InvalidResponseError):
            read_checked(f, data)  # the correct prefix, then the error: no byte of the bad answer
        assert srv.count("/f") == 2
    finally:
        close_quietly(f)


@pytest.mark.parametrize("where", ["open", "later"])
def test_compressed_body_is_refused_never_stored(srv, media, where):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [Gzip()] if where == "open" else [None, Gzip()])
    if where == "open":
        with pytest.raises(InvalidResponseError, match="(?i)gzip"):
            kithara_io.open(url, **ORDERLY)
        return
    f = kithara_io.open(url, **ORDERLY)
    try:
        with pytest.raises(InvalidResponseError, match="(?i)gzip"):
            read_checked(f, data)
        assert all(end <= 64 * KiB for _, end in f.buffered())  # nothing of the gzip answer
    finally:
        close_quietly(f)
    assert gets(srv, "/f")[1].headers.get("Accept-Encoding") == "identity"


def test_200_to_the_first_range_request_is_read_as_the_whole_body(srv, media):
    """A server without Range support: the first answer is a 200 with everything; it is
    accepted as a whole-body fetch and the decode is exact."""
    data = media_bytes(media, "tone.flac")
    url = srv.add("/t.flac", data)
    srv.always("/t.flac", IgnoreRange())
    with kithara_io.open(url, **FAST) as f:
        got, _ = sf.read(f, dtype="int16")
    np.testing.assert_array_equal(got, decoded(media, "tone.flac"))


def test_small_file_without_range_support_is_not_an_error(srv, media):
    data = media_bytes(media, "small.bin")
    url = srv.add("/s", data)
    srv.always("/s", IgnoreRange())
    f = kithara_io.open(url, **FAST)
    assert f.read() == data
    # Give the (buggy) background retries time to run out: they take ~4 backoffs of <= 0.05 s.
    srv.wait_requests(RETRY.attempts, "/s", timeout=2)
    stats = final_stats(f)
    assert f.error is None
    assert stats.retries == 0


@pytest.mark.parametrize(
    "fault", [IgnoreRange(), HtmlPage(200)], ids=["200-whole-body", "200-html-page"]
)
def test_200_to_a_later_range_request_is_an_error(srv, media, fault):
    """After 206 answers, a 200 (whole body, or a captive-portal page of another length) to
    a range request is refused: the bytes would be at the wrong offsets."""
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [None, fault])
    f = kithara_io.open(url, **ORDERLY)
    try:
        with pytest.raises((InvalidResponseError, ResourceChangedError)):
            read_checked(f, data)
        assert srv.count("/f") == 2  # not retried
    finally:
        close_quietly(f)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_html_page_at_open_never_yields_samples(srv, media):
    """A captive portal answering the very first request: no length was pinned yet, so the
    page is not recognised by the HTTP layer; the decode must still fail, never 'succeed'."""
    url = srv.add("/t.flac", media_bytes(media, "tone.flac"))
    srv.always("/t.flac", HtmlPage(200))
    with pytest.raises((StreamError, sf.LibsndfileError)):
        with kithara_io.open(url, **FAST) as f:
            sf.read(f, dtype="int16")


def test_html_error_page_with_error_status(srv, media):
    url = srv.add("/f", blob(media, 100 * KiB))
    srv.always("/f", HtmlPage(403))
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(url, **ORDERLY)
    assert info.value.status == 403


# -- pinning -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "validators", ["etag", "last-modified", "length-only"], ids=lambda v: v
)
def test_file_replaced_mid_stream_raises_resource_changed(srv, media, validators, no_leaks):
    old = blob(media, 1 * MiB)
    new = bytes(reversed(old)) + (b"x" if validators == "length-only" else b"")
    kwargs = {
        "etag": dict(),
        "last-modified": dict(etag=None),
        "length-only": dict(etag=None, last_modified=None),
    }[validators]
    url = srv.add("/f", old, **kwargs)
    pinned = {"etag": srv.etag("/f"), "last-modified": srv.last_modified("/f"), "length-only": None}[validators]
    f = kithara_io.open(url, **ORDERLY)
    try:
        assert f.read(200 * KiB) == old[: 200 * KiB]
        srv.replace("/f", new)
        with pytest.raises(ResourceChangedError) as info:
            read_checked(f, old[200 * KiB :])  # never a byte of the new version
        assert info.value.url == url
        with pytest.raises(ResourceChangedError):
            f.read(1)
    finally:
        close_quietly(f)
    later = gets(srv, "/f")[1:]
    assert later and all(rec.if_range == pinned for rec in later)  # the version first seen


@pytest.mark.parametrize(
    "fault",
    [ChangedETag(), ChangedLength(1 * MiB + 1), BadContentRange("bytes 65536-131071/2000000")],
    ids=["etag", "length", "total-in-content-range"],
)
def test_changed_validator_in_a_later_response(srv, media, fault):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [None, fault])
    f = kithara_io.open(url, **ORDERLY)
    try:
        with pytest.raises(ResourceChangedError):
            read_checked(f, data)
        assert srv.count("/f") == 2  # not retried
    finally:
        close_quietly(f)


# -- redirects and headers -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_redirect_is_followed(srv, media, code):
    srv.add("/real.flac", media_bytes(media, "tone.flac"))
    srv.always("/alias.flac", Redirect("/real.flac", code))
    with kithara_io.open(srv.url("/alias.flac"), **FAST) as f:
        got, _ = sf.read(f, dtype="int16")
    np.testing.assert_array_equal(got, decoded(media, "tone.flac"))
    assert srv.count("/alias.flac") >= 1 and srv.count("/real.flac") >= 1


def test_redirect_mid_stream_to_an_identical_mirror(srv, media):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.add("/mirror", data, etag=srv.etag("/f"), last_modified=srv.last_modified("/f"))
    srv.script("/f", [None])
    srv.always("/f", Redirect("/mirror", 307))
    with kithara_io.open(url, **ORDERLY) as f:
        assert read_checked(f, data) == data
    assert srv.count("/mirror") >= 1


def test_redirect_limit(srv, media):
    data = blob(media, 100 * KiB)
    srv.add("/real", data)
    srv.always("/r1", Redirect("/r2", 301))
    srv.always("/r2", Redirect("/r3", 302))
    srv.always("/r3", Redirect("/real", 308))
    with kithara_io.open(srv.url("/r1"), **dict(ORDERLY, max_redirects=3)) as f:
        assert read_checked(f, data) == data
    with pytest.raises(InvalidResponseError, match="redirect"):
        kithara_io.open(srv.url("/r1"), **dict(ORDERLY, max_redirects=2))


def test_redirect_loop_is_a_clear_error(srv, no_leaks):
    srv.always("/loop", Redirect("/loop", 302))
    started = time.monotonic()
    with pytest.raises(InvalidResponseError, match="redirect") as info:
        kithara_io.open(srv.url("/loop"), **dict(FAST, max_redirects=5))
    assert time.monotonic() - started < BOUND
    assert srv.url("/loop") in str(info.value)
    assert srv.count("/loop") <= 2 * (5 + 1)  # head (+ tail probe), never retried


def test_redirect_loop_mid_stream_is_a_clear_error(srv, media):
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [None])
    srv.always("/f", Redirect("/f", 307))
    f = kithara_io.open(url, **ORDERLY)
    try:
        with pytest.raises(InvalidResponseError, match="redirect"):
            read_checked(f, data)
    finally:
        close_quietly(f)


def test_custom_headers_are_sent_on_every_request(srv, media):
    """Through redirects, retries, resumes and every ranged request."""
    data = media_bytes(media, "tone.flac")
    srv.add("/real.flac", data)
    srv.always("/a.flac", Redirect("/real.flac", 302))
    srv.script("/real.flac", [None, Status(503), Reset(after_bytes=5000), None, Truncate(after_bytes=1000)])
    headers = {"X-Kithara-Test": "yes", "Authorization": "Bearer s3cret", "User-Agent": "reliability/1"}
    with kithara_io.open(srv.url("/a.flac"), headers=headers, **dict(FAST, min_fetch=32 * KiB, max_fetch=64 * KiB)) as f:
        got, _ = sf.read(f, dtype="int16")
    np.testing.assert_array_equal(got, decoded(media, "tone.flac"))
    recs = srv.requests
    assert len(recs) >= 8
    for rec in recs:
        for name, value in headers.items():
            assert rec.headers.get(name) == value, (rec.path, rec.range, name)
        assert rec.headers.get("Accept-Encoding") == "identity"


# -- survivable faults: decoded audio is exact -------------------------------------------------------

SURVIVABLE = [
    Reset(after_bytes=0),
    Reset(after_bytes=20_000),
    Truncate(after_bytes=0),
    Truncate(after_bytes=20_000),
    Stall(10, after_bytes=20_000),
    Latency(10),
    Latency(0.05),
    Status(500, close=True),
    Status(503),
    Status(429, retry_after="0"),
    HtmlPage(502),
    Disconnect(),
    Disconnect(rst=True),
    Chunked(),
    NoContentLength(),
    (Chunked(), Truncate(after_bytes=20_000)),
    (NoContentLength(), Truncate(after_bytes=20_000)),
    (Latency(0.02), Throttle(2_000_000), Reset(after_bytes=30_000)),
    CapRange(16 * KiB),
]


def _fault_id(fault) -> str:
    faults = fault if isinstance(fault, tuple) else (fault,)
    return "+".join(repr(f).replace(" ", "") for f in faults)


@pytest.mark.parametrize("name", ["tone.flac", "tone.wav"])
@pytest.mark.parametrize("where", ["open", "later"])
@pytest.mark.parametrize("fault", SURVIVABLE, ids=_fault_id)
def test_survivable_fault_decodes_exactly(srv, media, name, where, fault):
    """Twice the same fault, on the first requests or mid-stream: the same samples as the
    local file, with at most one retry per injected fault."""
    url = srv.add("/" + name, media_bytes(media, name))
    script = [fault, fault] if where == "open" else [None, None, fault, None, fault]
    srv.script("/" + name, script)
    options = dict(FAST, min_fetch=32 * KiB, max_fetch=128 * KiB)
    with kithara_io.open(url, **options) as f:
        got, _ = sf.read(f, dtype="int16")
        assert f.error is None
    np.testing.assert_array_equal(got, decoded(media, name))
    assert final_stats(f).retries <= 2


# -- errors reach the caller through soundfile --------------------------------------------------------

# soundfile's cffi callbacks report the exceptions they swallow as "unraisable".
swallowed_by_soundfile = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# Small fetches, nothing prefetched, and every failing answer comes 0.3 s late: the decoder
# has opened the file (from the first 16 KiB) before the stream fails, so the permanent fault
# is always hit in the middle of the decode, never at open (deterministic, not a race).
MID_DECODE = dict(
    ORDERLY,
    retry=Retry(attempts=2, backoff=0.01, max_backoff=0.05),
    timeout=Timeout(connect=2, read=2),
    first_fetch=16 * KiB,
    min_fetch=16 * KiB,
    max_fetch=16 * KiB,
    read_ahead=16 * KiB,
)
LATE = Latency(0.3)
PERMANENT_MID_DECODE = [
    ((LATE, Status(404)), HTTPStatusError),
    ((LATE, Reset(after_bytes=0)), ConnectionFailedError),
    ((LATE, ChangedETag()), ResourceChangedError),
]


@pytest.mark.parametrize(
    "name",
    [
        "tone.wav",
        "tone.flac",
        "tone.ogg",
        "tone.mp3",
    ],
)
@pytest.mark.parametrize("fault, error", PERMANENT_MID_DECODE, ids=["404", "reset", "changed-etag"])
@swallowed_by_soundfile
def test_sf_read_never_returns_a_truncated_signal(srv, media, name, fault, error):
    url = srv.add("/" + name, media_bytes(media, name))
    srv.script("/" + name, [None])
    srv.always("/" + name, fault)
    started = time.monotonic()
    with pytest.raises(Exception) as info:  # noqa: PT011 - any error beats silent truncation
        with kithara_io.open(url, **MID_DECODE) as f:
            sf.read(f, dtype="int16")
    assert time.monotonic() - started < BOUND
    assert isinstance(f.error, error)  # the cause is always visible on the stream
    assert info.value is not None


@pytest.mark.parametrize("name", ["tone.wav", "tone.flac", "tone.ogg", "tone.mp3"])
@swallowed_by_soundfile
def test_sf_read_failure_surfaces_as_the_stream_error(srv, media, name):
    url = srv.add("/" + name, media_bytes(media, name))
    srv.script("/" + name, [None])
    srv.always("/" + name, (LATE, Status(404)))
    with pytest.raises(HTTPStatusError) as info:
        with kithara_io.open(url, **MID_DECODE) as f:
            sf.read(f, dtype="int16")
    assert info.value.status == 404
    assert same_error(f.error, info.value)


def _swallowed_failure(srv, media):
    """A stream whose permanent failure was raised inside a read and swallowed (as soundfile
    does), like a user would get after sf.read returned."""
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [None])
    srv.always("/f", Status(404))
    f = kithara_io.open(url, **ORDERLY)
    with contextlib.suppress(StreamError):
        read_checked(f, data)
    assert isinstance(f.error, HTTPStatusError)
    return f


def test_stored_failure_is_raised_again_by_read_and_seek(srv, media):
    f = _swallowed_failure(srv, media)
    try:
        with pytest.raises(HTTPStatusError):
            f.read(1)
        with pytest.raises(HTTPStatusError):
            f.readinto(bytearray(10))
        with pytest.raises(HTTPStatusError):
            f.seek(0)
        assert isinstance(f.error, HTTPStatusError)
    finally:
        close_quietly(f)


def test_repeated_raises_do_not_grow_the_traceback(srv, media):
    f = _swallowed_failure(srv, media)
    try:
        for _ in range(200):
            with contextlib.suppress(StreamError):
                f.read(1)
        with pytest.raises(HTTPStatusError) as info:
            f.read(1)
        assert len(traceback.extract_tb(info.value.__traceback__)) < 30
    finally:
        close_quietly(f)


def test_stored_failure_is_raised_again_by_close(srv, media):
    f = _swallowed_failure(srv, media)
    with pytest.raises(HTTPStatusError):
        f.close()
    assert f.closed


# -- close while blocked -------------------------------------------------------------------------------

BLOCKERS = {
    "stalled-body": (StallForever(), {}),
    "no-headers": (Latency(float("inf")), {}),
    "in-backoff": (Status(503, retry_after="3600"), dict(retry=Retry(attempts=5, max_backoff=3600))),
}


@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_close_from_another_thread_wakes_a_blocked_reader(srv, media, blocker, no_leaks):
    fault, extra = BLOCKERS[blocker]
    data = blob(media, 1 * MiB)
    url = srv.add("/f", data)
    srv.script("/f", [None])
    srv.always("/f", fault)
    # Long read timeout: only close() can end the wait within this test's bounds.
    f = kithara_io.open(url, **dict(ORDERLY, timeout=Timeout(connect=5, read=60), **extra))
    target = 512 * KiB
    outcome: list = []

    def reader() -> None:
        f.seek(target)
        try:
            outcome.append(f.read(64 * KiB))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        outcome.append(time.monotonic())

    t = threading.Thread(target=reader, name="blocked-reader")
    t.start()
    try:
        # The reader's own request (nothing else asks for bytes at 512 KiB) proves it is in read().
        assert wait_for_request(srv, lambda r: range_start(r) == target)
        if blocker == "in-backoff":
            assert srv.wait_idle(5)  # every 503 answered: the fetches sleep in their backoff
        assert t.is_alive()
        closing = time.monotonic()
        f.close()
        closed = time.monotonic()
        t.join(5)
        assert not t.is_alive()
    finally:
        close_quietly(f)
        t.join(5)
    assert closed - closing < 2.0, "close() waited for the blocked fetch"
    error, woke = outcome
    assert isinstance(error, StreamClosedError), error
    assert isinstance(error, ValueError) and "closed" in str(error)
    assert woke - closing < 2.0


def test_read_after_close_is_a_value_error(srv, media):
    url = srv.add("/f", blob(media, 100 * KiB))
    f = kithara_io.open(url, **ORDERLY)
    f.close()
    with pytest.raises(ValueError):
        f.read(1)
    with pytest.raises(ValueError):
        f.seek(0)
