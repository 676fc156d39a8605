"""The downloaded bytes of one part (a segment or an init segment of one variant).

Not thread-safe on its own: the HlsReader's condition guards every PartData.
A part of known size is one ``bytearray`` filled at any offsets (sub-range fetches); one whose
size is not known yet (an encrypted segment: its plaintext length is proven only by the
padding of its last block) grows from its start. ``present`` is the set of stored ranges.
"""

from __future__ import annotations

from typing import Optional

from ...reading.ranges import RangeSet


class PartData:
    def __init__(self, size: Optional[int]) -> None:
        self.size = size
        self.buf = bytearray(size) if size is not None else bytearray()
        self.present = RangeSet()

    def set_size(self, size: int) -> None:
        """The size became known (a growing part ends here)."""
        if self.size is None:
            del self.buf[size:]
            if len(self.buf) < size:
                self.buf.extend(bytes(size - len(self.buf)))
        self.size = size

    def write(self, pos: int, data: bytes) -> None:
        if self.size is not None and pos + len(data) > self.size:
            data = data[: max(0, self.size - pos)]
        if not data:
            return
        end = pos + len(data)
        if self.size is None and end > len(self.buf):
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[pos:end] = data
        self.present.add(pos, end)

    def available(self, pos: int) -> int:
        """Bytes present contiguously from ``pos``."""
        return max(0, self.present.covered_until(pos) - pos)

    def first_missing(self, pos: int) -> int:
        return self.present.covered_until(pos)

    def next_present(self, pos: int) -> Optional[int]:
        """Start of the first stored range after ``pos`` (None if none)."""
        for start, _end in self.present:
            if start > pos:
                return start
        return None

    @property
    def complete(self) -> bool:
        return self.size is not None and self.present.covered_until(0) >= self.size

    @property
    def held(self) -> int:
        return len(self.buf)
