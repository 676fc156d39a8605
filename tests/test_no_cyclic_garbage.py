"""A stream's fetches are freed by reference counting as they complete, and a closed stream
as it is dropped, never left to the cyclic garbage collector: a random reader makes
thousands of fetches, a data job opens thousands of files, and a full collection pauses
every thread of the process (60-130 ms measured in the test process, an asyncio loop
included). HLS, DASH and live streams: ``test_hls.py``, ``test_dash.py``, ``test_live.py``."""

from __future__ import annotations

import gc
import os
import random
import weakref
from typing import Callable, List, Tuple

import pytest

import kithara_io
from kithara_io.engine.scheduling import FetchCommand
from kithara_io.net.curl import CurlConnection
from kithara_io.reading.fetching import Fetch, FetchLoop
from kithara_io.reading.cache import SparseCache
from kithara_io.reading.remote import RemoteReader

DATA = os.urandom(4 << 20)


def left_to_the_collector(action: Callable[[], None], kinds: Tuple[type, ...]) -> List[str]:
    """The names of the objects of ``kinds`` that only a collection would free after ``action``."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept, to be looked at
    try:
        action()
        gc.collect()
        # (isinstance on a proxy to an object already gone would raise)
        return [type(o).__name__ for o in gc.garbage if type(o) not in weakref.ProxyTypes and isinstance(o, kinds)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.timeout(30)
def test_completed_fetches_leave_no_cyclic_garbage(fault_server, no_leaks):
    url = fault_server.add("/f.bin", DATA)
    rng = random.Random(3)
    with kithara_io.open(url, tail=0) as f:

        def read_randomly() -> None:
            for _ in range(30):
                pos = rng.randrange(0, len(DATA) - 65536)
                f.seek(pos)
                assert f.read(65536) == DATA[pos : pos + 65536]
            assert f.stats().requests >= 20

        assert left_to_the_collector(read_randomly, (FetchCommand, Fetch)) == []


@pytest.mark.timeout(30)
def test_a_closed_stream_leaves_no_cyclic_garbage(fault_server, no_leaks):
    url = fault_server.add("/g.bin", DATA)

    def open_read_close() -> None:
        for _ in range(3):
            with kithara_io.open(url) as f:
                assert f.read(1 << 20) == DATA[: 1 << 20]
                f.seek(3 << 20)  # a small range: over libcurl
                assert f.read(65536) == DATA[3 << 20 : (3 << 20) + 65536]
                assert f.read_ranges([(0, 100), (2 << 20, (2 << 20) + 100)]) == [DATA[:100], DATA[2 << 20 : (2 << 20) + 100]]

    assert left_to_the_collector(open_read_close, (RemoteReader, FetchLoop, CurlConnection)) == []


@pytest.mark.timeout(30)
def test_a_failed_open_leaves_no_cyclic_garbage(fault_server, no_leaks):
    """The error goes to the caller; the reader and its cache, closed, keep no copy whose
    traceback refers back to them (a job probing many URLs meets many 404s)."""
    url = fault_server.url("/missing.bin")

    def fail_to_open() -> None:
        for _ in range(3):
            try:  # (not pytest.raises: its ExceptionInfo, kept in this frame, is a cycle of its own)
                kithara_io.open(url).close()
            except kithara_io.HTTPStatusError as exc:
                assert exc.status == 404 and url in str(exc)
            else:
                raise AssertionError("opened a missing file")

    assert left_to_the_collector(fail_to_open, (RemoteReader, SparseCache)) == []
