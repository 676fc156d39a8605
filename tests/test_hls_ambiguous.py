"""HLS parts served by servers whose answers could be read two ways (as
``test_ambiguous_answers.py`` for files): a range answered ``200`` with only the bytes asked
(fsspec's test server, broken proxies), close-delimited or not; a ``206`` whose total is
``*``. Believed, the part would end at the range asked and every later byte of the stream
would sit at the wrong offset. Each stream must equal the local parts joined. A part
answered by an HTML page (a captive portal's ``200``) is refused, never read as media. A
HEAD's length of a gzip body is not the part's; a part whose GET says another length than
its HEAD did fails the stream (its later bytes would sit at the wrong offsets)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Tuple

import pytest

import kithara_io
from kithara_io import InvalidResponseError, ResourceChangedError
from tests.servers.faults import (
    BadContentRange,
    CapRange,
    ChangedLength,
    FaultServer,
    Gzip,
    HtmlPage,
    NoContentLength,
    RangeAs200,
    running_fault_server,
)
from tests.servers.hls_media import HlsMedia, make_hls_media

pytestmark = pytest.mark.timeout(60)

SMALL = dict(first_fetch=16 * 1024, min_fetch=16 * 1024, chunk=64 * 1024)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[HlsMedia, FaultServer]]:
    media = make_hls_media(tmp_path_factory.mktemp("hls-ambiguous").resolve())
    with running_fault_server() as server:
        for path in media.root.rglob("*"):
            if path.is_file():
                server.add("/" + path.relative_to(media.root).as_posix(), path.read_bytes())
        yield media, server


def read_until_it_fails(url: str, error: type, match: str, **options) -> bytes:
    """Open ``url`` and read it to its end, expecting ``error`` (at open or at a read); the
    bytes read before it."""
    got = bytearray()
    with pytest.raises(error, match=match):
        with kithara_io.open(url, **options) as f:  # (open may meet it)
            for _ in range(1000):  # bounded: the streams here are under 1 MB
                piece = f.read(8192)
                if not piece:
                    break
                got += piece
    return bytes(got)


CASES = [
    ("ts/v0/index.m3u8", "seg000.ts", "always", RangeAs200()),
    ("ts/v0/index.m3u8", "seg000.ts", "always", (RangeAs200(), NoContentLength())),
    ("ts/v0/index.m3u8", "seg003.ts", "always", (RangeAs200(), NoContentLength())),
    ("ts/v0/index.m3u8", "seg000.ts", "once", BadContentRange("bytes 0-16383/*")),
    ("single_ts/index.m3u8", "media.ts", "always", (RangeAs200(), NoContentLength())),
    ("fmp4/v1/index.m3u8", "seg001.m4s", "always", (RangeAs200(), NoContentLength())),
]


@pytest.mark.parametrize("playlist, part, how, fault", CASES, ids=[f"{c[1]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_a_part_answered_ambiguously_still_reads_exactly(served, playlist, part, how, fault, no_leaks) -> None:
    media, server = served
    server.clear_faults()
    path = f"/{Path(playlist).parent.as_posix()}/{part}"
    if how == "always":
        server.always(path, fault)
    else:
        server.script(path, [fault])
    try:
        with kithara_io.open(server.url(playlist), **SMALL) as f:
            got = f.read()
    finally:
        server.clear_faults()
    assert got == media.local_bytes(playlist)


@pytest.mark.parametrize("part", ["seg000.ts", "seg003.ts"])
def test_a_part_answered_by_an_html_page_is_refused(served, part, no_leaks) -> None:
    """A captive portal answers ``200`` with its sign-in page: the stream fails naming the
    part, and no byte of the page is handed over as media."""
    media, server = served
    playlist = "ts/v0/index.m3u8"
    local = media.local_bytes(playlist)
    server.clear_faults()
    server.always(f"/ts/v0/{part}", HtmlPage(200))
    try:
        got = read_until_it_fails(server.url(playlist), InvalidResponseError, rf"HTML page.*{part}", **SMALL)
    finally:
        server.clear_faults()
    assert got == local[: len(got)]


@pytest.mark.parametrize("fault", [Gzip(), HtmlPage(200)], ids=["gzip", "html"])
def test_a_head_answering_for_another_body_does_not_move_the_stream(served, fault, no_leaks) -> None:
    """The HEAD that learns seg003's length answers for a gzip body, or a captive portal's
    page: believed, the stream would end early (a read near its end giving nothing) or lay
    later parts at the wrong offsets."""
    media, server = served
    playlist = "ts/v0/index.m3u8"
    local = media.local_bytes(playlist)
    server.clear_faults()
    server.script("/ts/v0/seg003.ts", [fault], method="HEAD")
    try:
        with kithara_io.open(server.url(playlist), tail=0) as f:
            pos = len(local) - 6599
            f.seek(pos)
            assert f.read(4096) == local[pos : pos + 4096]
            assert f.size == len(local)
    finally:
        server.clear_faults()


def test_a_part_whose_get_contradicts_its_head_fails_the_stream(served, no_leaks) -> None:
    """seg003's HEAD says 70000 bytes, its GET 65236: every byte after it would be laid out
    4764 bytes off. The stream fails there. The first read lands inside seg003, so its length
    is asked by HEAD before any GET of it (read-ahead from the start could otherwise learn it
    from a GET first, and no HEAD would be sent)."""
    media, server = served
    folder = media.root / "ts/v0"
    into_seg003 = sum((folder / f"seg00{i}.ts").stat().st_size for i in range(3)) + 1000
    server.clear_faults()
    server.script("/ts/v0/seg003.ts", [ChangedLength(70000)], method="HEAD")
    try:
        with pytest.raises(ResourceChangedError, match=r"not 70000.*seg003"):
            with kithara_io.open(server.url("ts/v0/index.m3u8"), tail=0) as f:
                f.seek(into_seg003)
                f.read(8192)
    finally:
        server.clear_faults()


def test_parts_whose_answers_are_capped_read_on_without_retries(served, no_leaks) -> None:
    """A CDN slice limit: every 206 carries at most 16 KiB, with an honest Content-Range. Each
    answer is a whole answer, not a broken one: the next request goes on, no retry waits."""
    media, server = served
    server.clear_faults()
    for playlist in ("ts/v2/index.m3u8", "single_ts/index.m3u8"):
        folder = media.root / Path(playlist).parent
        for path in folder.iterdir():
            server.always("/" + path.relative_to(media.root).as_posix(), CapRange(16 * 1024))
    try:
        for playlist in ("ts/v2/index.m3u8", "single_ts/index.m3u8"):
            with kithara_io.open(server.url(playlist)) as f:
                assert f.read() == media.local_bytes(playlist)
                assert f.stats().retries == 0
    finally:
        server.clear_faults()


def test_a_byte_range_past_the_end_of_its_file_fails_the_stream(served, no_leaks) -> None:
    """The playlist's last EXT-X-BYTERANGE ends 1,000 bytes past its file: the stream fails
    saying so, with every byte it gave before equal to the file's (it neither waits for
    bytes that do not exist nor ends short in silence)."""
    media, server = served
    text = (media.root / "single_ts/index.m3u8").read_text()
    last = [line for line in text.splitlines() if line.startswith("#EXT-X-BYTERANGE:")][-1]
    length, _, offset = last.split(":", 1)[1].partition("@")
    text = text.replace(last, f"#EXT-X-BYTERANGE:{int(length) + 1000}@{offset}")
    server.add("/single_ts/long.m3u8", text.encode())
    local = media.local_bytes("single_ts/index.m3u8")
    got = read_until_it_fails(
        server.url("single_ts/long.m3u8"), InvalidResponseError, r"byte range reaches past the end of the file"
    )
    assert got == local[: len(got)]
