"""``kithara-io`` on a pseudo-terminal, as a user runs it in a shell: type keys, wait for text.

``shared_stderr``: stderr goes to the same terminal (what a shell shows), else to a pipe the
test can read on its own (``proc.stderr``).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent


class Terminal:
    def __init__(self, args: Sequence[str], env: Mapping[str, str], shared_stderr: bool = False) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kithara_io", *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdin=slave,
            stdout=slave,
            stderr=slave if shared_stderr else subprocess.PIPE,
        )
        os.close(slave)
        self.screen = ""
        self._seen = 0  # expect() looks only at output after its previous match

    def read_until(self, text: str, timeout: float, since: int = 0) -> bool:
        """Whether ``text`` shows on the screen (from offset ``since``) within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while text not in self.screen[since:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the program exited and its output is all read
                    chunk = b""
                if not chunk:
                    return text in self.screen[since:]
                self.screen += chunk.decode(errors="replace")
        return True

    def expect(self, text: str, timeout: float = 10.0) -> None:
        """``text`` shows after the previous match within ``timeout`` s, or the test fails."""
        assert self.read_until(text, timeout, self._seen), f"{text!r} not shown; screen: {self.screen!r}"
        self._seen = self.screen.index(text, self._seen) + len(text)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            os.close(self.master)
