"""Servers that run as child processes in their own sessions (nginx, Icecast, the system and
application servers, the caches and proxies): probing one, stopping one."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import tempfile
import threading
from typing import TYPE_CHECKING, Optional, TypeVar

if TYPE_CHECKING:
    from .tls import TlsFiles


def head(port: int, timeout: float, tls: "Optional[TlsFiles]" = None) -> http.client.HTTPResponse:
    """One ``HEAD /`` to 127.0.0.1:``port`` (https, trusting ``tls``'s CA, when given): the
    answer, read to its end (its status and headers stay readable). Raises OSError (or an
    ``http.client.HTTPException``) when nothing answers."""
    if tls is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=tls.client_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("HEAD", "/")
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def stop_process(proc: "Optional[subprocess.Popen[bytes]]", timeout: float) -> None:
    """Terminate ``proc`` and wait; kill its process group if it lingers past ``timeout`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


_C = TypeVar("_C", bound="ChildServer")


class ChildServer:
    """What a server run as a child process shares: ``stop()`` (the process, then its private
    directory; idempotent, from any thread) and the context manager. Set by subclasses:
    ``_proc``, ``_tmp`` (a ``TemporaryDirectory``), ``_stop_lock``, ``_stopped``."""

    _proc: "Optional[subprocess.Popen[bytes]]"
    _tmp: tempfile.TemporaryDirectory
    _stop_lock: threading.Lock
    _stopped: bool

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process, kill its group if it lingers, remove the directory."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            stop_process(self._proc, timeout)
            self._tmp.cleanup()

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
