"""The process-wide :class:`~.downloader.Downloader` that ``open()`` uses when given none:
made on first use, made again once closed, and a forked child's own (the parent's threads
do not exist in the child)."""

from __future__ import annotations

import os
import threading
from typing import Optional

from .downloader import Downloader

_default: Optional[Downloader] = None
_default_lock = threading.Lock()
_parent_default: Optional[Downloader] = None  # in a forked child: the parent's default
_default_pid = os.getpid()


def _replace_default_in_child() -> None:
    """Once per process: a forked child gets its own default Downloader."""
    global _default, _default_lock, _parent_default, _default_pid
    if _default_pid != os.getpid():
        _default_pid = os.getpid()
        _default_lock = threading.Lock()
        _parent_default, _default = _default, None


os.register_at_fork(after_in_child=_replace_default_in_child)


def default_downloader() -> Downloader:
    """The process-wide Downloader used when ``open()`` is given none."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Downloader()
        return _default


def replacement_in_child(downloader: Downloader) -> Optional[Downloader]:
    """In a forked child: the child's own default if ``downloader`` is the parent's, else None."""
    _replace_default_in_child()
    return default_downloader() if downloader is _parent_default else None


__all__ = ["default_downloader", "replacement_in_child"]
