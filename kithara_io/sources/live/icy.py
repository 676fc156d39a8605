"""ICY (Shoutcast/Icecast) metadata: station headers and the in-band title blocks.

A listener that sends ``Icy-MetaData: 1`` gets, when the answer carries ``icy-metaint: N``,
a body in which every N audio bytes are followed by one length byte L and L*16 bytes of
metadata (``StreamTitle='...';StreamUrl='...';`` padded with NULs; L = 0: nothing new).
:class:`IcyDemuxer` splits such a body back into audio bytes and metadata, whatever the
sizes of the pieces it is fed. Pure code: no I/O, no threads.
"""

from __future__ import annotations

import bisect
import re
from typing import Dict, List, Mapping, Optional, Tuple, Union

from ...headers import decimal

Metadata = Dict[str, Union[str, int]]

#: ``icy-*`` response header -> key of ``stream.metadata``.
STATION_HEADERS = {
    "icy-name": "name",
    "icy-genre": "genre",
    "icy-description": "description",
    "icy-br": "bitrate",
    "icy-url": "station_url",
}

#: Key inside a metadata block -> key of ``stream.metadata``.
BLOCK_KEYS = {"StreamTitle": "title", "StreamUrl": "url"}

_LEADING_NUMBER = re.compile(r"\s*([0-9]+)")

# A value ends at the quote followed by ';' and then the next key or the end: titles
# contain apostrophes ("Guns N' Roses") and semicolons, never the sequence "';Key='". What
# ``(\w+)='(.*?)';(?=\s*\w+='|\s*$)`` finds, in time linear in the block (that pattern
# searched a lazy value from every key, each key from every position: 0.2 s for 4 KiB).
_KEY = re.compile(r"(?<!\w)(\w+)='")
_END = re.compile(r"';")
_AFTER_END = re.compile(r"\s*(?:\w+='|$)")


def is_station(headers: Mapping[str, str]) -> bool:
    """An answer from a radio server (``icy-*`` headers): its end is a dropped connection."""
    return any(name.lower().startswith("icy-") for name in headers)


def station_metadata(headers: Mapping[str, str]) -> Metadata:
    """The station fields of a response's ``icy-*`` headers (``bitrate`` as an int when it
    is one). ``headers`` may be any mapping; names are matched case-insensitively."""
    lowered = {k.lower(): v for k, v in headers.items()}
    found: Metadata = {}
    for header, key in STATION_HEADERS.items():
        value = lowered.get(header)
        if value is None or not value.strip():
            continue
        value = _text(value.encode("latin-1", "replace")).strip()
        if key == "bitrate":
            # Some servers send "128,128" (mono/stereo) or "128 kbps".
            digits = _LEADING_NUMBER.match(value)
            number = decimal(digits.group(1)) if digits else None
            found[key] = value if number is None else number
        else:
            found[key] = value
    return found


def metaint(headers: Mapping[str, str]) -> Optional[int]:
    """The ``icy-metaint`` interval of a response, or None (no in-band metadata)."""
    for name, value in headers.items():
        if name.lower() == "icy-metaint":
            return decimal(value) or None
    return None


def parse_block(block: bytes) -> Dict[str, str]:
    """The fields of one metadata block: ``title`` and ``url`` (other keys keep their own
    name). Trailing NUL padding is ignored; text is UTF-8, else Latin-1."""
    text = _text(block.rstrip(b"\0")).strip()
    ends = [m.start() for m in _END.finditer(text) if _AFTER_END.match(text, m.end())]
    fields: Dict[str, str] = {}
    pos = 0
    while True:
        key = _KEY.search(text, pos)
        if key is None:
            break
        i = bisect.bisect_left(ends, key.end())
        if i == len(ends):  # unterminated: so is every later key
            break
        fields[BLOCK_KEYS.get(key.group(1), key.group(1))] = text[key.end() : ends[i]]
        pos = ends[i] + 2
    return fields


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class IcyDemuxer:
    """Splits an ICY body into audio bytes and metadata changes.

    ``feed(data)`` returns ``(audio, changes)``: the audio bytes contained in ``data`` and,
    for every metadata block whose fields differ from the previous block's, ``(position,
    fields)`` where ``position`` is the audio byte offset (from the start of this body) at
    which the new fields apply. A block equal to the previous one and L = 0 are no change.
    """

    def __init__(self, interval: int) -> None:
        if interval < 1:
            raise ValueError("icy-metaint must be >= 1")
        self.interval = interval
        self.audio_bytes = 0  # audio bytes returned so far
        self._until_meta = interval  # audio bytes before the next length byte
        self._meta_left: Optional[int] = None  # bytes of the current block still to come
        self._block = bytearray()
        self._last: Optional[Dict[str, str]] = None

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> Tuple[bytes, List[Tuple[int, Dict[str, str]]]]:
        view = memoryview(data).cast("B")
        audio = bytearray()
        changes: List[Tuple[int, Dict[str, str]]] = []
        i = 0
        while i < len(view):
            if self._meta_left is None:
                if self._until_meta:
                    take = min(self._until_meta, len(view) - i)
                    audio += view[i : i + take]
                    self._until_meta -= take
                    i += take
                    continue
                self._meta_left = view[i] * 16  # the length byte
                i += 1
            else:
                take = min(self._meta_left, len(view) - i)
                self._block += view[i : i + take]
                self._meta_left -= take
                i += take
            if self._meta_left == 0:
                self._end_block(self.audio_bytes + len(audio), changes)
        self.audio_bytes += len(audio)
        return bytes(audio), changes

    def _end_block(self, position: int, changes: List[Tuple[int, Dict[str, str]]]) -> None:
        block, self._block = bytes(self._block), bytearray()
        self._meta_left = None
        self._until_meta = self.interval
        if not block:
            return  # L = 0: nothing new
        fields = parse_block(block)
        if fields and fields != self._last:  # nothing parseable (NULs only): no change
            self._last = fields
            changes.append((position, fields))


__all__ = ["IcyDemuxer", "Metadata", "metaint", "parse_block", "station_metadata"]
