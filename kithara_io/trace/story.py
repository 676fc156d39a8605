"""A scripted reading story, recorded for a timeline (``kithara-io trace``, the docs' pictures).

The main stream reads from 0, then from each seek position, ``read`` bytes each time (paced
at ``rate`` bytes/s like a player, when given). Streams named in ``preload`` are Low streams
on the same Downloader that read their files through in threads of their own.

What makes a story repeatable: its steps follow bytes and events, not the clock. Each seek
comes after a fixed number of bytes read; the main stream opens only once every preload stream
has a fetch running (seen in its events), so a High main stream always arrives while Low work
runs and preempts it. Durations still follow the link and the machine.

Threads: the preload readers, started and joined here (a bounded join; a stuck one is
interrupted through its stream's ``close``). ``_cond`` guards ``_running``.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import urlsplit

from ..api import open as open_stream
from ..engine.downloader import Downloader
from ..errors import StreamError
from ..events import Event, RequestCancelled, RequestCompleted, RequestFailed, RequestStarted
from .recorder import Recorder

CHUNK = 64 * 1024
MiB = 1 << 20


class OpenFailed(Exception):
    """A stream of the story could not be opened; ``cause`` is the library's error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _open(url: str, **kwargs: Any) -> Any:
    try:
        return open_stream(url, **kwargs)
    except (StreamError, ValueError) as exc:
        raise OpenFailed(exc) from exc


@dataclass
class Story:
    """What to do; byte positions may be negative (from the end) or fractions in (0, 1) of
    the size (``0.5``: the middle)."""

    url: str
    seeks: Sequence[float] = ()
    read: Optional[int] = None  # bytes at each position; None: to the end (1 MiB with seeks)
    read_seconds: Optional[float] = None  # stop reading at a position after this long
    rate: Optional[float] = None  # pace the reads at this many bytes/s (a player)
    priority: str = "high"
    preload: Sequence[str] = ()  # URLs read through by Low streams on the same Downloader
    preload_read: Optional[int] = None  # bytes each preload reads (None: its whole file)
    max_concurrent: int = 2
    options: Dict[str, Any] = field(default_factory=dict)  # StreamOptions fields
    wait: float = 30.0  # longest wait for the preloads to start, and for them to end


def stream_name(url: str, taken: Sequence[str]) -> str:
    """A short name for a stream's lane: the file name of its URL, made unique."""
    path = urlsplit(url).path if "://" in url else url
    base = os.path.basename(path.rstrip("/")) or url
    name, n = base, 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    return name


def position(value: float, size: Optional[int]) -> int:
    """A seek target: bytes, from the end if negative, or a fraction of ``size`` in (0, 1)."""
    if 0 < value < 1:
        if size is None:
            raise ValueError("a seek to a fraction of the size needs a stream of known size")
        return int(value * size)
    if value < 0:
        if size is None:
            raise ValueError("a seek from the end needs a stream of known size")
        return max(0, size + int(value))
    return int(value)


class _Running:
    """Per stream, the fetches started so far and those still running (from its events)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started: Dict[str, int] = {}
        self._running: Dict[str, set] = {}
        self._done: set = set()

    def listener(self, name: str, record: Any) -> Any:
        def on_event(event: Event) -> None:
            record(event)
            if isinstance(event, RequestStarted):
                with self._cond:
                    self._started[name] = self._started.get(name, 0) + 1
                    self._running.setdefault(name, set()).add(event.request_id)
                    self._cond.notify_all()
            elif isinstance(event, (RequestCompleted, RequestFailed, RequestCancelled)):
                with self._cond:
                    self._running.setdefault(name, set()).discard(event.request_id)

        return on_event

    def done(self, name: str) -> None:
        """The stream ``name`` stopped reading (its end, or a failure)."""
        with self._cond:
            self._done.add(name)
            self._cond.notify_all()

    def wait_preloading(self, names: Sequence[str], timeout: float) -> bool:
        """Wait until each stream of ``names`` has started a fetch and one of them has a
        fetch running now (False: one stopped first, or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (all(self._started.get(n) for n in names) and any(self._running.get(n) for n in names)):
                left = deadline - time.monotonic()
                if left <= 0 or self._done.intersection(names):
                    return False
                self._cond.wait(left)
            return True


def _read(
    stream: Any, amount: Optional[int], seconds: Optional[float], rate: Optional[float], stop: threading.Event
) -> int:
    """Read up to ``amount`` bytes (None: to the end), for at most ``seconds``; returns the count."""
    started, got = time.monotonic(), 0
    while amount is None or got < amount:
        if stop.is_set() or (seconds is not None and time.monotonic() - started >= seconds):
            break
        want = CHUNK if amount is None else min(CHUNK, amount - got)
        data = stream.read(want)
        if not data:
            break
        got += len(data)
        if rate:
            ahead = got / rate - (time.monotonic() - started)
            if ahead > 0:
                stop.wait(ahead)  # a player consumes at its rate: reading is paced, not racing
    return got


def run(story: Story, recorder: Optional[Recorder] = None) -> Recorder:
    """Run ``story``, recording every stream's events; returns the recorder (stopped).
    Raises the main stream's error, or a preload stream's (:class:`OpenFailed` for a stream
    that could not be opened)."""
    rec = recorder or Recorder()
    running = _Running()
    downloader = Downloader(max_concurrent=story.max_concurrent)
    stop = threading.Event()
    errors: List[BaseException] = []
    names: List[str] = []
    streams: List[Any] = []
    lock = threading.Lock()  # guards streams, errors

    def preload(url: str, name: str) -> None:
        try:
            with _open(
                url,
                priority="low",
                downloader=downloader,
                on_event=running.listener(name, rec.listener(name)),
                **story.options,
            ) as f:
                with lock:
                    streams.append(f)
                _read(f, story.preload_read, None, None, stop)
        except Exception as exc:  # noqa: BLE001 - any failure is raised again by run(), in its caller's thread
            with lock:
                errors.append(exc)
        finally:
            running.done(name)

    threads = []
    for url in story.preload:
        name = stream_name(url, names)
        names.append(name)
        threads.append(threading.Thread(target=preload, args=(url, name), name=f"kithara-trace-{name}", daemon=True))
    try:
        for t in threads:
            t.start()
        if threads:
            running.wait_preloading(names, story.wait)
        if not errors:
            _main(story, rec, running, downloader, stop, names)
        for t in threads:
            t.join(story.wait)
    finally:
        stop.set()
        with lock:
            for f in streams:
                f.close()  # wakes a reader still blocked, so the join below ends
        for t in threads:
            t.join(story.wait)
        downloader.close()
        rec.stop()
    if errors:
        raise errors[0]
    return rec


def _main(
    story: Story, rec: Recorder, running: _Running, downloader: Downloader, stop: threading.Event, names: List[str]
) -> None:
    name = stream_name(story.url, names)
    names.append(name)
    amount = story.read if story.read is not None else (MiB if story.seeks else None)
    with _open(
        story.url,
        priority=story.priority,
        downloader=downloader,
        on_event=running.listener(name, rec.listener(name)),
        **story.options,
    ) as f:
        targets = [position(s, f.size) for s in story.seeks]
        _read(f, amount, story.read_seconds, story.rate, stop)
        for target in targets:
            f.seek(target)
            _read(f, amount, story.read_seconds, story.rate, stop)
