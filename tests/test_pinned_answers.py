"""The short way of checking a range answer once the resource is pinned
(``HttpSource._as_pinned``: strings compared with what the full checks would accept) against
the full checks alone: for every answer drawn near the usual one, the same body or the same
refusal, and the same version pinned after it."""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_io.net.response import Headers
from kithara_io.sources.http import HttpSource
from kithara_io.sources.transport import AbortHandle, Answer

URL = "http://127.0.0.1:9/f.bin"  # never asked: every answer here is made up
TOTAL = 1_000_000
ETAG = '"5f-abc"'
DATE = "Mon, 07 Dec 2026 05:22:32 GMT"
START, END = 300_000, 365_536


class _Raw:
    """What ``Answer.close`` calls on the response under it."""

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


def _answer(status: int, fields: List[Tuple[str, str]]) -> Answer:
    return Answer(status, "", Headers(fields), URL, _Raw())


class _FullChecksOnly(HttpSource):
    def _as_pinned(self, answer, start, end, abort):  # type: ignore[no-untyped-def]
        return None


def _pinned(cls: type, etag: Optional[str], date: Optional[str]) -> HttpSource:
    """A source whose first answer (a 206 of the first 64 KiB) pinned ``etag``/``date``."""
    source = cls(URL)
    first = [("Content-Range", f"bytes 0-65535/{TOTAL}"), ("Content-Length", "65536")]
    first += [("ETag", etag)] if etag is not None else []
    first += [("Last-Modified", date)] if date is not None else []
    source._validate(_answer(206, first), 0, 65536, AbortHandle())
    return source


def _outcome(source: HttpSource, answer: Answer, start: int, end: int) -> tuple:
    try:
        body = source._validate(answer, start, end, AbortHandle())
    except Exception as exc:  # noqa: BLE001 - the refusal itself is compared
        return ("refused", type(exc).__name__, str(exc), source._pinned)
    return ("body", body.start, body.end, body.total, body.ranged, source._pinned)


USUAL = {
    "Content-Range": f"bytes {START}-{END - 1}/{TOTAL}",
    "Content-Length": str(END - START),
    "ETag": ETAG,
    "Last-Modified": DATE,
}
# What each field may be instead (None: absent): near misses of the usual answer.
OTHERS = {
    "Content-Range": [
        f"bytes {START + 1}-{END - 1}/{TOTAL}",
        f"bytes {START}-{END - 2}/{TOTAL}",
        f"bytes {START}-{END}/{TOTAL}",
        f"bytes {START}-{END - 1}/{TOTAL + 1}",
        f"bytes {START}-{END - 1}/*",
        f"bytes  {START}-{END - 1}/{TOTAL}",
        f"BYTES {START}-{END - 1}/{TOTAL}",
        None,
    ],
    "Content-Length": [str(END - START - 1), f" {END - START}", f"0{END - START}", None],
    "ETag": [f"W/{ETAG}", '"other"', None],
    "Last-Modified": ["Tue, 08 Dec 2026 05:22:32 GMT", None],
    "Content-Encoding": ["identity", "gzip"],
    "Transfer-Encoding": ["chunked", "gzip"],
    "icy-metaint": ["16000"],
}


@st.composite
def answers(draw: st.DrawFn) -> Tuple[int, List[Tuple[str, str]]]:
    """The usual answer with up to two fields changed, added or dropped, and its status."""
    fields = dict(USUAL)
    for name in draw(st.sets(st.sampled_from(sorted(OTHERS)), max_size=2)):
        value = draw(st.sampled_from(OTHERS[name]))
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    status = draw(st.sampled_from([206] * 6 + [200, 416]))
    return status, list(fields.items())


@pytest.mark.timeout(120)
@settings(max_examples=800, deadline=None)
@given(
    answer=answers(),
    pinned=st.sampled_from([(ETAG, DATE)] * 4 + [(f"W/{ETAG}", DATE), (None, DATE), (ETAG, None), (None, None)]),
    asked=st.sampled_from([(START, END)] * 4 + [(START, TOTAL), (START, TOTAL + 10)]),
)
def test_the_short_way_agrees_with_the_full_checks(answer: tuple, pinned: tuple, asked: tuple) -> None:
    status, fields = answer
    start, end = asked
    short = _outcome(_pinned(HttpSource, *pinned), _answer(status, fields), start, end)
    full = _outcome(_pinned(_FullChecksOnly, *pinned), _answer(status, fields), start, end)
    assert short == full


def test_the_usual_answer_takes_the_short_way() -> None:
    """The exact answer is accepted without the full checks (else the short way is dead)."""
    source = _pinned(HttpSource, ETAG, DATE)
    usual = [
        ("Content-Range", f"bytes {START}-{END - 1}/{TOTAL}"),
        ("Content-Length", str(END - START)),
        ("ETag", ETAG),
        ("Last-Modified", DATE),
    ]
    body = source._as_pinned(_answer(206, usual), START, END, AbortHandle())
    assert body is not None and (body.start, body.end, body.total) == (START, END, TOTAL)
    # A changed version is never accepted by it: the full checks refuse it.
    changed = [(k, '"other"' if k == "ETag" else v) for k, v in usual]
    assert source._as_pinned(_answer(206, changed), START, END, AbortHandle()) is None


@pytest.mark.timeout(60)
def test_what_the_first_answer_tells_is_set_before_another_answer_is_taken_on_it(monkeypatch, no_leaks) -> None:
    """The tail probe and open()'s first request answer at once. Whichever pins the
    version first also sets what the answer tells (the Content-Disposition file name, the
    URL after redirects); the other answer, taken the short way once it sees the pin, lets
    open() return. So the pin is published last: before, open() sometimes returned while
    the file name was still being parsed, and ``Stream.filename`` was None (``kithara-io
    get`` then named the file after the URL: 1 in ~200 opens, every open here, where the
    parsing is made to take 50 ms)."""
    import threading
    import time

    import kithara_io
    from kithara_io.sources import http as http_source
    from tests.servers.faults import Header, running_fault_server

    parse = http_source.disposition_filename
    gate = threading.Lock()  # (the first parse only: the next opens' run while it is held)

    def slow_parse(header: Optional[str]) -> Optional[str]:
        with gate:
            time.sleep(0.05)  # the race's window, widened: the parsing takes this long
            return parse(header)

    monkeypatch.setattr(http_source, "disposition_filename", slow_parse)
    with running_fault_server() as server:
        url = server.add("/x/dl", bytes(range(256)) * 1000)
        server.always("/x/dl", Header("Content-Disposition", "attachment; filename*=UTF-8''%C3%A9t%C3%A9.flac"))
        for _ in range(10):
            with kithara_io.open(url) as f:
                assert f.filename == "\u00e9t\u00e9.flac"
