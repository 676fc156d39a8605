"""fsspec's own HTTP tests (``fsspec/implementations/tests/test_http.py``), the cases that
apply to reading, run through ``kithara::`` against a server with the behaviours of fsspec's
test server (:mod:`tests.servers.fsspec_like`: each mode chosen by request headers).

Each case checks kithara-io's bytes against the served bytes, and where fsspec's own
``http`` filesystem reads the same mode right, against what it returns. Where fsspec reads
nothing useful (a seek on a server without ranges) kithara-io must still give the bytes;
where the server breaks HTTP (a 206 without Content-Range, gzip sent although identity was
asked) kithara-io refuses with a StreamError instead of guessing.

Not adapted: listing, globbing and mappers (HTTP cannot list: kithara:: lists a URL as
itself), writing (read-only), the async API, pickling an open file, HEAD-only metadata
(kithara-io does not send HEAD), and processes (tests/test_fs_processes.py).
"""

from __future__ import annotations

import io
import json
from typing import Iterator

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")  # fsspec's own http filesystem, the reference

import kithara_io  # noqa: E402
from kithara_io.errors import HTTPStatusError, InvalidResponseError  # noqa: E402
from tests.servers.fsspec_like import BIG, DATA, FsspecLikeServer  # noqa: E402

# Modes in which the server is honest about ranges: 206 with Content-Range, or no ranges.
HONEST = [
    {"use_206": "true", "give_range": "true"},
    {"ignore_range": "true", "give_length": "true"},
    {"ignore_range": "true", "give_range": "true"},
    {"ignore_range": "true"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FsspecLikeServer]:
    with FsspecLikeServer(tmp_path_factory.mktemp("fsspec-like")) as srv:
        yield srv


def kithara(**options):
    return fsspec.filesystem("kithara", skip_instance_cache=True, retry=kithara_io.Retry(attempts=1), **options)


def http(**options):
    return fsspec.filesystem("http", skip_instance_cache=True, **options)


CAT_CASES = [(1, 10), (1, None), (-10, None), (-10, -2), (None, -10)]
LENGTH_AND_HEAD = {"give_length": "true", "head_ok": "true"}


@pytest.fixture(scope="module")
def reference(server: FsspecLikeServer) -> dict:
    """What fsspec's own http filesystem reads, computed before the tests: its event loop
    thread and aiohttp's sockets (closed asynchronously) stay out of their ``no_leaks``."""
    unauthorized = server.url("/unauthorized")
    try:
        http().exists(unauthorized, strict=True)
        status = None
    except Exception as exc:
        status = exc.status
    urls = [server.realfile, server.url("/index/otherfile")]
    raw = server.url("/Hello: Günter")
    return {
        "strict_status": status,
        "lenient": http().exists(unauthorized),
        "cat": http().cat(server.realfile),
        "gzip": http(headers={"give_length": "true", "gzip_encoding": "true"}).cat(server.realfile),
        "mcat": http(headers=LENGTH_AND_HEAD).cat(urls),
        "ranges": [http(headers=LENGTH_AND_HEAD).cat(server.realfile, start=s, end=e) for s, e in CAT_CASES],
        "encoded": json.loads(http(encoded=False, headers={"give_path": "true"}).cat(raw)),
        "honest": [http(headers=h).cat(server.realfile) for h in HONEST[:2]],
    }


def test_exists(server, no_leaks):
    fs = kithara()
    assert not fs.exists(server.url("/notafile"))
    with pytest.raises(FileNotFoundError):
        fs.cat(server.url("/notafile"))
    assert fs.exists(server.realfile)


def test_exists_strict(server, reference, no_leaks):
    fs = kithara()
    assert not fs.exists(server.url("/notafile"), strict=True)
    with pytest.raises(HTTPStatusError) as failure:
        fs.exists(server.url("/unauthorized"), strict=True)
    assert failure.value.status == 401 == reference["strict_status"]
    assert fs.exists(server.url("/unauthorized"), strict=False) is reference["lenient"] is False


@pytest.mark.parametrize("block_size", [None, 0, 1 << 20])
def test_read(server, block_size, no_leaks):
    fs = kithara()
    with fs.open(server.realfile, "rb", block_size=block_size) as f:
        assert f.read() == DATA
    with fs.open(server.realfile, "rb", block_size=block_size) as f:
        assert f.read(100) + f.read() == DATA


def test_methods(server, reference, no_leaks):
    fs = kithara()
    assert fs.exists(server.realfile)
    assert fs.cat(server.realfile) == DATA == reference["cat"]


RANDOM_ACCESS_MODES = [
    {},
    {"give_length": "true"},
    {"give_length": "true", "head_ok": "true"},
    {"give_range": "true"},
    {"give_length": "true", "head_not_auth": "true"},
    {"give_range": "true", "head_not_auth": "true"},
    {"use_206": "true", "give_range": "true"},
]


@pytest.mark.parametrize("headers", RANDOM_ACCESS_MODES, ids=json.dumps)
def test_random_access(server, headers, no_leaks):
    """fsspec's own http cannot seek in the first mode (it raises ValueError); kithara-io
    reads every mode's bytes, seeking where its stream says it can."""
    with kithara(headers=headers).open(server.realfile, "rb") as f:
        assert f.size in (None, len(DATA))
        assert f.read(5) == DATA[:5]
        if f.seekable():
            f.seek(5, io.SEEK_CUR)
            assert f.read(5) == DATA[10:15]
        else:
            assert f.read(10) == DATA[5:15]
        assert f.read() == DATA[15:]
        assert f.size == len(DATA)
    assert f.closed


@pytest.mark.parametrize(
    "headers",
    [{"use_206": "true", "head_ok": "true", "head_give_length": "true"}, {"use_206": "true", "give_length": "true"}],
    ids=json.dumps,
)
def test_206_without_content_range_is_refused(server, headers, no_leaks):
    """fsspec's http takes these bodies on trust; without Content-Range nothing says which
    bytes a 206 carries, so kithara-io refuses, naming the URL."""
    with pytest.raises(InvalidResponseError, match="Content-Range") as failure:
        kithara(headers=headers).cat(server.realfile)
    assert server.realfile in str(failure.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"head_ok": "true", "head_give_length": "true"},
        {"ignore_range": "true", "give_length": "true"},
        {"ignore_range": "true", "give_range": "true"},
        {"accept_range": "none", "head_ok": "true", "give_length": "true"},
    ],
    ids=json.dumps,
)
def test_no_range_support(server, headers, no_leaks):
    """fsspec raises ValueError on ``seek(5); read(10)`` here; kithara-io serves the bytes."""
    with kithara(headers=headers).open(server.realfile, "rb") as f:
        if f.seekable():
            f.seek(5)
            assert f.read(10) == DATA[5:15]
        f.seek(0)
        assert f.read(10) == DATA[:10]


