"""A body that trickles once the link's rate is known: the fetch loop then reads a piece in
one blocking call (no Python per socket read), which a byte every 0.1 s keeps going for
hours without ever being silent for the read timeout. The Downloader breaks off a piece
that overruns its time; pieces are then read in small timed reads, which the speed limit
(``Timeout.speed_limit`` / ``speed_time``) judges."""

from __future__ import annotations

import random
import time

import pytest

import kithara_io
from kithara_io import ConnectionFailedError, Retry, Timeout
from tests.hostile_raw import HostileServer, send_all

DATA = random.Random(2).randbytes(16 << 20)
FAST = 2 << 20  # the file's first bytes come at once (the link's rate is measured on them)
QUICK = Retry(attempts=2, backoff=0.01, max_backoff=0.05, jitter=0)


def _trickle_past_fast(sock, start, end, data, stop) -> bool:
    head = (
        f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end - 1}/{len(data)}\r\n"
        f'Accept-Ranges: bytes\r\nETag: "v1"\r\nContent-Length: {end - start}\r\n\r\n'
    ).encode()
    fast = min(end, max(start, FAST))
    if not send_all(sock, head + data[start:fast], stop):
        return False
    began = time.monotonic()
    for i in range(fast, end):
        if time.monotonic() - began > 25 or not send_all(sock, data[i : i + 1], stop):
            return False
        stop.wait(0.1)
    return True


@pytest.mark.timeout(40)
def test_a_stream_that_trickles_after_a_fast_start_fails_by_the_speed_limit(no_leaks) -> None:
    slow = Timeout(connect=2, read=2, speed_limit=1024, speed_time=1)
    got = bytearray()
    with HostileServer(DATA, 0, _trickle_past_fast) as srv:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="slower than") as failed:
            with kithara_io.open(srv.url(), timeout=slow, retry=QUICK, tail=0) as f:
                while True:
                    piece = f.read(1 << 20)
                    if not piece:
                        break
                    got += piece
        took = time.monotonic() - started
    assert srv.url() in str(failed.value)
    assert took < 10, took
    assert len(got) >= FAST - (1 << 20) and got == DATA[: len(got)]  # what came first is right
