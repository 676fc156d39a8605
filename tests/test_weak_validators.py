"""Weak validators, as Apache httpd sends them for a file that changed moments ago.

Apache tags a file modified within the last second with a weak ETag (``W/"..."``) and the
same tag strong a second later; and it judges an ``If-Range`` date too fresh to be a strong
validator for 60 s after the file's mtime, answering a range asked with one by the whole
file. Met by kithara-io (``tests/test_server_variety.py``, a file written just before it was
opened): the weak tag made it send the date, so every later range came back 200 and the
stream failed ("server answered a range request with the whole body"); and the tag turning
strong read as a changed resource. Now ETags are compared weakly (RFC 9110 8.8.3.2), a
date the server does not honour stops being sent (every answer's validators are still
compared with the pinned ones), and a tag seen strong is what If-Range carries from then on.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path

import pytest

import kithara_io
from kithara_io import ResourceChangedError, Retry, Timeout
from kithara_io.sources.base import Validators, same_etag
from tests.servers import system_servers
from tests.servers.faults import ChangedETag, DatesFailIfRange, FaultServer

pytestmark = pytest.mark.timeout(60)

KiB = 1 << 10
SMALL = dict(
    tail=0,
    max_outstanding=1,
    first_fetch=16 * KiB,
    min_fetch=16 * KiB,
    max_fetch=64 * KiB,
    read_ahead=64 * KiB,
    timeout=Timeout(connect=2, read=5),
    retry=Retry(attempts=2, backoff=0.01),
)


def random_reads(f, data: bytes, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        pos = rng.randrange(0, len(data))
        f.seek(pos)
        assert f.read(20_000) == data[pos : pos + 20_000], f"wrong bytes at {pos}"


def test_etags_compare_weakly() -> None:
    assert same_etag('W/"2dc6c0-661f"', '"2dc6c0-661f"')
    assert same_etag('"a"', 'W/"a"') and same_etag('W/"a"', 'W/"a"')
    assert not same_etag('W/"a"', 'W/"b"') and not same_etag('"a"', '"b"')
    date = "Wed, 25 Nov 2026 10:00:00 GMT"
    assert Validators(5, 'W/"a"', date).same_version(Validators(5, '"a"', date))
    assert not Validators(5, 'W/"a"', date).same_version(Validators(6, '"a"', date))
    assert not Validators(5, None, date).same_version(Validators(5, '"a"', date))


def test_a_server_ignoring_if_range_dates_is_asked_without_them(fault_server: FaultServer, no_leaks) -> None:
    """Weak tag pinned, so If-Range carries the date; the server answers such ranges 200.
    One such answer, then ranges go without If-Range and read exactly."""
    data = random.Random(1).randbytes(600_000)
    url = fault_server.add("/f.bin", data, etag='W/"v1"')
    fault_server.always("/f.bin", DatesFailIfRange())
    with kithara_io.open(url, **SMALL) as f:
        random_reads(f, data, 40, seed=2)
    gets = [r for r in fault_server.requests if r.method == "GET"]
    whole = [r for r in gets if r.status == 200]
    assert len(whole) == 1 and whole[0].if_range == fault_server.last_modified("/f.bin"), whole
    after = gets[gets.index(whole[0]) + 1 :]
    assert len(after) >= 20 and all(r.if_range is None and r.status == 206 for r in after)


def test_a_change_is_still_caught_once_dates_are_dropped(fault_server: FaultServer, no_leaks) -> None:
    data = random.Random(3).randbytes(600_000)
    url = fault_server.add("/f.bin", data, etag='W/"v1"')
    fault_server.always("/f.bin", DatesFailIfRange())
    f = kithara_io.open(url, **SMALL)
    try:
        random_reads(f, data, 5, seed=4)
        fault_server.replace("/f.bin", bytes(reversed(data)), etag='W/"v2"')
        with pytest.raises(ResourceChangedError, match='W/"v1" -> W/"v2"'):
            random_reads(f, data, 40, seed=5)  # never a byte of the new version
    finally:
        with contextlib.suppress(ResourceChangedError):
            f.close()  # (raises the stream's failure again: by design)


def test_a_weak_tag_turning_strong_is_the_same_version(fault_server: FaultServer, no_leaks) -> None:
    """The file is tagged W/"v1" at open, "v1" from then on (Apache, a second later): no
    ResourceChangedError, and If-Range carries the strong tag once seen."""
    data = random.Random(6).randbytes(600_000)
    url = fault_server.add("/f.bin", data, etag='W/"v1"')
    with kithara_io.open(url, **SMALL) as f:
        fault_server.replace("/f.bin", data, etag='"v1"', last_modified=fault_server.last_modified("/f.bin"))
        random_reads(f, data, 30, seed=7)
    ranges = [r for r in fault_server.requests if r.method == "GET"][1:]
    assert ranges and ranges[0].if_range == fault_server.last_modified("/f.bin"), ranges[0].if_range
    assert ranges[-1].if_range == '"v1"' and all(r.status == 206 for r in ranges)


def test_another_weak_tag_is_a_changed_resource(fault_server: FaultServer, no_leaks) -> None:
    data = random.Random(8).randbytes(600_000)
    url = fault_server.add("/f.bin", data, etag='W/"v1"')
    fault_server.script("/f.bin", [None] + [ChangedETag('W/"v2"')] * 200)
    with pytest.raises(ResourceChangedError, match='W/"v1" -> W/"v2"'):
        with kithara_io.open(url, **SMALL) as f:
            random_reads(f, data, 30, seed=9)


@pytest.mark.skipif(system_servers.unavailable("apache") is not None, reason="Apache httpd is not installed")
def test_a_file_apache_serves_moments_after_it_was_written(tmp_path: Path, no_leaks) -> None:
    """The real thing: opened right after it was written (weak tag, date If-Range ignored),
    read across the second in which the tag turns strong. Every byte equals the file."""
    with system_servers.ApacheServer(tmp_path) as server:
        for attempt in range(3):  # bounded: a loaded machine may take > 1 s to open
            data = os.urandom(2_000_000)
            path = tmp_path / f"fresh{attempt}.bin"
            path.write_bytes(data)
            with kithara_io.open(server.url(path.name), **SMALL) as f:
                weak = (f.etag or "").startswith("W/")
                deadline = time.monotonic() + 1.5
                seed = 0
                while time.monotonic() < deadline:
                    random_reads(f, data, 5, seed=seed)
                    seed += 1
            if weak:
                break
        assert weak, "three files, none opened within a second of being written"
