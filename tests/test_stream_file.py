"""The Stream behaves like a local file opened "rb": contract tests and a differential test."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kithara_io

SIZE = 8 * 1024 * 1024  # random.bin


@pytest.fixture(scope="module")
def random_bytes(media):
    return media["random.bin"].read_bytes()


def test_file_contract(ranged_server, random_bytes):
    url = ranged_server.url("random.bin")
    with kithara_io.open(url) as f:
        assert isinstance(f, io.RawIOBase) and isinstance(f, kithara_io.Stream)
        assert f.readable() and f.seekable() and not f.writable()
        assert f.name == url and f.size == SIZE
        assert f.seek(0, io.SEEK_END) == SIZE and f.tell() == SIZE
        assert f.read(10) == b"" and f.readinto(bytearray(10)) == 0
        assert f.seek(SIZE + 1000) == SIZE + 1000 and f.read() == b""
        assert f.seek(-10, io.SEEK_END) == SIZE - 10 and f.read() == random_bytes[-10:]
        f.seek(100)
        assert f.seek(50, io.SEEK_CUR) == 150 and f.read(5) == random_bytes[150:155]
        with pytest.raises(OSError):
            f.seek(-1)
        with pytest.raises((ValueError, OSError)):
            f.seek(0, 7)
        assert f.tell() == 155  # failed seeks leave the position alone
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"x")
    assert f.closed
    f.close()  # idempotent
    for call in (f.read, f.tell, lambda: f.seek(0), lambda: f.readinto(bytearray(1))):
        with pytest.raises(ValueError):
            call()


def test_readall_and_short_read_only_at_end(file_server, random_bytes, no_leaks):
    with kithara_io.open(file_server.url("random.bin")) as f:
        f.seek(SIZE - 3000)
        buf = bytearray(5000)
        assert f.readinto(buf) == 3000 and bytes(buf[:3000]) == random_bytes[-3000:]
        f.seek(0)
        assert f.read() == random_bytes


@pytest.mark.parametrize("name", ["small.bin", "empty.bin"])
def test_tiny_files(file_server, media, name, no_leaks):
    size = media[name].stat().st_size
    with kithara_io.open(file_server.url(name)) as f:
        assert f.seekable()
        # Without a length, it is known once the body's end has arrived.
        assert f.size == size or (file_server.kind == "nginx-chunked" and f.size is None)
        assert f.read() == media[name].read_bytes()
        assert f.read(1) == b""
        assert f.size == size and f.seek(0, io.SEEK_END) == size and f.seekable()


op = st.one_of(
    st.tuples(st.just("seek"), st.integers(-SIZE // 2, SIZE + 4096), st.sampled_from([0, 1, 2])),
    st.tuples(st.just("read"), st.integers(-1, 3 * 1024 * 1024)),
    st.tuples(st.just("readinto"), st.integers(0, 300 * 1024)),
    st.tuples(st.just("tell")),
)


def apply(f, action):
    kind = action[0]
    try:
        if kind == "seek":
            return f.seek(action[1], action[2])
        if kind == "read":
            data = f.read(action[1])
            return data if action[1] == -1 or len(data) < 4096 else (len(data), hash(data))
        if kind == "readinto":
            buf = bytearray(action[1])
            n = f.readinto(buf)
            return n, hash(bytes(buf[:n]))
        return f.tell()
    except (OSError, ValueError) as exc:
        return type(exc).__mro__[-3 if isinstance(exc, OSError) else -2]


@pytest.mark.timeout(240)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(op, min_size=1, max_size=25))
def test_differential_against_local_file(ranged_server, media, actions):
    with open(media["random.bin"], "rb", buffering=0) as local, kithara_io.open(
        ranged_server.url("random.bin"), min_fetch=16 * 1024, read_ahead=1024 * 1024
    ) as remote:
        for action in actions:
            assert apply(remote, action) == apply(local, action), action


# A seek anywhere then a read: through a small budget, most land where bytes were dropped.
seek_read = st.tuples(st.just("seek_read"), st.integers(0, SIZE + 4096), st.integers(0, 256 * 1024))


def apply_seek_read(f, action):
    if action[0] != "seek_read":
        return apply(f, action)
    return apply(f, ("seek", action[1], 0)), apply(f, ("read", action[2]))


@pytest.mark.timeout(240)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(st.one_of(op, seek_read), min_size=1, max_size=25))
def test_differential_chunked_file_larger_than_the_budget(nginx_chunked_server, media, actions):
    """A body without a length, 8 MiB through a 2 MiB budget: the seek from the end first
    drops the head; reads there request the file again and read forward."""
    with open(media["random.bin"], "rb", buffering=0) as local, kithara_io.open(
        nginx_chunked_server.url("random.bin"), cache_budget=2 * 1024 * 1024, max_fetch=1024 * 1024
    ) as remote:
        for action in [("seek", -1000, 2), ("read", 10)] + actions:
            assert apply_seek_read(remote, action) == apply_seek_read(local, action), action
        assert remote.stats().bytes_cached <= 2 * 1024 * 1024 + 64 * 1024
