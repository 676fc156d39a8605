"""HTTP servers for the tests: stdlib (no ranges), a configurable ranged server, nginx (and nginx
serving every file chunked, without a length or ranges; nginx offering HTTP/2)."""

from ._base import REGISTRY, THREAD_PREFIX, RequestRecord
from .nginx import ChunkedNginxServer, Http2NginxServer, NginxServer
from .ranged import RangedServer
from .stdlib import StdlibServer

__all__ = [
    "REGISTRY",
    "THREAD_PREFIX",
    "ChunkedNginxServer",
    "Http2NginxServer",
    "NginxServer",
    "RangedServer",
    "RequestRecord",
    "StdlibServer",
]
