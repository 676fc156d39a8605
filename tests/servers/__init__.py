"""HTTP servers for the tests: stdlib (no ranges), a configurable ranged server, nginx (and nginx
serving every file chunked, without a length or ranges)."""

from ._base import REGISTRY, THREAD_PREFIX, RequestRecord
from .nginx import ChunkedNginxServer, NginxServer
from .ranged import RangedServer
from .stdlib import StdlibServer

__all__ = [
    "REGISTRY",
    "THREAD_PREFIX",
    "ChunkedNginxServer",
    "NginxServer",
    "RangedServer",
    "RequestRecord",
    "StdlibServer",
]
