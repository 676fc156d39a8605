"""One subscription on the Downloader sees every request event of every stream it serves."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Dict, List, Type

import pytest

import kithara_io
from kithara_io import Downloader, Retry
from kithara_io.events import (
    REQUEST_EVENTS,
    Event,
    FirstByte,
    Progress,
    ReaderWaiting,
    RequestCompleted,
    RequestEnqueued,
    RequestFailed,
    RequestRetrying,
    RequestStarted,
    Seek,
)
from tests.servers.faults import Status


class Recorder:
    """Events by type, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: List[Event] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: Type[Event]) -> List[Event]:
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]


def test_downloader_bus_sees_all_request_events_of_two_streams(media, nginx_server, no_leaks):
    names = ["tone.flac", "random.bin"]
    urls = [nginx_server.url(n) for n in names]
    downloader = Downloader()
    bus, own = Recorder(), {url: Recorder() for url in urls}
    try:
        with downloader.subscribe(bus):
            streams = [kithara_io.open(url, downloader=downloader, on_event=own[url]) for url in urls]
            for f, name in zip(streams, names):
                assert f.read() == media[name].read_bytes()
            for f in streams:
                f.close()
    finally:
        downloader.close()
    assert all(isinstance(e, REQUEST_EVENTS) for e in bus.events)  # no reader events (Seek...)
    for url, name in zip(urls, names):
        mine = [e for e in bus.events if e.url == url]
        by_type: Dict[type, list] = defaultdict(list)
        for e in mine:
            by_type[type(e)].append(e)
        for kind in (RequestEnqueued, RequestStarted, FirstByte, Progress, RequestCompleted):
            assert by_type[kind], f"no {kind.__name__} for {name} on the Downloader bus"
        # every request that completed was announced, and each byte arrived once
        assert {e.request_id for e in by_type[RequestCompleted]} <= {e.request_id for e in by_type[RequestEnqueued]}
        assert sum(e.bytes for e in by_type[Progress]) == media[name].stat().st_size
        assert sum(e.bytes for e in by_type[RequestCompleted]) == media[name].stat().st_size
        # the stream's own bus got the same request events, once each (no duplicates)
        stream_side = [e for e in own[url].events if isinstance(e, REQUEST_EVENTS)]
        assert stream_side == mine
        assert own[url].of(Seek) or own[url].of(ReaderWaiting)  # reader events stay on the stream


@pytest.mark.timeout(30)
def test_downloader_bus_sees_retries_and_failures(fault_server, no_leaks):
    ok = fault_server.add("/ok.bin", bytes(range(256)) * 64)
    gone = fault_server.add("/gone.bin", b"x" * 1000)
    fault_server.script("/ok.bin", [Status(503)])
    fault_server.always("/gone.bin", Status(404))
    downloader = Downloader()
    bus = Recorder()
    retry = Retry(attempts=3, backoff=0.01, max_backoff=0.05)
    try:
        with downloader.subscribe(bus):
            with kithara_io.open(ok, downloader=downloader, retry=retry, tail=0) as f:
                assert f.read() == bytes(range(256)) * 64
            with pytest.raises(kithara_io.HTTPStatusError) as failure:
                kithara_io.open(gone, downloader=downloader, retry=retry, tail=0)
    finally:
        downloader.close()
    retrying = [e for e in bus.of(RequestRetrying) if e.url == ok]
    assert retrying and "503" in retrying[0].cause
    failed = [e for e in bus.of(RequestFailed) if e.url == gone]
    assert len(failed) == 1 and failed[0].error.status == failure.value.status == 404
