"""Answers that could be read two ways (issue #23): a ``200`` to a range request that may
hold only the bytes asked, and a ``Content-Range`` that contradicts itself. Never a
silently short file, never a wrong byte; a refusal says what is wrong."""

from __future__ import annotations

import io

import pytest

import kithara_io
from kithara_io import InvalidResponseError, Retry
from tests.servers.faults import BadContentRange, Header, IgnoreRange, NoContentLength, RangeAs200

KiB = 1024
FIRST = 64 * KiB  # the first request asks bytes=0-(FIRST-1)
QUICK = Retry(attempts=2, backoff=0.05, max_backoff=0.1, jitter=0)


def _data(n: int) -> bytes:
    return bytes((i * 131 + (i >> 8)) & 0xFF for i in range(n))


@pytest.mark.parametrize("framing", ["length", "close-delimited"])
def test_a_range_answered_by_200_with_the_slice_reads_the_whole_file(fault_server, no_leaks, framing) -> None:
    """fsspec's own test server answers ``Range: bytes=0-65535`` with 200 and just those
    bytes: believed, the file would end at 64 KiB. The stream asks again without Range."""
    data = _data(200_000)
    url = fault_server.add("/f.bin", data)
    faults = RangeAs200() if framing == "length" else (RangeAs200(), NoContentLength())
    fault_server.always("/f.bin", faults)
    with kithara_io.open(url, first_fetch=FIRST, retry=QUICK) as f:
        assert f.read() == data
        assert f.size == len(data)
        f.seek(150_000)
        assert f.read(1000) == data[150_000:151_000]
        assert f.seek(-10, io.SEEK_END) == len(data) - 10
        assert f.read() == data[-10:]


def test_a_slice_shorter_than_the_range_from_an_offset_is_not_taken_for_the_file(fault_server, no_leaks) -> None:
    """A range far from 0 answered by 200 with the slice: a body from byte 0 of that
    length would put the wrong bytes at the offset asked."""
    data = _data(150_000)
    url = fault_server.add("/f.bin", data)
    fault_server.always("/f.bin", RangeAs200())
    with kithara_io.open(url, first_fetch=FIRST, retry=QUICK) as f:
        f.seek(100_000)
        assert f.read(2000) == data[100_000:102_000]
        assert f.size == len(data)


def test_a_whole_file_exactly_as_long_as_the_first_range_is_confirmed_once(fault_server, no_leaks) -> None:
    """A server without range support serving a file of exactly the first range's length:
    the answer is ambiguous, one more request (without Range) settles it."""
    data = _data(FIRST)
    url = fault_server.add("/f.bin", data)
    fault_server.always("/f.bin", IgnoreRange())
    with kithara_io.open(url, first_fetch=FIRST, tail=0) as f:
        assert f.read() == data
    requests = [r for r in fault_server.requests if r.path == "/f.bin"]
    assert len(requests) == 2
    assert "Range" in requests[0].headers and "Range" not in requests[1].headers


def test_an_unambiguous_200_costs_no_second_request(fault_server, no_leaks) -> None:
    """A longer whole body than the range asked cannot be the slice: no confirmation."""
    data = _data(FIRST + 1)
    url = fault_server.add("/f.bin", data)
    fault_server.always("/f.bin", IgnoreRange())
    with kithara_io.open(url, first_fetch=FIRST, tail=0) as f:
        assert f.read() == data
    assert fault_server.count("/f.bin") == 1


def test_a_station_is_not_asked_twice(fault_server, no_leaks) -> None:
    """A radio answer (``icy-*`` headers, no length) is a live stream, never a slice."""
    data = _data(100_000)
    url = fault_server.add("/live.mp3", data, content_type="audio/mpeg")
    fault_server.always("/live.mp3", (IgnoreRange(), NoContentLength(), Header("icy-name", "Test FM")))
    with kithara_io.open(url, first_fetch=FIRST, tail=0, retry=QUICK) as f:
        assert f.read(1000) == data[:1000]
    assert fault_server.count("/live.mp3") == 1


def test_a_content_range_past_its_own_total_is_refused_saying_so(fault_server, no_leaks) -> None:
    """``Content-Range: bytes 0-65535/14999``: the last byte lies past the length."""
    data = _data(14_999)
    url = fault_server.add("/f.bin", data)
    fault_server.always("/f.bin", BadContentRange("bytes 0-65535/14999"))
    with pytest.raises(InvalidResponseError, match=r"last byte 65535 .*past the total length 14999"):
        kithara_io.open(url, first_fetch=FIRST, tail=0, retry=QUICK)
