"""kithara-io: open a remote audio file as a blocking, seekable binary file.

    import soundfile as sf, kithara_io
    with kithara_io.open("https://example.org/song.flac") as f:
        data, rate = sf.read(f)
"""

from .api import open
from .downloader import Downloader, default_downloader
from .errors import (
    ConnectionFailedError,
    HTTPStatusError,
    InvalidResponseError,
    ResourceChangedError,
    StreamClosedError,
    StreamError,
    TruncatedBodyError,
)
from .live import LiveStream
from .options import StreamOptions
from .retry import Retry, Timeout
from .stats import StreamStats
from .stream import Stream

__version__ = "0.1.0"

__all__ = [
    "open",
    "Stream",
    "LiveStream",
    "Downloader",
    "default_downloader",
    "StreamOptions",
    "StreamStats",
    "Retry",
    "Timeout",
    "StreamError",
    "HTTPStatusError",
    "ConnectionFailedError",
    "InvalidResponseError",
    "TruncatedBodyError",
    "ResourceChangedError",
    "StreamClosedError",
]