def test_stream_seek(server, no_leaks):
    with kithara().open(server.realfile, "rb") as f:
        f.seek(0)
        first = f.read(5)
        f.seek(5)
        f.seek(0, io.SEEK_CUR)
        assert first + f.read() == DATA


def test_content_length_zero(server, no_leaks):
    """HEAD says 0 bytes: kithara-io does not ask HEAD, its GET learns the real length."""
    with kithara(headers={"give_length": "true", "zero_length": "true"}).open(server.realfile, "rb") as f:
        assert f.read() == DATA


def test_content_encoding_gzip_is_refused(server, reference, no_leaks):
    """kithara-io asks for identity (byte offsets of a compressed body mean nothing); a
    server that compresses anyway is refused, never served as the file's bytes."""
    assert reference["gzip"] == DATA  # aiohttp decompresses the whole body
    with pytest.raises(InvalidResponseError, match="gzip"):
        kithara(headers={"give_length": "true", "gzip_encoding": "true"}).cat(server.realfile)


def test_download(server, tmp_path, no_leaks):
    fs = kithara(headers={"give_length": "true", "head_ok": "true"})
    fs.get(server.realfile, str(tmp_path / "afile"))
    assert (tmp_path / "afile").read_bytes() == DATA


def test_multi_download(server, tmp_path, no_leaks):
    fs = kithara(headers={"give_length": "true", "head_ok": "true"})
    other = server.url("/index/otherfile")
    fs.get([server.realfile, other], [str(tmp_path / "a"), str(tmp_path / "b")])
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == DATA


