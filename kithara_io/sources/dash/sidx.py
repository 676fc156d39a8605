"""The Segment Index box (``sidx``, ISO/IEC 14496-12 8.16.3) of a ``SegmentBase``
Representation: where each subsegment of the single file is and how long it plays.

Pure and small enough to write here: no maintained Python ISO-BMFF library reads ``sidx``
without pulling in a whole box framework for this one box.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List

from ...errors import InvalidResponseError


@dataclass(frozen=True)
class Subsegment:
    offset: int  # in the file
    size: int
    duration: float  # seconds


def parse_sidx(data: bytes, box_offset: int, url: str) -> List[Subsegment]:
    """The subsegments a ``sidx`` box at file offset ``box_offset`` lists (``data`` starts
    with the box). InvalidResponseError if it is not one, or if it indexes further ``sidx``
    boxes (a hierarchical index: not read here)."""
    try:
        size, kind = struct.unpack_from(">I4s", data, 0)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, 8)[0]
            header = 16
        if kind != b"sidx" or size > len(data):
            raise InvalidResponseError("DASH indexRange does not hold a whole sidx box", url=url)
        version = data[header]
        pos = header + 4  # version and flags
        _reference_id, timescale = struct.unpack_from(">II", data, pos)
        pos += 8
        if version == 0:
            _earliest, first_offset = struct.unpack_from(">II", data, pos)
            pos += 8
        else:
            _earliest, first_offset = struct.unpack_from(">QQ", data, pos)
            pos += 16
        count = struct.unpack_from(">HH", data, pos)[1]
        pos += 4
        if not timescale:
            raise InvalidResponseError("DASH sidx box with a timescale of 0", url=url)
        offset = box_offset + size + first_offset
        out: List[Subsegment] = []
        for _ in range(count):
            word, duration, _sap = struct.unpack_from(">III", data, pos)
            pos += 12
            if word >> 31:
                raise InvalidResponseError(
                    "DASH sidx box indexes other sidx boxes (a hierarchical index is not supported)", url=url
                )
            length = word & 0x7FFFFFFF
            out.append(Subsegment(offset, length, duration / timescale))
            offset += length
        return out
    except struct.error as exc:
        raise InvalidResponseError("DASH sidx box is cut short", url=url, cause=exc) from None
