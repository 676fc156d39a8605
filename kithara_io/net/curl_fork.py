"""What a forked child does with the libcurl connections it inherited (see :mod:`.curl`).

It keeps them: libcurl's cleanup of a copy would close (and for TLS, end the session of) a
socket the parent still uses. Kept, they are still freed when the child's interpreter exits
(its finalization frees every object), so the child's copies of their sockets (ours, and
libcurl's dup of each) are pointed at a dead socket first: whatever that cleanup sends (a
TLS close_notify, which would end the parent's session) goes nowhere.
"""

from __future__ import annotations

import os
import socket
import stat
import weakref
from typing import Any, List, Protocol


class HoldsSockets(Protocol):
    def held_sockets(self) -> List[socket.socket]:
        """The sockets the connection opened and has not closed (libcurl holds a dup of each)."""


#: Every libcurl connection of this process (``track``).
LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()
_INHERITED: List[HoldsSockets] = []  # a forked child's copies: never cleaned up there


def track(conn: HoldsSockets) -> None:
    LIVE.add(conn)


def _after_fork_in_child() -> None:
    inherited: List[HoldsSockets] = list(LIVE)
    _INHERITED.extend(inherited)
    _disarm([sock for conn in inherited for sock in conn.held_sockets()])


def _disarm(sockets: List[socket.socket]) -> None:
    """Point every descriptor of this process that refers to one of ``sockets`` (the
    sockets themselves and libcurl's dups of them, found by inode) at a dead socket: one
    whose peer is closed, so a write fails and a read ends at once."""
    inodes = set()
    for sock in sockets:
        try:
            inodes.add(os.fstat(sock.fileno()).st_ino)
        except (OSError, ValueError):  # closed meanwhile
            continue
    if not inodes:
        return
    for fds in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(fds)
        except OSError:
            continue
        break
    else:
        return
    dead, peer = socket.socketpair()
    peer.close()
    try:
        for name in names:
            fd = int(name)
            try:
                st = os.fstat(fd)
            except OSError:  # (listdir's own descriptor, gone by now)
                continue
            if stat.S_ISSOCK(st.st_mode) and st.st_ino in inodes:
                os.dup2(dead.fileno(), fd, inheritable=False)
    finally:
        dead.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
