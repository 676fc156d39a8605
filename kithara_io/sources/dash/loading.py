"""Fetching an MPD and building a DashReader from it (as :mod:`..hls.loading` for HLS)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, List, Mapping, Optional

from ...disk import DiskCache
from ...engine.downloader import Downloader
from ...errors import InvalidResponseError, TruncatedBodyError
from ...events import Event
from ...options import StreamOptions
from ...reading.planning import Priority
from ...retry import Retry
from ..dash_entry import looks_like_mpd
from ..hls.abr import initial_variant
from ..hls.load import First, VariantChoice, load, stream_transport
from ..hls.transport import Transport, with_retries
from .clock import Clock
from .mpd import ByteRange, parse_mpd
from .presentation import Presentation, build
from .reader import DashReader

#: Largest SegmentBase index (sidx box) read.
MAX_INDEX_BYTES = 4 << 20


def load_presentation(
    transport: Transport,
    first: First,
    audio: Optional[str],
    retry: Retry,
    clock: Clock,
    deadline: Optional[float] = None,
) -> Presentation:
    """The presentation of an MPD already fetched (``first``: text, content type, final URL)."""
    text, content_type, final = first
    if not looks_like_mpd(content_type, text[:4096].encode()):
        raise InvalidResponseError("not a DASH MPD", url=final)
    mpd = parse_mpd(text, final)
    now = clock.now(mpd.utc_timing, final) if mpd.dynamic else time.time()
    counted: List[int] = []
    presentation = build(mpd, audio, _index_reader(transport, retry, deadline, counted), now)
    return dataclasses.replace(presentation, index_bytes=sum(counted))


def open_dash(
    url: str,
    *,
    variant: VariantChoice = "auto",
    headers: Optional[Mapping[str, str]] = None,
    priority: Priority = Priority.HIGH,
    downloader: Downloader,
    on_event: Optional[Callable[[Event], None]] = None,
    options: StreamOptions,
    first: Optional[First] = None,
    cache: Optional[DiskCache] = None,
    audio: Optional[str] = None,
) -> DashReader:
    """An opened DashReader for the MPD at ``url`` (``first``: its text, already fetched;
    ``cache``: keep the MPD and segments on disk; ``audio``: the language, role, label or id
    of the audio AdaptationSet to read). Raises a StreamError if it is not an MPD or cannot
    be read."""
    transport, deadline = stream_transport(url, headers, options, cache)  # Timeout.open: retries stop at deadline
    try:
        if first is None:
            first = load(transport, url, options.retry, deadline)
        clock = Clock(lambda source: load(transport, source, options.retry, deadline)[0])
        presentation = load_presentation(transport, first, audio, options.retry, clock, deadline)
        where = presentation.mpd.location or url

        def reload() -> Presentation:
            return load_presentation(transport, load(transport, where, options.retry), audio, options.retry, clock)

        index = initial_variant([v.bandwidth for v in presentation.variants], variant)
        reader = DashReader(
            url, presentation, reload, index, variant == "auto", transport, downloader, options, priority
        )
    except BaseException:
        transport.close()
        raise
    if on_event is not None:
        reader.events.subscribe(on_event)
    reader.open()
    return reader


def _index_reader(transport: Transport, retry: Retry, deadline: Optional[float], counted: List[int]):
    """``read(url, (offset, length))`` of a SegmentBase index, through the transport (so
    the disk cache holds it for offline replay), with the stream's retries; the length of
    each index read is appended to ``counted``."""

    def read(url: str, span: ByteRange) -> bytes:
        offset, length = span
        if length > MAX_INDEX_BYTES:
            raise InvalidResponseError(f"DASH indexRange of {length} bytes is larger than {MAX_INDEX_BYTES}", url=url)

        def once() -> bytes:
            body = transport.open(url, offset, offset + length)
            try:
                out = bytearray()
                while len(out) < length:
                    piece = body.read(min(64 * 1024, length - len(out)))
                    if not piece:
                        raise TruncatedBodyError(f"the index ended after {len(out)} of {length} bytes", url=url)
                    out += piece
                return bytes(out)
            finally:
                body.close()

        data = with_retries(once, retry, threading.Event(), deadline)
        counted.append(len(data))
        return data

    return read
