"""Audio outputs for tests on machines without a sound card.

- :class:`ManualOutput`: a ``Player(output=...)`` device the test drives block by block
  (deterministic, in-process, no PortAudio); :func:`pull_all` drives one to the end.
- :class:`JackServer`: a private ``jackd`` with the dummy driver (a real-time clock) and two
  loopback ports, so what a client plays to the ``loopback`` device can be recorded bit-exact
  from the same device.
- :func:`alsa_config`: an ``ALSA_CONFIG_PATH`` file whose default PCM is the null device
  (not real time: it consumes as fast as it is fed).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import pytest


class _Flags:
    output_underflow = False

    def __bool__(self) -> bool:
        return False


class ManualOutput:
    """A device that plays only when the test calls :meth:`pull`."""

    class CallbackStop(Exception):
        pass

    def __init__(
        self,
        *,
        samplerate: int,
        channels: int,
        blocksize: int,
        callback: Callable[..., None],
        finished_callback: Callable[[], None],
    ) -> None:
        self.samplerate = samplerate
        self.channels = channels
        self.blocksize = blocksize or 512
        self._callback = callback
        self._finished_callback = finished_callback
        self.started = False
        self.finished = False
        self.closed = False

    def start(self) -> None:
        self.started = True

    def pull(self, frames: Optional[int] = None) -> np.ndarray:
        """One device period: the frames the player handed over (zeros once finished)."""
        assert self.started and not self.closed
        out = np.full((frames or self.blocksize, self.channels), np.nan, dtype=np.float32)
        if self.finished:
            out.fill(0)
            return out
        try:
            self._callback(out, len(out), None, _Flags())
        except self.CallbackStop:
            self._finish()
        assert not np.isnan(out).any(), "the callback left frames unwritten"
        return out

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._finished_callback()

    def abort(self) -> None:
        self._finish()

    def close(self) -> None:
        self._finish()
        self.closed = True


def pull_all(player: Any, output: "ManualOutput", limit: int) -> np.ndarray:
    """Pull device blocks, each only once the ring is ready, until the player finishes
    (at most ``limit`` blocks)."""
    blocks = []
    for _ in range(limit):
        if output.finished:
            break
        assert player.wait_ready(10)
        blocks.append(output.pull())
    assert output.finished, "playback did not finish"
    return np.concatenate(blocks)


class ManualOutputs(list):
    """A ``Player(output=...)`` factory that remembers the outputs it made."""

    def __call__(self, **kwargs: Any) -> ManualOutput:
        output = ManualOutput(**kwargs)
        self.append(output)
        return output


# -- JACK ------------------------------------------------------------------------------------


def jack_missing() -> Optional[str]:
    """Why JACK tests cannot run here, or None."""
    for tool in ("jackd", "jack_wait"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install --no-install-recommends jackd2)"
    return None


class JackServer:
    """``jackd -n NAME -L 2 -d dummy``: started by ``start()``, stopped and reaped by ``stop()``."""

    def __init__(self, name: str, samplerate: int = 44100, period: int = 1024) -> None:
        self.name = name
        self.samplerate = samplerate
        self.period = period
        self._proc: Optional[subprocess.Popen] = None
        self._log = b""

    @property
    def env(self) -> Dict[str, str]:
        """Environment for a client process: this server, never an auto-started one."""
        return {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def start(self, timeout: float = 10.0) -> "JackServer":
        cmd = [
            "jackd", "-n", self.name, "-L", "2", "-d", "dummy",
            "-r", str(self.samplerate), "-p", str(self.period), "-C", "2", "-P", "2",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        wait = subprocess.run(
            ["jack_wait", "-s", self.name, "-w", "-t", str(int(timeout))],
            capture_output=True,
            timeout=timeout + 5,
            env={**os.environ, **self.env},
        )
        if wait.returncode != 0 or self._proc.poll() is not None:
            output = self.stop()
            raise RuntimeError(f"jackd did not start: {output.decode(errors='replace')[-2000:]}")
        return self

    def stop(self, timeout: float = 10.0) -> bytes:
        """Terminate jackd (kill if it does not exit in ``timeout``); returns its output."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self._log
        if proc.poll() is None:
            proc.terminate()
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=timeout)
        self._log = out or b""
        return self._log

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- ALSA ------------------------------------------------------------------------------------

ALSA_SYSTEM_CONFIG = Path("/usr/share/alsa/alsa.conf")


def alsa_config(directory: Path, kind: str = "null") -> Path:
    """Write an ALSA configuration whose default PCM is the null device (it discards, and
    consumes as fast as it is fed: not real time), for ``ALSA_CONFIG_PATH``."""
    if kind != "null":
        raise ValueError(kind)
    path = directory / "alsa-null.conf"
    path.write_text(f"<{ALSA_SYSTEM_CONFIG}>\npcm.!default {{ type null }}\n")
    return path


@pytest.fixture(scope="module")
def jack() -> Iterator[JackServer]:
    """A private JACK dummy server for this test module; skips when jackd is not installed."""
    reason = jack_missing()
    if reason:
        pytest.skip(reason)
    # A 2048-frame period (46 ms): the callback thread shares the GIL with the whole test
    # process, and a missed 23 ms deadline is a JACK xrun that drops frames from the capture.
    with JackServer(f"kithara-test-{os.getpid()}-{next(_jack_ids)}", period=2048) as server:
        yield server


_jack_ids = itertools.count(1)
