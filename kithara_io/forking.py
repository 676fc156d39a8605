"""A forked child never gets a structure caught in the middle of an update.

``os.fork()`` copies memory as it is at that instant. A structure another thread was
updating under its lock (a stream's cache: its present ranges and blocks; a disk cache
entry's committed ranges; a cookie jar) would reach the child half-updated: a range marked
present whose bytes are not all there is a wrong byte, a lock held by a thread the child
does not have is a hang. So each such structure registers here (:func:`guard`), and before a
fork the forking thread takes every registered lock, waiting for updates in progress to end;
after it, parent and child let go of them. The child's objects then replace their locks as
before (``_after_fork_in_child``), now over state that is whole.

The locks guarded are leaves (nothing holding one takes another of them), so the order they
are taken in cannot deadlock; the registry's own lock is taken last.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, List, Protocol


class Guarded(Protocol):
    def fork_lock(self) -> Any:
        """The lock guarding the state a forked child keeps (the current one: a child's
        object may have replaced it since it registered)."""


_registry_lock = threading.Lock()
_guarded: "weakref.WeakSet[Any]" = weakref.WeakSet()
_held: List[Any] = []  # the locks the forking thread took, let go of after the fork


def guard(obj: Guarded) -> None:
    """Hold ``obj.fork_lock()`` across every fork from now on, while ``obj`` lives."""
    with _registry_lock:
        _guarded.add(obj)


def _before() -> None:
    with _registry_lock:
        objs = list(_guarded)
    for obj in objs:
        lock = obj.fork_lock()
        lock.acquire()
        _held.append(lock)
    _registry_lock.acquire()  # last: guard() takes it alone, so no one waits on it holding one of those
    _held.append(_registry_lock)


def _after() -> None:
    """In the parent and in the child: the forking thread (the child's only thread) lets go."""
    while _held:
        _held.pop().release()


os.register_at_fork(before=_before, after_in_parent=_after, after_in_child=_after)


__all__ = ["Guarded", "guard"]
