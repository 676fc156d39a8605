"""HTTP servers for the tests: stdlib (no ranges), a configurable ranged server, nginx."""

from ._base import REGISTRY, THREAD_PREFIX, RequestRecord
from .nginx import NginxServer
from .ranged import RangedServer
from .stdlib import StdlibServer

__all__ = [
    "REGISTRY",
    "THREAD_PREFIX",
    "NginxServer",
    "RangedServer",
    "RequestRecord",
    "StdlibServer",
]
