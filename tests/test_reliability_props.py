"""Issue #5 "Reliability", at scale: random faults x random seek/read sequences (hypothesis),
and a soak of 20 concurrent streams under random faults that must leave nothing behind.

Properties:
- survivable faults only: every read returns exactly the bytes of the local file;
- permanent faults mixed in: every read returns exactly the right bytes or raises a
  StreamError of a type one of the injected faults explains, and the failure then sticks;
- whatever happens, no thread or socket outlives the streams (``no_leaks``).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import kithara_io
from kithara_io import (
    HTTPStatusError,
    InvalidResponseError,
    ResourceChangedError,
    Retry,
    StreamError,
    Timeout,
)
from tests.servers.faults import (
    ChangedETag,
    ChangedLength,
    Chunked,
    Disconnect,
    FaultServer,
    Gzip,
    HtmlPage,
    IgnoreRange,
    Latency,
    NoContentLength,
    NoContentRange,
    Reset,
    Stall,
    Status,
    Truncate,
    WrongContentRange,
    running_fault_server,
)

KiB = 1024
MiB = 1024 * KiB
READ_TIMEOUT = 0.5  # 0.2 s once timed out without a fault under CI load: one retry more than faults
SILENCE = 5.0  # a stall far longer than READ_TIMEOUT: only a timeout gets past it

_paths = itertools.count(1)


@pytest.fixture(scope="module")
def shared_srv():
    """One server for all examples (each example gets its own path, hence its own script).
    Module-scoped, so it exists before ``no_leaks`` looks and its sockets are told apart."""
    with running_fault_server() as server:
        yield server


@pytest.fixture(scope="module")
def random_bin(media) -> bytes:
    return media["random.bin"].read_bytes()


def fresh_path(srv: FaultServer, data: bytes, suffix: str = ".bin") -> Tuple[str, str]:
    path = f"/p{next(_paths)}{suffix}"
    return path, srv.add(path, data)


def close_quietly(f) -> None:
    with contextlib.suppress(StreamError):
        f.close()


# -- strategies --------------------------------------------------------------------------------

offsets = st.integers(0, 200_000)

fast_survivable = st.one_of(
    st.builds(Reset, offsets),
    st.builds(Truncate, offsets),
    st.builds(Status, st.sampled_from([408, 429, 500, 502, 503, 504])),
    st.builds(Status, st.just(503), retry_after=st.just("0")),
    st.sampled_from([Disconnect(), Disconnect(rst=True), Chunked(), NoContentLength(), HtmlPage(503), None]),
    st.tuples(st.just(Chunked()), st.builds(Truncate, offsets)),
    st.tuples(st.just(NoContentLength()), st.builds(Truncate, offsets)),
    st.tuples(st.just(Latency(0.01)), st.builds(Reset, offsets)),
)
slow_survivable = st.one_of(st.builds(Stall, st.just(SILENCE), offsets), st.just(Latency(SILENCE)))


@st.composite
def survivable_scripts(draw) -> list:
    script = draw(st.lists(fast_survivable, max_size=8))
    for _ in range(draw(st.integers(0, 1))):  # each silent one costs READ_TIMEOUT
        script.insert(draw(st.integers(0, len(script))), draw(slow_survivable))
    return script


# Permanent fault, and the error types it may explain (a list: Status is not hashable).
PERMANENT: List[Tuple[object, Tuple[type, ...]]] = [
    (Status(404), (HTTPStatusError,)),
    (Status(403), (HTTPStatusError,)),
    (Gzip(), (InvalidResponseError,)),
    (WrongContentRange(1), (InvalidResponseError,)),
    (NoContentRange(), (InvalidResponseError,)),
    (ChangedETag(), (ResourceChangedError,)),
    (ChangedLength(8 * MiB + 1), (ResourceChangedError,)),
    (HtmlPage(200), (ResourceChangedError, InvalidResponseError)),
    (IgnoreRange(), (ResourceChangedError, InvalidResponseError)),
]


def explained_by(script: list) -> Tuple[type, ...]:
    """The error types the permanent faults of ``script`` can explain."""
    return tuple({t for fault in script for known, types in PERMANENT if fault == known for t in types})


@st.composite
def options(draw) -> dict:
    min_fetch = draw(st.sampled_from([16 * KiB, 64 * KiB]))
    max_fetch = draw(st.sampled_from([64 * KiB, 512 * KiB, 1 * MiB]))
    return dict(
        chunk=draw(st.sampled_from([4 * KiB, 64 * KiB, 256 * KiB])),
        min_fetch=min_fetch,
        max_fetch=max(min_fetch, max_fetch),
        first_fetch=draw(st.sampled_from([16 * KiB, 64 * KiB])),
        read_ahead=draw(st.sampled_from([64 * KiB, 1 * MiB])),
        max_outstanding=draw(st.integers(1, 3)),
        tail=draw(st.sampled_from([0, 64 * KiB])),
        cache_budget=draw(st.sampled_from([None, 2 * MiB])),
    )


SIZE = 8 * MiB
# (position or None for "go on from here", read size)
ops = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, SIZE + 1000), st.integers(SIZE - 100_000, SIZE)), st.integers(0, 300_000)),
    min_size=1,
    max_size=10,
)

HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run_ops(f, data: bytes, steps) -> None:
    pos = 0
    for target, size in steps:
        if target is not None:
            assert f.seek(target) == target
            pos = target
        got = f.read(size)
        want = data[pos : pos + size]
        assert len(got) == len(want), (pos, size, len(got))
        assert got == want, f"wrong bytes at {pos}"
        pos += len(got)
        assert f.tell() == pos


def drain(f, data: bytes, srv: FaultServer, path: str, step: int = 256 * KiB) -> None:
    """Read on sequentially (wrapping to 0 at the end) until every scripted fault has been
    handed to a request, so each example meets its faults. Bounded: two passes at most."""
    for _ in range(2 * len(data) // step + 2):
        if srv.pending(path) == 0:
            return
        pos = f.tell()
        if pos >= len(data):
            pos = f.seek(0)
        got = f.read(step)
        assert got == data[pos : pos + step], f"wrong bytes at {pos}"


# -- hypothesis: survivable faults, exact bytes ------------------------------------------------


@pytest.mark.timeout(120)
@HYPOTHESIS
@given(script=survivable_scripts(), opts=options(), steps=ops)
def test_random_survivable_faults_random_reads_exact(shared_srv, random_bin, no_leaks, script, opts, steps):
    path, url = fresh_path(shared_srv, random_bin)
    shared_srv.script(path, script)
    retry = Retry(attempts=len(script) + 2, backoff=0.002, max_backoff=0.01)
    f = kithara_io.open(url, retry=retry, timeout=Timeout(connect=2, read=READ_TIMEOUT), **opts)
    try:
        run_ops(f, random_bin, steps)
        drain(f, random_bin, shared_srv, path)
        assert f.error is None
    finally:
        f.close()  # raises a stored failure: none is allowed here
    stats = f.stats()
    assert stats.retries <= len(script)
    consumed = len(script) - shared_srv.pending(path)
    event(f"faults consumed: {'none' if consumed == 0 else 'some' if consumed < len(script) else 'all'}")
    event(f"retries: {min(stats.retries, 3)}{'+' if stats.retries >= 3 else ''}")


# -- hypothesis: permanent faults mixed in, never a wrong byte ------------------------------------


@st.composite
def mixed_scripts(draw) -> list:
    script = draw(st.lists(st.one_of(fast_survivable, st.sampled_from([fault for fault, _ in PERMANENT])), max_size=8))
    return [None] + script  # request 1 (open, no tail probe) is normal: see test_reliability


@pytest.mark.timeout(120)
@HYPOTHESIS
@given(script=mixed_scripts(), opts=options(), steps=ops)
def test_random_faults_never_yield_wrong_bytes(shared_srv, random_bin, no_leaks, script, opts, steps):
    path, url = fresh_path(shared_srv, random_bin)
    shared_srv.script(path, script)
    explained = explained_by(script)
    retry = Retry(attempts=len(script) + 2, backoff=0.002, max_backoff=0.01)
    opts = dict(opts, tail=0)
    started = time.monotonic()
    f = kithara_io.open(url, retry=retry, timeout=Timeout(connect=2, read=READ_TIMEOUT), **opts)
    try:
        try:
            run_ops(f, random_bin, steps)
            drain(f, random_bin, shared_srv, path)
        except StreamError as exc:
            event(f"failed: {type(exc).__name__}")
            assert explained and isinstance(exc, explained), (exc, script)
            assert type(f.error) is type(exc) and str(f.error) == str(exc)
            with pytest.raises(type(exc)):
                f.read(1)  # the failure sticks
        else:
            event("all reads exact" if f.error is None else "failed after the last read")
            if f.error is not None:  # failed in the background, after the last read
                assert explained and isinstance(f.error, explained), (f.error, script)
    finally:
        close_quietly(f)
    assert time.monotonic() - started < 30


# -- soak: 20 streams x random faults, nothing left behind --------------------------------------

AUDIO = ["tone.wav", "tone.flac", "tone.ogg", "tone.mp3"]
SOAK_STREAMS = 20
SOAK_SEED = 20251125


def soak_plan(rng: random.Random) -> List[dict]:
    """Per stream: the resource, its script, an 'always' fault, and the expected error."""
    survivable = [
        lambda: Reset(rng.randrange(0, 100_000)),
        lambda: Truncate(rng.randrange(0, 100_000)),
        lambda: Stall(SILENCE, rng.randrange(0, 50_000)),
        lambda: Latency(SILENCE),
        lambda: Status(rng.choice([408, 429, 500, 502, 503, 504])),
        lambda: Disconnect(rst=rng.random() < 0.5),
        lambda: (Chunked(), Truncate(rng.randrange(0, 100_000))),
        lambda: NoContentLength(),
        lambda: None,
    ]
    permanent = [
        (Status(404), HTTPStatusError),
        (ChangedETag(), ResourceChangedError),
        (Gzip(), InvalidResponseError),
        (Reset(0), StreamError),  # no progress, ever: gives up after the attempts
    ]
    plans = []
    for i in range(SOAK_STREAMS):
        if i % 5 == 4:
            fault, error = permanent[(i // 5) % len(permanent)]
            plans.append(dict(name="random.bin", script=[None], always=fault, error=error))
        else:
            script = [rng.choice(survivable)() for _ in range(rng.randrange(2, 7))]
            plans.append(dict(name=AUDIO[i % len(AUDIO)], script=script, always=None, error=None))
    return plans


@pytest.mark.timeout(90)
def test_soak_20_streams_random_faults_no_leaks(shared_srv, media, no_leaks):
    rng = random.Random(SOAK_SEED)
    plans = soak_plan(rng)
    files = {name: media[name].read_bytes() for name in AUDIO + ["random.bin"]}
    files["random.bin"] = files["random.bin"][: 2 * MiB]
    expected = {name: sf.read(media[name], dtype="int16")[0] for name in AUDIO}
    results: List[Optional[BaseException]] = [None] * len(plans)
    outcome: Dict[int, str] = {}
    start_line = threading.Barrier(len(plans), timeout=30)

    def one(i: int, plan: dict) -> None:
        path, url = fresh_path(shared_srv, files[plan["name"]], "-" + plan["name"])
        shared_srv.script(path, plan["script"])
        if plan["always"] is not None:
            shared_srv.always(path, plan["always"])
        attempts = len(plan["script"]) + 2
        opts = dict(
            retry=Retry(attempts=attempts, backoff=0.005, max_backoff=0.02),
            timeout=Timeout(connect=2, read=READ_TIMEOUT),
            min_fetch=32 * KiB,
            max_fetch=256 * KiB,
            priority="high" if i % 2 else "low",
        )
        start_line.wait()
        try:
            if plan["error"] is None:
                with kithara_io.open(url, **opts) as f:
                    got, _ = sf.read(f, dtype="int16")
                    assert f.error is None, f.error
                np.testing.assert_array_equal(got, expected[plan["name"]])
                outcome[i] = "exact"
            else:
                data = files[plan["name"]]
                f = kithara_io.open(url, **dict(opts, tail=0))
                try:
                    with pytest.raises(plan["error"]):
                        for pos in range(0, len(data) + 1, 128 * KiB):
                            assert f.read(128 * KiB) == data[pos : pos + 128 * KiB]
                finally:
                    close_quietly(f)
                outcome[i] = type(f.error).__name__
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i, p), name=f"soak-{i}") for i, p in enumerate(plans)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a stream hung"
    failures = {i: (plans[i], repr(exc)) for i, exc in enumerate(results) if exc is not None}
    assert not failures, failures
    assert len(outcome) == len(plans)
    assert sum(1 for v in outcome.values() if v == "exact") == sum(1 for p in plans if p["error"] is None)
    assert not [t for t in threading.enumerate() if t.name.startswith("kithara-fetch")]
