"""The contract of ``Stream.interrupt``, checked the same way for every kind of stream."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest


def interrupt_a_read(stream, read: Callable[[], Any], ready: Callable[[], bool], within: float, wait: float = 10) -> None:
    """Run ``read()`` in another thread; once ``ready()`` (polled, at most ``wait`` s: what
    is checked is the read at that point, so no guessed sleep), ``stream.interrupt()``: the
    read must raise InterruptedError within ``within`` s."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = read()
        except BaseException as exc:  # checked below: InterruptedError only
            outcome["error"] = exc

    reader = threading.Thread(target=run)
    reader.start()
    deadline = time.monotonic() + wait
    while not ready() and reader.is_alive() and time.monotonic() < deadline:
        reader.join(0.01)
    started = time.monotonic()
    stream.interrupt()
    reader.join(within + 10)
    assert not reader.is_alive() and isinstance(outcome.get("error"), InterruptedError), outcome
    assert time.monotonic() - started < within


def check_interrupt_wakes_a_waiting_read(stream, head: bytes, far: int, reader_waits: Callable[[], bool]) -> None:
    """On a stream whose server has stalled: a read at ``far`` blocked in another thread
    raises InterruptedError within 1 s of ``interrupt()``; the stream stays usable (``head``,
    at 0, reads as before); with nobody waiting, the next read that has to wait raises, once.
    ``reader_waits()`` tells when the read at ``far`` has started waiting."""

    def read_far() -> bytes:
        stream.seek(far)
        return stream.read(4096)

    interrupt_a_read(stream, read_far, reader_waits, within=1.0)
    stream.seek(0)
    assert stream.read(len(head)) == head  # usable: what it has reads as before
    stream.interrupt()  # nobody waits: the next read that has to wait raises, once
    stream.seek(far)
    with pytest.raises(InterruptedError):
        stream.read(4096)
