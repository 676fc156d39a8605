"""Object store URLs inside ``kithara::`` URLs (``kithara::s3://bucket/key``).

To split a chained URL, fsspec looks up the class of every protocol in it, the inner one
too, although only the outer filesystem (kithara) is made: without s3fs, gcsfs or adlfs
that lookup fails ("Install s3fs to access S3"). :func:`register` fills the gap for each
store protocol whose own package is missing with a class that splits the URL and does
nothing else: made directly (``fsspec.open("s3://...")``), it raises fsspec's own
ImportError as before. A protocol whose package is installed is left alone.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from fsspec import AbstractFileSystem, register_implementation
from fsspec.registry import known_implementations

from .sources.stores import KINDS


class StoreName(AbstractFileSystem):
    """The name of a store protocol, for fsspec's chained URLs only."""

    protocol: Any = ()
    missing = "the package of this protocol"

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return path  # the whole store URL goes to kithara

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ImportError(self.missing)


def register() -> None:
    """Register :class:`StoreName` for each store protocol whose package is not installed."""
    for protocol in KINDS:
        known = known_implementations.get(protocol)
        if known is None or importlib.util.find_spec(known["class"].split(".")[0]) is not None:
            continue
        cls = type(f"StoreName_{protocol}", (StoreName,), {"protocol": (protocol,), "missing": known.get("err", "")})
        register_implementation(protocol, cls, clobber=False)
