"""kithara-io: open a remote audio file as a blocking, seekable binary file.

import soundfile as sf, kithara_io
with kithara_io.open("https://example.org/song.flac") as f:
    data, rate = sf.read(f)
"""

import logging as _logging
import sys as _sys

from . import forking as _forking  # noqa: F401 - first: its after-fork hook lets go of the locks before any other runs
from .aio import AsyncStream, aopen
from .api import open
from .engine.default import default_downloader
from .engine.downloader import Downloader
from .errors import (
    CertificateError,
    ConnectionFailedError,
    HTTPStatusError,
    InvalidResponseError,
    LiveWindowError,
    ResourceChangedError,
    StreamClosedError,
    StreamError,
    TlsError,
    TruncatedBodyError,
)
from .errors import (
    redacting_logger as _redacting_logger,
)
from .extras import MissingExtraError
from .options import StreamOptions
from .retry import Retry, Timeout
from .sources.hls.keyhook import HlsKeys
from .sources.live.stream import LiveStream
from .stats import StreamStats
from .stream import Stream

__version__ = "0.1.0"  # the one place: setup.cfg reads it (version = attr: ...)

# The library prints nothing itself: without a handler configured by the application, its
# warnings and errors go nowhere (not to stderr through logging's last resort).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
# No log record of any module carries a URL password (filters act per logger, not on children).
for _name in [__name__] + [m for m in list(_sys.modules) if m.startswith(__name__ + ".")]:
    _redacting_logger(_name)

__all__ = [
    "open",
    "aopen",
    "AsyncStream",
    "Stream",
    "LiveStream",
    "Downloader",
    "default_downloader",
    "StreamOptions",
    "HlsKeys",
    "StreamStats",
    "Retry",
    "Timeout",
    "StreamError",
    "HTTPStatusError",
    "ConnectionFailedError",
    "TlsError",
    "CertificateError",
    "InvalidResponseError",
    "TruncatedBodyError",
    "ResourceChangedError",
    "StreamClosedError",
    "LiveWindowError",
    "MissingExtraError",
]
