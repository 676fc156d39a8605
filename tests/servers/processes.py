"""Stopping a server that runs as a child process in its own session (nginx, Icecast, the
system and application servers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Optional


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
