"""What the fuzz tests share: the two run modes, the corpus, byte-level mutation, and a
per-call bound on CPU time.

Modes (environment variable ``KITHARA_FUZZ``):

- unset or ``ci``: the short run of ``make test`` (``CI_EXAMPLES`` examples per target,
  the whole package in well under a minute);
- ``long``: ``LONG_EXAMPLES`` examples per target and no test timeout, run by hand:
  ``KITHARA_FUZZ=long .venv/bin/python -m pytest tests/fuzz -q``.
  ``KITHARA_FUZZ_EXAMPLES=N`` sets the number of examples of either mode.

Hypothesis keeps every failing example in ``.hypothesis/`` and replays it first on the next
run; a failure prints the example (and ``@reproduce_failure``) to turn into an ``@example``.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")

MODE = os.environ.get("KITHARA_FUZZ", "ci").strip().lower() or "ci"
if MODE not in ("ci", "long"):
    raise RuntimeError(f"KITHARA_FUZZ must be 'ci' or 'long', not {MODE!r}")
LONG = MODE == "long"
CI_EXAMPLES = 120
LONG_EXAMPLES = 50_000
EXAMPLES = int(os.environ.get("KITHARA_FUZZ_EXAMPLES", LONG_EXAMPLES if LONG else CI_EXAMPLES))

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("kithara-fuzz-ci", max_examples=EXAMPLES, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile(
    "kithara-fuzz-long", max_examples=EXAMPLES, deadline=None, suppress_health_check=_HEALTH, report_multiple_bugs=True
)
#: The settings of every fuzz test (applied per test: the global profile stays untouched).
FUZZ = settings.get_profile(f"kithara-fuzz-{MODE}")
#: Fewer examples where each one is a request to a local server.
NETWORK = settings(FUZZ, max_examples=max(1, EXAMPLES // 8))
#: The pytest timeout of a fuzz test in this mode.
TIMEOUT = pytest.mark.timeout(24 * 3600 if LONG else 120)

#: CPU seconds one parser call may take (parsers are pure: a hang is a loop).
CALL_CPU = 2.0

CORPUS = Path(__file__).resolve().parent / "corpus"


def corpus(target: str) -> Dict[str, bytes]:
    """File name -> bytes of ``corpus/<target>/``."""
    return {p.name: p.read_bytes() for p in sorted((CORPUS / target).iterdir()) if p.is_file()}


def corpus_lines(target: str) -> List[str]:
    """Every line of every file of ``corpus/<target>/`` (header values, one per line)."""
    return [line for data in corpus(target).values() for line in data.decode("latin-1").splitlines()]


class TooSlow(Exception):
    """A parser call ran past :data:`CALL_CPU` seconds of CPU."""


def _alarm(signum, frame):
    raise TooSlow(f"a parser call used more than {CALL_CPU} s of CPU")


@contextmanager
def cpu_bound(seconds: float = CALL_CPU) -> Iterator[None]:
    """Interrupt the block (raising TooSlow) once the process has spent ``seconds`` of CPU in
    it: ``ITIMER_VIRTUAL``/``SIGVTALRM``, so neither a loaded machine's waits nor
    pytest-timeout's ``SIGALRM`` interfere. Also fails a call that finished but took longer."""
    previous = signal.signal(signal.SIGVTALRM, _alarm)
    started = time.process_time()
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
    spent = time.process_time() - started
    if spent > seconds:
        raise TooSlow(f"a parser call used {spent:.2f} s of CPU (bound {seconds} s)")


def outcome(call: Callable[[], T], allowed: Tuple[type, ...]) -> Tuple[object, object]:
    """``(value, None)`` or ``(None, error)`` for an error of an ``allowed`` class; any other
    exception (or a call past the CPU bound) propagates and fails the test."""
    with cpu_bound():
        try:
            return call(), None
        except allowed as exc:
            return None, exc


# -- byte-level mutation of corpus items, as AFL/libFuzzer mutators do ------------------------

_BYTES = st.binary(min_size=1, max_size=16)


@st.composite
def mutated(draw, seeds: Sequence[bytes], tokens: Sequence[bytes] = (), max_size: int = 16 * 1024) -> bytes:
    """A seed with 0-8 random edits: overwrite, insert, delete or repeat a span, splice in a
    piece of another seed, insert a dictionary token. Bounded by ``max_size``."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    pool = list(tokens) or [b"\x00"]
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["set", "insert", "delete", "repeat", "splice", "token"]))
        pos = draw(st.integers(0, len(data)))
        if op == "set" and data:
            pos = min(pos, len(data) - 1)
            data[pos : pos + 1] = draw(st.binary(min_size=1, max_size=1))
        elif op == "insert":
            data[pos:pos] = draw(_BYTES)
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "repeat":
            span = bytes(data[pos : pos + draw(st.integers(1, 256))])
            data[pos:pos] = span * draw(st.integers(1, 16))
        elif op == "splice":
            other = draw(st.sampled_from(list(seeds)))
            start = draw(st.integers(0, len(other)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 512))]
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(pool))
        del data[max_size:]
    return bytes(data)


def latin1(data: bytes) -> str:
    """Bytes as an HTTP client hands header text over (http.client decodes ISO-8859-1)."""
    return data.decode("latin-1")
