"""Fetch timelines: a stream's requests per Downloader slot over time, with its seeks, epoch
cancels, preemptions and reader waits, drawn as SVG (or an HTML page) from recorded events.

    from kithara_io.trace import Recorder
    rec = Recorder()
    with kithara_io.open(url, on_event=rec.listener("song")) as f:
        ...
    rec.save("trace.svg")

``draw(events, path)`` draws events recorded elsewhere (:class:`Stamped` values, or
``(seconds, event)`` / ``(seconds, stream name, event)`` tuples). The command line:
``kithara-io trace URL -o trace.svg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from ..events import Event
from . import svg
from .recorder import Recorder
from .timeline import SLOT_NAMES, Bar, Mark, Stamped, Timeline, Wait, build

__all__ = ["SLOT_NAMES", "Bar", "Mark", "Recorder", "Stamped", "Timeline", "Wait", "build", "draw", "render"]

Recorded = Union[Stamped, Sequence[object]]


def _stamped(events: Iterable[Recorded]) -> List[Stamped]:
    out = []
    for item in events:
        if isinstance(item, Stamped):
            out.append(item)
        elif len(item) == 2 and isinstance(item[1], Event):
            out.append(Stamped(float(item[0]), "stream", item[1]))  # type: ignore[arg-type]
        elif len(item) == 3 and isinstance(item[2], Event):
            out.append(Stamped(float(item[0]), str(item[1]), item[2]))  # type: ignore[arg-type]
        else:
            raise TypeError(f"not a recorded event: {item!r} (expected (seconds, event) or (seconds, stream, event))")
    return out


def render(events: Iterable[Recorded], title: str = "", until: Optional[float] = None) -> str:
    """The SVG text of the timeline of ``events``."""
    return svg.render(build(_stamped(events), until), title)


def draw(events: Iterable[Recorded], path: Union[str, Path], title: str = "", until: Optional[float] = None) -> Path:
    """Draw ``events`` into ``path``: an HTML page for ``.html``/``.htm``, SVG otherwise."""
    path = Path(path)
    text = render(events, title, until)
    if path.suffix.lower() in (".html", ".htm"):
        text = svg.page(text, title)
    path.write_text(text, encoding="utf-8")
    return path
