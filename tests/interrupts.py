"""The contract of ``Stream.interrupt``, checked the same way for every kind of stream."""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest


def check_interrupt_wakes_a_waiting_read(stream, head: bytes, far: int, reader_waits: Callable[[], bool]) -> None:
    """On a stream whose server has stalled: a read at ``far`` blocked in another thread
    raises InterruptedError within 1 s of ``interrupt()``; the stream stays usable (``head``,
    at 0, reads as before); with nobody waiting, the next read that has to wait raises, once.
    ``reader_waits()`` tells when the read at ``far`` has started waiting."""
    outcome: dict = {}

    def read_far() -> None:
        stream.seek(far)
        try:
            outcome["data"] = stream.read(4096)
        except InterruptedError as exc:
            outcome["error"] = exc

    reader = threading.Thread(target=read_far)
    reader.start()
    # Bounded: 10 s. Waiting for the reader to block is what is checked, so poll what the
    # stream shows rather than sleep a guessed time.
    deadline = time.monotonic() + 10
    while not reader_waits() and reader.is_alive() and time.monotonic() < deadline:
        reader.join(0.01)
    started = time.monotonic()
    stream.interrupt()
    reader.join(5)
    assert not reader.is_alive() and isinstance(outcome.get("error"), InterruptedError), outcome
    assert time.monotonic() - started < 1.0
    stream.seek(0)
    assert stream.read(len(head)) == head  # usable: what it has reads as before
    stream.interrupt()  # nobody waits: the next read that has to wait raises, once
    stream.seek(far)
    with pytest.raises(InterruptedError):
        stream.read(4096)
