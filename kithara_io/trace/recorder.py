"""Recorder: events of one or more streams, stamped with the time they arrived.

Subscribers run on the publishing threads (pool threads, the dispatcher, the reader), so the
list is guarded by the recorder's own lock; nothing else is called while it is held.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Union

from ..events import Event
from . import svg
from .timeline import Stamped, Timeline, build


class Recorder:
    """Collects events for a fetch timeline.

    Pass it as ``on_event`` (``kithara_io.open(url, on_event=recorder)``), or
    ``recorder.listener("name")`` to name each stream when several share a drawing::

        rec = Recorder()
        with kithara_io.open(url, on_event=rec.listener("song")) as f:
            f.read(1 << 20); f.seek(50 << 20); f.read(1 << 20)
        rec.save("trace.svg")
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: List[Stamped] = []
        self._stopped: Optional[float] = None
        self._unnamed = self.listener()

    def listener(self, stream: str = "stream") -> Callable[[Event], None]:
        """An ``on_event`` callback recording the events of the stream named ``stream``."""

        def record(event: Event) -> None:
            stamped = Stamped(self._clock(), stream, event)
            with self._lock:
                self._events.append(stamped)

        return record

    def __call__(self, event: Event) -> None:
        self._unnamed(event)

    def stop(self) -> None:
        """Mark the end of the recording (requests still running are drawn up to here)."""
        now = self._clock()
        with self._lock:
            self._stopped = now

    @property
    def events(self) -> List[Stamped]:
        """A copy of what was recorded so far, in arrival order."""
        with self._lock:
            return list(self._events)

    def timeline(self) -> Timeline:
        with self._lock:
            events, until = list(self._events), self._stopped
        return build(events, until if until is not None else self._clock())

    def svg(self, title: str = "") -> str:
        """The timeline as an SVG document."""
        return svg.render(self.timeline(), title)

    def html(self, title: str = "") -> str:
        """The timeline in an HTML page."""
        return svg.page(self.svg(title), title)

    def save(self, path: Union[str, Path], title: str = "") -> Path:
        """Write the drawing to ``path``: HTML for ``.html``/``.htm``, SVG otherwise."""
        path = Path(path)
        text = self.html(title) if path.suffix.lower() in (".html", ".htm") else self.svg(title)
        path.write_text(text, encoding="utf-8")
        return path