def test_mcat(server, reference, no_leaks):
    urls = [server.realfile, server.url("/index/otherfile")]
    assert kithara(headers=LENGTH_AND_HEAD).cat(urls) == {u: DATA for u in urls} == reference["mcat"]


def test_a_query_is_not_a_pattern(server, no_leaks):
    """fsspec's http does not glob ``?``; kithara:: neither (it starts a query)."""
    url = server.realfile + "?token=a1"
    fs = kithara()
    assert fs.cat(url) == DATA
    assert fs.cat([url, server.realfile]) == {url: DATA, server.realfile: DATA}


def _cat_file_range(fs, url, body):
    for start, end in CAT_CASES:
        assert fs.cat(url, start=start, end=end) == body[start:end], (start, end)


@pytest.mark.parametrize("headers", HONEST, ids=json.dumps)
def test_cat_file_range(server, headers, no_leaks):
    _cat_file_range(kithara(headers=headers), server.realfile, DATA)
    _cat_file_range(kithara(headers=headers), server.url("/index/bigfile"), BIG)


@pytest.mark.parametrize("headers", [{"give_length": "true", "head_ok": "true"}, {}], ids=json.dumps)
def test_cat_file_range_when_200_answers_a_range(server, headers, reference, no_leaks):
    """fsspec's own case: a 200 carrying only the bytes asked (with or without a length).
    fsspec's http gets them right (it trusts its Range, and asks HEAD for the length);
    kithara-io asks again without Range (sources/http.py) and gets them right too."""
    assert reference["ranges"] == [DATA[s:e] for s, e in CAT_CASES]
    _cat_file_range(kithara(headers=headers), server.realfile, DATA)


def test_open_read_when_200_answers_a_range(server, no_leaks):
    """200,000 bytes; "Range: bytes=0-65535" answered with 200 and Content-Length 65536."""
    with kithara(headers={"give_length": "true"}).open(server.url("/index/bigfile"), "rb") as f:
        assert f.read() == BIG


@pytest.mark.parametrize("headers", HONEST[:2], ids=json.dumps)
def test_cat_file_range_numpy(server, headers, no_leaks):
    fs = kithara(headers=headers)
    url = server.realfile
    assert fs.cat(url, start=np.int8(1), end=np.int8(10)) == DATA[1:10]
    out = fs.cat_ranges([url, url], starts=np.array([1, 5]), ends=np.array([10, 15]))
    assert out == [DATA[1:10], DATA[5:15]]


def test_mcat_cache(server, tmp_path, no_leaks):
    urls = [server.realfile, server.url("/index/otherfile")]
    fs = fsspec.filesystem("simplecache", target_protocol="kithara", cache_storage=str(tmp_path),
                           skip_instance_cache=True)
    assert fs.cat(urls) == {u: DATA for u in urls}


@pytest.mark.parametrize("headers", HONEST[:2], ids=json.dumps)
def test_with_cache(server, headers, tmp_path, no_leaks):
    fs1 = fsspec.filesystem("blockcache", fs=kithara(headers=headers), cache_storage=str(tmp_path),
                            skip_instance_cache=True)
    with fs1.open(server.realfile, "rb") as f:
        out = f.read()
    assert out == fs1.cat(server.realfile) == DATA


def test_encoded(server, reference, no_leaks):
    """A URL's escapes reach the server as written; a raw one is escaped, as by fsspec's
    http with ``encoded=False``."""
    fs = kithara(headers={"give_path": "true"})
    assert json.loads(fs.cat(server.url("/Hello%3A%20G%C3%BCnter")))["path"] == "/Hello%3A%20G%C3%BCnter"
    raw = server.url("/Hello: Günter")
    assert json.loads(fs.cat(raw)) == reference["encoded"] == {"path": "/Hello:%20G%C3%BCnter"}


def test_the_server_keeps_fsspec_modes(reference):
    """fsspec's own http filesystem reads this server as it reads its own test server."""
    assert reference["honest"] == [DATA, DATA]
    assert reference["ranges"] == [DATA[s:e] for s, e in CAT_CASES]
