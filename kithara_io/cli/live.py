"""``kithara-io info`` and ``get`` for live streams (radio stations, pipes).

``info`` says the stream is live and shows the station's ICY fields and the current title
(waiting briefly for the first title block); ``get`` records until the stream ends, Ctrl-C
or ``--duration`` seconds, whichever comes first.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, TextIO

from .progress import LineWriter, RateMeter, format_bytes, format_rate, format_time

#: How long ``info`` waits for a station's first title (it comes after icy-metaint bytes).
TITLE_WAIT = 3.0
TITLE_BYTES = 256 * 1024
COPY_CHUNK = 64 * 1024

_FIELDS = [
    ("name", "station"),
    ("genre", "genre"),
    ("description", "description"),
    ("bitrate", "bitrate"),
    ("station_url", "station url"),
    ("title", "title"),
    ("url", "stream url"),
]


def is_live(stream: Any) -> bool:
    """A stream of unknown length (a station, a pipe, a response without a length): ``get``
    records it from start to end."""
    return stream.size is None


def live_details(stream: Any) -> Dict[str, Any]:
    """What ``info`` reports of a live stream; reads up to the first title (bounded)."""
    deadline = time.monotonic() + TITLE_WAIT
    read = 0
    # Read until the reader reaches the first title: metadata shows what is at tell().
    while "title" not in stream.metadata and read < TITLE_BYTES and time.monotonic() < deadline:
        chunk = stream.read(16 * 1024)
        if not chunk:
            break
        read += len(chunk)
    metadata = dict(stream.metadata)
    return {"source": stream.name, "live": True, "size": None, "metadata": metadata}


def write_live_info(details: Dict[str, Any], out: TextIO) -> None:
    rows = [("source", details["source"]), ("live", "yes (unknown length, not seekable)")]
    metadata = details["metadata"]
    for key, label in _FIELDS:
        if key in metadata:
            value = metadata[key]
            rows.append((label, f"{value} kbit/s" if key == "bitrate" and isinstance(value, int) else value))
    for name, value in rows:
        out.write(f"{name:<14}{value}\n")


def record(stream: Any, path: str, duration: Optional[float], out: TextIO, width: int) -> int:
    """Copy a live stream to ``path`` until its end, ``duration`` seconds or Ctrl-C;
    returns the bytes written."""
    writer = LineWriter(out)
    meter = RateMeter()
    started = time.monotonic()
    written = 0
    last_draw = 0.0
    title = None
    stop = None if duration is None else started + duration
    with open(path, "wb") as f:
        try:
            while stop is None or time.monotonic() < stop:
                chunk = stream.read(COPY_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                written += len(chunk)
                now = time.monotonic()
                meter.add(now, written)
                current = stream.metadata.get("title")
                if current != title and current is not None:
                    title = current
                    writer.message(f"now playing: {title}")
                if now - last_draw >= 0.25:
                    last_draw = now
                    line = (
                        f"recording {format_time(now - started)}  {format_bytes(written)}  {format_rate(meter.rate())}"
                    )
                    writer.update(line[:width])
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a recording of a station ends
        written = f.tell()  # Ctrl-C may have come between a write and its count
    elapsed = time.monotonic() - started
    writer.finish(f"recorded {format_time(elapsed)}, {format_bytes(written)}")
    writer.message(f"saved {path} ({written} bytes)")
    return written
