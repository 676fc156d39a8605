"""``kithara-io cache ls|size|clear``: list, measure or clear the disk cache."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, TextIO

from ..disk import EntryInfo
from ..disk.store import default_path
from .common import _disk_cache
from .progress import format_bytes


def _cache(args: argparse.Namespace, out: TextIO) -> int:
    root = Path(args.cache_dir) if args.cache_dir else default_path()
    # Listing, measuring or clearing a cache that does not exist must not create it.
    cache = _disk_cache(args.cache_dir) if root.exists() else None
    entries = sorted(cache.entries(), key=lambda e: e.last_used, reverse=True) if cache else []
    if args.action == "ls":
        if args.json:
            out.write(json.dumps([_entry_json(e) for e in entries]) + "\n")
        elif not entries:
            out.write(f"cache is empty ({root})\n")
        else:
            out.writelines(_entry_line(e) + "\n" for e in entries)
    elif args.action == "size":
        total = sum(e.bytes_present for e in entries)
        out.write(f"{format_bytes(total)} ({total} bytes) in {_count(len(entries), 'entry', 'entries')}, {root}\n")
    else:
        removed = cache.clear() if cache else 0
        kept = len(cache.entries()) if cache else 0
        out.write(f"removed {_count(removed, 'entry', 'entries')}" + (f"; {kept} in use kept" if kept else "") + "\n")
    return 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _entry_json(entry: EntryInfo) -> Dict[str, Any]:
    return {
        "url": entry.url,
        "key": entry.key,
        "path": str(entry.path),
        "size": entry.size,
        "bytes_present": entry.bytes_present,
        "complete": entry.complete,
        "last_used": entry.last_used,
        "etag": entry.etag,
        "last_modified": entry.last_modified,
        "in_use": entry.in_use,
    }


def _entry_line(entry: EntryInfo) -> str:
    """``present / total  complete|partial  last use  URL``."""
    sizes = f"{format_bytes(entry.bytes_present):>10} / {format_bytes(entry.size):<10}"
    flag = "complete" if entry.complete else "partial "
    used = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.last_used))
    url = entry.url if entry.url is not None else f"(unreadable index: {entry.path})"
    return f"{sizes} {flag} {used}  {url}" + ("  [in use]" if entry.in_use else "")
