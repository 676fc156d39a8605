"""A persistent, cross-process disk cache of remote resources' bytes (issue #7).

    cache = DiskCache()                      # platformdirs.user_cache_dir("kithara-io")
    with cache.open_entry(url) as entry:
        if entry.validators() != server_validators:
            entry.reset(server_validators)   # new or changed: start empty; on disk already: join
        entry.write(pos, data)               # fetch threads, disjoint ranges
        entry.commit()                       # durable, then present
        entry.read_into(pos, out)            # present bytes only

Modules: ``files`` (POSIX primitives, in-use flock), ``index`` (the checksummed index file,
atomic replace), ``entry`` (CacheEntry: threads, commits, versions), ``store`` (DiskCache:
layout, listing, LRU eviction).
"""

from .entry import CacheEntry
from .index import Validators
from .store import DiskCache, EntryInfo, default_disk_cache, plan_eviction

__all__ = ["DiskCache", "CacheEntry", "EntryInfo", "Validators", "default_disk_cache", "plan_eviction"]
