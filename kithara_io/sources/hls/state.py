"""What the HlsReader's parts share: its state and the methods one part calls on another.

``HlsReader`` is assembled from mixins (:mod:`.switching`, :mod:`.live`, :mod:`.window`,
:mod:`.jobs`) that work on one object. Each derives from :class:`ReaderState`, which declares
the attributes ``HlsReader.__init__`` sets and the methods defined in another part, so a type
checker sees one object. Declarations only: nothing here runs.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Dict, List, Optional, Set, Tuple

if TYPE_CHECKING:
    from ...engine.downloader import Downloader
    from ...errors import StreamError
    from ...events import Event, EventBus
    from ...options import StreamOptions
    from ...reading.planning import Priority
    from .abr import ThroughputEstimator
    from .fetch import PartFetcher
    from .jobs import Job
    from .keys import KeyStore
    from .kind import PlaylistKind
    from .live import LiveWatcher
    from .plan import PartKey, Plan
    from .playlist import MediaPlaylist, Rendition, Variant
    from .start import Start
    from .store import PartData
    from .transport import Transport


class ReaderState:
    """The HlsReader's attributes (guarded by ``_cond``: see :mod:`.reader`)."""

    url: str
    events: EventBus
    start: Start
    renditions: Tuple[Rendition, ...]
    reading: Tuple[Optional[Rendition], ...]
    _variants: Tuple[Variant, ...]
    _transport: Transport
    _downloader: Downloader
    _opt: StreamOptions
    _priority: Priority
    _cond: threading.Condition
    _auto: bool
    _estimator: ThroughputEstimator
    _plan: Plan
    _data: Dict[PartKey, PartData]
    _jobs: Dict[int, Job]
    _cursor_part: int
    _last_end: int
    _sequential: bool
    _run: int
    _size_waiters: int
    _closed: bool
    _interrupt: bool
    _stalled: Optional[StreamError]
    _error: Optional[BaseException]
    _pending: List[Event]
    _counts: Dict[str, float]
    _keys: KeyStore
    _fetcher: PartFetcher
    _kind: PlaylistKind
    _ended: bool
    _restartable: bool
    _announced: Set[int]
    _watcher: Optional[LiveWatcher]

    if TYPE_CHECKING:  # defined by one part, called by another

        def add_media(self, index: int, playlist: MediaPlaylist) -> None: ...
        def _load_media(self, index: int) -> MediaPlaylist: ...
        def _check_usable_locked(self) -> None: ...
        def _schedule_locked(self) -> None: ...
        def _fail_locked(self, error: Optional[BaseException]) -> None: ...
        def _flush_events(self) -> None: ...
        def _active(self) -> List[Job]: ...
        def _submit_locked(
            self, key: PartKey, start: int, end: Optional[int], kind: str, priority: Priority
        ) -> None: ...
        def live_offset_of(self, seconds: float) -> int: ...
