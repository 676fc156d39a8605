"""The index of a cache entry: which version of the resource its data file holds and which
byte ranges of it are on disk.

On disk it is one JSON line, ``{"body": {...}, "sha256": "<hex>"}``, where the checksum is of
the body's canonical JSON (sorted keys, no spaces), so a torn or edited index is detected.
It is only ever replaced whole: written to a temporary file, fsynced, renamed over the old
one, and the directory fsynced. A crash at any point therefore leaves the old index or the
new one, plus at most a temporary file that ``remove_orphans`` deletes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..sources.base import Validators
from .files import DATA_PREFIX, INDEX_NAME, TMP_PREFIX, create_private, fsync_dir

FORMAT = 1
#: Largest index read: ~1.5 million ranges, far more than a fragmented entry holds.
MAX_INDEX_BYTES = 64 << 20
_GENERATION = re.compile(r"[0-9a-f]{16}\Z")

Interval = Tuple[int, int]


class CorruptIndex(ValueError):
    """The index cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Index:
    """One entry's committed state. ``generation`` names the data file (``data.<generation>``)
    and is new at every reset; it and ``validators`` are None until validators are pinned.
    ``url`` is what listings show: the key (the URL itself, unless a key function strips a
    signature, which must then not be stored either)."""

    url: str
    key: str
    generation: Optional[str] = None
    validators: Optional[Validators] = None
    ranges: Tuple[Interval, ...] = ()

    @property
    def data_name(self) -> Optional[str]:
        return None if self.generation is None else DATA_PREFIX + self.generation


def new_generation() -> str:
    return secrets.token_hex(8)


def _canonical(body: Dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def encode(index: Index) -> bytes:
    v = index.validators
    body = {
        "format": FORMAT,
        "url": index.url,
        "key": index.key,
        "generation": index.generation,
        "size": None if v is None else v.size,
        "etag": None if v is None else v.etag,
        "last_modified": None if v is None else v.last_modified,
        "ranges": [list(r) for r in index.ranges],
    }
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    return json.dumps({"body": body, "sha256": digest}, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def decode(raw: bytes) -> Index:
    """The index in ``raw``; CorruptIndex if it is torn, edited, of another format or
    inconsistent (ranges outside the resource, a data file name that is not ours)."""
    if len(raw) > MAX_INDEX_BYTES:
        raise CorruptIndex(f"{len(raw)} bytes, more than an index holds")
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or set(doc) != {"body", "sha256"} or not isinstance(doc["body"], dict):
            raise CorruptIndex("not an index object")
        body = doc["body"]
        checksum = hashlib.sha256(_canonical(body)).hexdigest()
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptIndex(f"not JSON ({exc})") from None
    except RecursionError:  # nested deeper than the interpreter's stack: no index of ours
        raise CorruptIndex("not JSON (nested too deep)") from None
    if checksum != doc["sha256"]:
        raise CorruptIndex("checksum mismatch")
    if body.get("format") != FORMAT:
        raise CorruptIndex(f"format {body.get('format')!r}, expected {FORMAT}")
    generation = _field(body, "generation", str, optional=True)
    size = _field(body, "size", int, optional=True)
    index = Index(url=_field(body, "url", str), key=_field(body, "key", str))
    if generation is None or size is None:
        if generation is not None or size is not None or body.get("ranges"):
            raise CorruptIndex("ranges or size without a generation")
        return index
    if not _GENERATION.match(generation) or size < 0:
        raise CorruptIndex("bad generation or size")
    etag = _field(body, "etag", str, optional=True)
    validators = Validators(size, etag, _field(body, "last_modified", str, optional=True))
    ranges = _ranges(body.get("ranges"), size)
    return Index(index.url, index.key, generation, validators, ranges)


def _field(body: Dict[str, Any], name: str, kind: type, optional: bool = False) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if (
        not isinstance(value, kind)
        or isinstance(value, bool)
        or (isinstance(value, str) and not _encodable(name, value))
    ):
        raise CorruptIndex(f"bad {name!r}")
    return value


def _encodable(name: str, text: str) -> bool:
    """Strings go back out: URLs as UTF-8 (listings), validators in HTTP headers (Latin-1).
    JSON can spell what neither can (lone surrogates, ``\\u0100`` in an ETag)."""
    try:
        text.encode("latin-1" if name in ("etag", "last_modified") else "utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ranges(value: Any, size: int) -> Tuple[Interval, ...]:
    """Sorted, disjoint, non-adjacent ``[start, end)`` pairs inside ``[0, size]``, as
    ``RangeSet`` writes them."""
    if not isinstance(value, list):
        raise CorruptIndex("bad 'ranges'")
    out: List[Interval] = []
    previous_end = -1
    for pair in value:
        ok = isinstance(pair, list) and len(pair) == 2 and all(type(x) is int for x in pair)
        if not ok or not previous_end < pair[0] < pair[1] <= size:
            raise CorruptIndex(f"bad range {pair!r}")
        out.append((pair[0], pair[1]))
        previous_end = pair[1]
    return tuple(out)


def read_index(directory: Path) -> Optional[Index]:
    """The entry's index, None if it has none; CorruptIndex if it cannot be trusted."""
    try:
        with open(directory / INDEX_NAME, "rb") as file:
            raw = file.read(MAX_INDEX_BYTES + 1)
    except FileNotFoundError:
        return None
    return decode(raw)


def trusted_index(directory: Path, key: str) -> Optional[Index]:
    """The entry's index, None if it has none; CorruptIndex if it cannot be trusted: torn or
    edited, of another key, or naming a data file that is missing or of the wrong length.
    The caller holds the entry's filelock (no reset is swapping data files meanwhile)."""
    index = read_index(directory)
    if index is None:
        return None
    if index.key != key:
        raise CorruptIndex(f"key {index.key!r} is not {key!r}")
    if index.data_name is None or index.validators is None:
        return index
    try:
        length = os.stat(directory / index.data_name).st_size
    except FileNotFoundError:
        raise CorruptIndex(f"data file {index.data_name} is missing") from None
    if length != index.validators.size:
        raise CorruptIndex(f"data file {index.data_name} has {length} bytes, expected {index.validators.size}")
    return index


def write_index(directory: Path, index: Index) -> None:
    """Replace the entry's index atomically and durably. The caller holds the entry's filelock."""
    tmp = directory / f"{TMP_PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
    raw = encode(index)
    fd = create_private(tmp, os.O_WRONLY | os.O_EXCL)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, directory / INDEX_NAME)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def remove_orphans(directory: Path, keep_data: Optional[str]) -> List[str]:
    """Delete temporary index files and data files other than ``keep_data`` (left by a crash
    or by a reset); returns their names. The caller holds the entry's filelock, so no commit
    or reset is writing them right now."""
    removed = []
    for path in directory.iterdir():
        name = path.name
        stray_data = name.startswith(DATA_PREFIX) and name != keep_data
        if name.startswith(TMP_PREFIX) or stray_data:
            path.unlink(missing_ok=True)
            removed.append(name)
    return removed
