"""A stream opened before ``os.fork()`` works in the child (fresh Downloader threads and
connections), and the parent is unaffected (issue #18)."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import select
import signal
import sys
import threading
import time

import pytest

import kithara_io
from kithara_io.disk import DiskCache
from tests.servers.faults import Throttle

SIZE = 8 << 20
CHILD_POS, CHILD_LEN = 6 << 20, 300_000
WAIT = 30.0


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


def in_child(f, pos: int, n: int) -> bytes:
    f.seek(pos)
    got = f.read(n)
    f.close()
    return got


def fork_and_read(f, pos: int, n: int, work=in_child) -> bytes:
    """Fork; the child reads ``[pos, pos + n)`` of ``f`` (``work(f, pos, n)``) and sends
    it through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(r)
            # A child that hangs prints every thread's stack (to the test's captured stderr)
            # before the parent gives up on it and kills it.
            faulthandler.dump_traceback_later(WAIT - 5, exit=False)
            got = work(f, pos, n)
            view = memoryview(got)
            while view:
                view = view[os.write(w, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    received = bytearray()
    ended = False
    try:
        with os.fdopen(r, "rb", buffering=0) as pipe:
            while True:
                ready, _, _ = select.select([pipe], [], [], WAIT)
                assert ready, "the child hangs"
                chunk = pipe.read(1 << 20)
                if not chunk:
                    ended = True  # the child closed its end: it is exiting
                    break
                received += chunk
    finally:
        if not ended:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return bytes(received)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cached", [False, True], ids=["memory", "disk-cache"])
def test_child_reads_a_range_not_fetched_yet_while_the_parent_keeps_reading(
    fault_server, data, tmp_path, cached, no_leaks
):
    url = fault_server.add("/a.bin", data)
    # Slow enough that read-ahead fetches are running when the process forks.
    fault_server.always("/a.bin", Throttle(4_000_000))
    options = {"cache": DiskCache(tmp_path / "cache")} if cached else {}
    with kithara_io.open(url, **options) as f:
        assert f.read(100_000) == data[:100_000]
        assert not any(start <= CHILD_POS < end for start, end in f.buffered())
        got = fork_and_read(f, CHILD_POS, CHILD_LEN)
        assert got == data[CHILD_POS : CHILD_POS + CHILD_LEN]
        # The parent's fetches and connections are its own still.
        assert f.tell() == 100_000
        assert f.read() == data[100_000:]


def _mp_child(f, conn) -> None:
    conn.send_bytes(in_child(f, CHILD_POS, CHILD_LEN))
    conn.close()


@pytest.mark.timeout(60)
def test_multiprocessing_fork_context(fault_server, data, no_leaks):
    url = fault_server.add("/a.bin", data)
    ctx = multiprocessing.get_context("fork")
    with kithara_io.open(url) as f:
        assert f.read(1000) == data[:1000]
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_mp_child, args=(f, child_end))
        proc.start()
        child_end.close()
        try:
            assert parent_end.poll(WAIT), "the child hangs"
            assert parent_end.recv_bytes() == data[CHILD_POS : CHILD_POS + CHILD_LEN]
        finally:
            parent_end.close()
            proc.join(WAIT)
            if proc.is_alive():
                proc.kill()
                proc.join()
        assert proc.exitcode == 0
        f.seek(2 << 20)
        assert f.read(1 << 20) == data[2 << 20 : 3 << 20]
    proc.close()


@pytest.mark.timeout(60)
def test_a_local_file_after_fork(tmp_path, data, no_leaks):
    path = tmp_path / "a.bin"
    path.write_bytes(data)
    with kithara_io.open(str(path)) as f:
        assert f.read(10) == data[:10]
        assert fork_and_read(f, CHILD_POS, CHILD_LEN) == data[CHILD_POS : CHILD_POS + CHILD_LEN]
        assert f.read(10) == data[10:20]


@pytest.mark.timeout(60)
def test_a_stream_opened_in_the_child_uses_a_fresh_default_downloader(fault_server, data, no_leaks):
    """The parent's default Downloader (with its threads) is not the child's."""
    url = fault_server.add("/a.bin", data)
    with kithara_io.open(url) as f:  # the parent's default downloader has threads now
        assert f.read(10) == data[:10]
        parent_default = kithara_io.default_downloader()

        def fresh(g, pos, n):
            assert kithara_io.default_downloader() is not parent_default
            with kithara_io.open(url) as h:
                h.seek(pos)
                return h.read(n)

        got = fork_and_read(f, CHILD_POS, CHILD_LEN, work=fresh)
        assert got == data[CHILD_POS : CHILD_POS + CHILD_LEN]
        assert kithara_io.default_downloader() is parent_default


@pytest.mark.timeout(60)
def test_fork_with_a_live_stream_open_resets_the_others_and_prints_nothing(tmp_path, data, monkeypatch, no_leaks):
    """A live stream (a FIFO here) has no fork support: the at-fork handler leaves it alone
    instead of failing on it (a traceback on the child's stderr, and the streams after it
    in its loop left with the parent's locks)."""
    path = tmp_path / "a.bin"
    path.write_bytes(data)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as w:
            w.write(b"live" * 1000)

    failed_in_handlers = []  # what the at-fork handlers raised (Python prints it and goes on)
    monkeypatch.setattr(sys, "unraisablehook", failed_in_handlers.append)

    def checked(f, pos: int, n: int) -> bytes:
        assert not failed_in_handlers, failed_in_handlers[0].exc_value  # the child exits 1
        return in_child(f, pos, n)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        with kithara_io.open(str(fifo)) as live, kithara_io.open(str(path)) as f:
            assert type(live).__name__ == "LiveStream"
            assert live.read(4) == b"live"
            assert fork_and_read(f, CHILD_POS, CHILD_LEN, work=checked) == data[CHILD_POS : CHILD_POS + CHILD_LEN]
    finally:
        writer.join(10)
    assert not failed_in_handlers  # nor in the parent


# -- state caught mid-update -------------------------------------------------------------------
class _Announcing:
    """A lock that says when a thread has to wait for it (the fork, here)."""

    def __init__(self) -> None:
        self._inner = threading.RLock()
        self.waited_for = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._inner.acquire(blocking=False):
            return True
        self.waited_for.set()
        return self._inner.acquire(blocking, timeout)

    def release(self) -> None:
        self._inner.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()


def _a_stream_cache(tmp_path):
    from kithara_io.reading.cache import SparseCache

    return SparseCache()


def _a_disk_entry(tmp_path):
    from kithara_io.disk import DiskCache

    return DiskCache(tmp_path / "cache").open_entry("http://127.0.0.1:9/a.bin")


def _a_policy(tmp_path):
    from kithara_io.net.policy import Policy

    return Policy("http://127.0.0.1:9/a.bin")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", [_a_stream_cache, _a_disk_entry, _a_policy], ids=["cache", "disk-entry", "cookies"])
def test_a_fork_waits_for_an_update_in_progress(make, tmp_path, no_leaks):
    """A thread is updating a structure the child keeps, under that structure's lock, when
    another thread forks: the fork waits for the update to end, so the child gets all of it
    and a lock it can take. Without kithara-io's at-fork hook nothing waits for the lock:
    the child gets the first half of the update, and a lock held by a thread it lacks."""
    obj = make(tmp_path)
    own = obj._lock
    lock = obj._lock = _Announcing()  # the structure's lock, telling when the fork waits on it
    update: list = []
    holding = threading.Event()

    def updating() -> None:
        with obj.fork_lock():
            update.append("first half")
            holding.set()
            lock.waited_for.wait(10)  # (not set without the hook: the fork went ahead)
            update.append("second half")

    def child(_f, _pos, _n) -> bytes:
        assert obj.fork_lock().acquire(timeout=5), "the child cannot take the lock"
        return ",".join(update).encode()

    thread = threading.Thread(target=updating)
    thread.start()
    try:
        assert holding.wait(WAIT)
        got = fork_and_read(None, 0, 0, work=child)
    finally:
        thread.join(WAIT)
    assert got == b"first half,second half"
    obj._lock = own
    close = getattr(obj, "close", None)
    if close is not None:
        close()


@pytest.mark.timeout(60)
def test_a_child_reusing_the_blocks_it_inherited_never_changes_the_parents_bytes(fault_server, data, no_leaks):
    """A cache block that a fetch fills only in part is an anonymous mapping. Shared with a
    forked child (``MAP_SHARED``), the child's writes into a block it inherited and reused
    (closed stream -> the pool -> another stream's fetch) would change bytes the parent
    counts as present: a wrong byte. Private mappings are copied on write instead."""
    other = bytes(255 - b for b in data[: SIZE // 2]) * 2  # differs from ``data`` at every byte
    url = fault_server.add("/f.bin", data)
    other_url = fault_server.add("/g.bin", other)
    # Small fetches, and the first bodies (the link not measured yet) go into blocks: a
    # 64 KiB read far into the file leaves a block mostly empty, so an mmap block.
    small = dict(first_fetch=64 << 10, min_fetch=64 << 10, max_fetch=64 << 10, read_ahead=1, tail=0)
    spots = [(k << 20) + 4096 for k in (0, 2, 3)]
    f = kithara_io.open(url, **small)
    try:
        for pos in spots:
            f.seek(pos)
            assert f.read(4096) == data[pos : pos + 4096]

        def reuse(g, pos: int, n: int) -> bytes:
            g.close()  # its blocks go to the child's pool
            with kithara_io.open(other_url, **small) as h:
                for spot in spots:  # the same places: the pooled blocks at the same offsets
                    h.seek(spot)
                    assert h.read(4096) == other[spot : spot + 4096]
            return b"ok"

        assert fork_and_read(f, 0, 0, work=reuse) == b"ok"
        for pos in spots:  # held already: from the parent's cache, not fetched again
            f.seek(pos)
            assert f.read(4096) == data[pos : pos + 4096], f"byte at {pos} changed by the child"
    finally:
        f.close()


# -- audit: what parent and child share after a fork -------------------------------------------
KiB = 1024
RANDOM = dict(tail=0, read_ahead=64 * KiB, first_fetch=64 * KiB, min_fetch=64 * KiB, max_fetch=64 * KiB)


def _random_reads(f, data: bytes, seed: int, n: int, size: int = 64 * KiB) -> None:
    import random

    rng = random.Random(seed)
    for _ in range(n):
        pos = rng.randrange(0, len(data) - size)
        f.seek(pos)
        assert f.read(size) == data[pos : pos + size], f"wrong bytes at {pos}"


def _read_at(f, data: bytes, pos: int, size: int = 64 * KiB) -> None:
    f.seek(pos)
    assert f.read(size) == data[pos : pos + size], f"wrong bytes at {pos}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_random_reads_in_parent_and_child_around_a_read_in_flight_keep_their_connections_apart(
    request, scheme, data, no_leaks
):
    """The parent has a libcurl connection idle in the shared store and a random read in
    flight over libcurl on another thread when it forks. The child reads at random on the
    same stream and on new ones of the same origin, over connections of its own; the
    parent's read ends right, and its later reads go on over the connections it had."""
    from kithara_io.net import curl_fork
    from tests.servers.faults import Latency

    if scheme == "https":
        fault_server = request.getfixturevalue("tls_fault_server")
        options = dict(RANDOM, verify=str(request.getfixturevalue("tls_files").ca))
    else:
        fault_server = request.getfixturevalue("fault_server")
        options = RANDOM
    url = fault_server.add("/f.bin", data)
    other = bytes(reversed(data))
    other_url = fault_server.add("/g.bin", other)
    with kithara_io.open(url, **options) as f, kithara_io.open(url, **options) as g:
        _random_reads(f, data, 1, 3)
        _random_reads(g, data, 7, 3)
        fault_server.script("/f.bin", [Latency(0.5), Latency(0.5)])
        both = [threading.Thread(target=_read_at, args=(h, data, pos)) for h, pos in ((f, 3 << 20), (g, 6 << 20))]
        for t in both:
            t.start()
        for t in both:
            t.join(WAIT)  # two libcurl connections now (the reads overlapped), both idle
        before = {r.connection for r in fault_server.requests}
        fault_server.script("/f.bin", [Latency(1.5)])  # the next request: in flight at the fork
        n_before = len(fault_server.requests)
        in_flight: list = []

        def slow_read() -> None:
            g.seek(5 << 20)
            in_flight.append(g.read(64 * KiB))  # over libcurl (asserted below)

        thread = threading.Thread(target=slow_read)
        thread.start()
        try:
            assert fault_server.wait_requests(n_before + 1, timeout=WAIT)  # (held back by its Latency)
            assert any(c._running for c in list(curl_fork.LIVE)), "no libcurl transfer in flight"
            assert any(not c._running for c in list(curl_fork.LIVE)), "no libcurl connection idle"

            def child(f, pos, n):
                _random_reads(f, data, 2, 6)
                _random_reads(g, data, 3, 6)
                with kithara_io.open(other_url, **options) as h:
                    _random_reads(h, other, 4, 6)
                with kithara_io.open(url, **options) as h:
                    _random_reads(h, data, 5, 6)
                f.close()
                return b"ok"

            n_fork = len(fault_server.requests)
            assert fork_and_read(f, 0, 0, work=child) == b"ok"
            n_child = len(fault_server.requests)
        finally:
            thread.join(WAIT)
        assert in_flight == [data[5 << 20 : (5 << 20) + 64 * KiB]]
        _random_reads(f, data, 6, 10)
        _random_reads(g, data, 8, 10)
        with kithara_io.open(other_url, **options) as h:
            _random_reads(h, other, 9, 4)
        log = fault_server.requests
    child_conns = {r.connection for r in log[n_fork:n_child]}
    assert child_conns and not child_conns & before, "the child used a connection of the parent's"
    parent_after = {r.connection for r in log[n_child:]}
    assert not parent_after & child_conns
    assert parent_after <= before | {max(child_conns) + i for i in range(1, 3)}, "the parent reconnected"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("child_exit", ["normal", "_exit"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_child_exiting_leaves_the_parents_connections_open(request, scheme, child_exit, data, tmp_path, no_leaks):
    """A forked child that read, closed its streams and exited (the interpreter's own exit,
    which frees every object, or ``os._exit``) leaves the parent's connections as they
    were: the parent's next reads go over them, every byte right. Over https, libcurl's
    cleanup of a connection it inherited would send a TLS close_notify on the parent's
    socket (the server then closes it, or fails a request in flight)."""
    import subprocess

    if scheme == "https":
        server = request.getfixturevalue("tls_fault_server")
        ca = str(request.getfixturevalue("tls_files").ca)
    else:
        server = request.getfixturevalue("fault_server")
        ca = "-"
    url = server.add("/f.bin", data)
    (tmp_path / "data").write_bytes(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fork_exit_worker", url, ca, str(tmp_path / "data"), child_exit],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "forking\n", proc.stderr.read()
        before = {r.connection for r in server.requests}
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "child 0\n", proc.stderr.read()
        assert server.wait_idle(WAIT)
        n_child = len(server.requests)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "done\n", proc.stderr.read()
        assert proc.wait(WAIT) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    log = server.requests
    after = {r.connection for r in log[n_child:]}
    assert after <= before, f"the parent had to reconnect: {sorted(after - before)} (had {sorted(before)})"


@pytest.mark.timeout(90)
def test_parent_and_child_write_one_disk_cache_at_once(fault_server, data, tmp_path, no_leaks):
    """After a fork, parent and child both fill the inherited stream's disk cache entry at
    once (overlapping ranges, the parent's fetches running across the fork). Every range the
    entry then holds as committed has the file's bytes, and a later stream reads it all."""
    url = fault_server.add("/a.bin", data)
    fault_server.always("/a.bin", Throttle(8_000_000))
    cache = DiskCache(tmp_path / "cache")
    with kithara_io.open(url, cache=cache) as f:
        assert f.read(100_000) == data[:100_000]
        errors: list = []

        def parent_reads() -> None:
            try:
                for pos in (3 << 20, 5 << 20, 1 << 20):
                    f.seek(pos)
                    assert f.read(1 << 20) == data[pos : pos + (1 << 20)], f"parent: wrong bytes at {pos}"
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def child(g, pos, n):
            with kithara_io.open(url, cache=DiskCache(tmp_path / "cache")) as h:  # a second entry object
                h.seek((5 << 20) + 12345)
                assert h.read(1 << 20) == data[(5 << 20) + 12345 : (6 << 20) + 12345]
            g.seek(pos)
            got = g.read(n)
            g.close()
            return got

        thread = threading.Thread(target=parent_reads)
        thread.start()
        try:
            got = fork_and_read(f, (3 << 20) + 500_000, 2 << 20, work=child)
        finally:
            thread.join(WAIT)
        assert not errors, errors[0]
        assert got == data[(3 << 20) + 500_000 : (5 << 20) + 500_000]
    with cache.open_entry(url) as entry:
        present = list(entry.present())
        assert present, "nothing committed"
        for start, end in present:
            out = bytearray(end - start)
            entry.read_into(start, memoryview(out))
            assert out == data[start:end], f"the disk cache holds wrong bytes in [{start}, {end})"
    fault_server.clear_faults("/a.bin")
    with kithara_io.open(url, cache=cache) as f:
        assert f.read() == data


@pytest.mark.timeout(90)
def test_a_fork_while_a_read_ahead_body_comes_in(fault_server, data, no_leaks):
    """A pool thread of the parent is receiving a sequential read-ahead body (into a block
    the child inherits half filled), and another parent thread is reading, when the process
    forks. The child reads on from where the stream is, through the bytes that body was
    bringing; the parent's body goes on into its own block: both read every byte right."""
    url = fault_server.add("/a.bin", data)
    fault_server.always("/a.bin", Throttle(6_000_000))
    with kithara_io.open(url) as f:
        assert f.read(1_500_000) == data[:1_500_000]
        errors: list = []

        def parent_reads() -> None:
            try:
                pos = f.tell()
                while pos < SIZE:
                    chunk = f.read(100_000)
                    assert chunk == data[pos : pos + 100_000], f"parent: wrong bytes at {pos}"
                    pos += len(chunk)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def child(g, _pos, _n):
            pos = g.tell()
            return pos.to_bytes(8, "big") + g.read()

        thread = threading.Thread(target=parent_reads)
        thread.start()
        try:
            deadline = time.monotonic() + 5
            while not any(r.outcome is None and r.bytes_sent > 0 for r in fault_server.requests):
                assert time.monotonic() < deadline, "no body coming in to fork under"
                time.sleep(0.001)
            got = fork_and_read(f, 0, 0, work=child)
        finally:
            thread.join(WAIT)
        assert not errors, errors[0]
        pos = int.from_bytes(got[:8], "big")
        assert 1_500_000 <= pos < SIZE and got[8:] == data[pos:], f"child: wrong bytes from {pos}"
