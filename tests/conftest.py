"""Shared fixtures: generated media, the three servers, and the ``no_leaks`` checker."""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import pytest

from tests.servers import REGISTRY, THREAD_PREFIX, ChunkedNginxServer, NginxServer, RangedServer, StdlibServer
from tests.servers.faults import FaultServer, running_fault_server
from tests.servers.media import AUDIO_FILES, make_media
from tests.servers.proxy import ProxyServer
from tests.servers.tls import TlsFiles, make_tls_files

__all__ = ["AUDIO_FILES"]

AnyServer = Union[StdlibServer, RangedServer, NginxServer, ChunkedNginxServer]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with tone.{wav,flac,ogg,mp3} (4 s, stereo, 44.1 kHz), random.bin (8 MiB),
    small.bin (1000 B) and empty.bin (0 B), all deterministic."""
    directory = tmp_path_factory.mktemp("media").resolve()
    make_media(directory)
    return directory


@pytest.fixture(scope="session")
def media(media_dir: Path) -> dict[str, Path]:
    """File name -> local path of every generated file."""
    return {p.name: p for p in sorted(media_dir.iterdir())}


@pytest.fixture(scope="session")
def audio_files() -> list[str]:
    return list(AUDIO_FILES)


@pytest.fixture(scope="session")
def stdlib_server(media_dir: Path) -> Iterator[StdlibServer]:
    with StdlibServer(media_dir) as srv:
        yield srv


@pytest.fixture(scope="session")
def ranged_server(media_dir: Path) -> Iterator[RangedServer]:
    """Shared, unthrottled; call ``reset_log()`` before counting requests."""
    with RangedServer(media_dir) as srv:
        yield srv


@pytest.fixture(scope="session")
def nginx_server(media_dir: Path) -> Iterator[NginxServer]:
    with NginxServer(media_dir) as srv:
        yield srv


@pytest.fixture(params=["stdlib", "ranged", "nginx"])
def any_server(request: pytest.FixtureRequest) -> AnyServer:
    """Each of the three servers in turn; ``.kind`` and ``.supports_ranges`` tell them apart."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def nginx_chunked_server(media_dir: Path) -> Iterator[ChunkedNginxServer]:
    """nginx serving media_dir chunked, without a length, ranges or validators (sub_filter)."""
    with ChunkedNginxServer(media_dir) as srv:
        yield srv


@pytest.fixture(params=["stdlib", "ranged", "nginx", "nginx_chunked"])
def file_server(request: pytest.FixtureRequest) -> AnyServer:
    """The servers real clients are tested against: ``any_server``'s three and nginx serving
    every file chunked, without a length (``kind == "nginx-chunked"``)."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fresh fault-injecting server; the test fails if the server itself hit an error."""
    with running_fault_server() as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made for this session (trustme), a leaf for 127.0.0.1/::1/localhost and a client
    certificate, as PEM files."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def nginx_tls_server(media_dir: Path, tls_files: TlsFiles) -> Iterator[NginxServer]:
    """nginx serving media_dir over https with the session's certificates."""
    with NginxServer(media_dir, tls=tls_files) as srv:
        yield srv


@pytest.fixture
def tls_fault_server(tls_files: TlsFiles) -> Iterator[FaultServer]:
    """A fresh fault-injecting server over https (the session's certificates)."""
    with running_fault_server(tls=tls_files) as server:
        yield server


@pytest.fixture
def make_fault_server() -> Iterator[Callable[..., FaultServer]]:
    """Factory: ``make_fault_server(host=..., tls=..., auth=...)``; every server is stopped
    when the test ends, and the test fails if one hit an error itself."""
    with contextlib.ExitStack() as stack:
        yield lambda **options: stack.enter_context(running_fault_server(**options))


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., ProxyServer]]:
    """Factory: ``make_proxy(auth=...)`` forward proxies, stopped (threads joined, sockets
    closed) when the test ends. Request it after ``no_leaks``, so the proxy's own upstream
    sockets are closed before the leak check runs."""
    proxies: list[ProxyServer] = []

    def make(**options: Any) -> ProxyServer:
        proxy = ProxyServer(**options)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
    for proxy in proxies:
        assert proxy.errors == [], proxy.errors


@pytest.fixture
def make_ranged_server(media_dir: Path) -> Iterator[Callable[..., RangedServer]]:
    """Factory: ``make_ranged_server(bandwidth=..., latency=...)`` serving media_dir,
    stopped (and joined) when the test ends."""
    servers: list[RangedServer] = []

    def make(**options: Any) -> RangedServer:
        srv = RangedServer(media_dir, **options)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


# -- leak checking ---------------------------------------------------------------------------


def _describe_socket(fd: int, link: str) -> "str | None":
    """Description of a client-side socket, or None for a server-side/closed one."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None  # closed meanwhile
    with socket.socket(fileno=dup) as sock:
        if f"socket:[{os.fstat(dup).st_ino}]" != link:
            return None  # closed and the number reused meanwhile
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            return f"{link} family={sock.family!s} type={sock.type!s}"
        local = sock.getsockname()
        if local[1] in REGISTRY.ports():
            return None  # listener or accepted connection of an in-process test server
        try:
            peer = sock.getpeername()
        except OSError:
            peer = ("?", 0)
        return f"{link} tcp {local[0]}:{local[1]} -> {peer[0]}:{peer[1]}"


def open_resources() -> collections.Counter:
    """Multiset of this process's open fds that the code under test could own.

    Excluded: sockets whose local port is an in-process server's port (listeners and
    server-side connections), and files inside a directory an in-process server serves.
    """
    roots = REGISTRY.roots()
    found: collections.Counter = collections.Counter()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # e.g. the fd listdir itself used
        if link.startswith("socket:["):
            description = _describe_socket(fd, link)
            if description is not None:
                found[description] += 1
        elif not any(root == Path(link) or root in Path(link).parents for root in roots):
            found[link] += 1
    return found


PROXY_ENV = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No proxies from the machine's environment, and an empty netrc (not ~/.netrc)."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty.netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    return monkeypatch


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a thread running or an fd (socket, file, pipe) open.

    Exact, not retried: code under test must have closed and joined everything when its
    ``close()`` returned. Before and after the test we take the multiset of open fds
    (by ``/proc/self/fd`` target, so a closed-then-reused fd number is not a false match)
    and the set of live threads. Server-side resources are told apart without timing
    assumptions, because in-process servers close their side asynchronously:

    - threads named ``test-server-*`` (all threads of the in-process servers) are ignored;
    - a TCP socket is examined through a dup of its fd: if its *local* port is the port of a
      running in-process server (``tests.servers.REGISTRY``) it is that server's listener or
      accepted connection, whatever its TCP state (even after a reset, when it has left
      ``/proc/net/tcp``); a client socket has an ephemeral local port, which the kernel never
      takes from a bound listener. nginx runs in another process: only the client side counts;
    - files inside a directory served by an in-process server are ignored (the server may
      still be finishing a response the client abandoned): do not rely on this fixture for
      files the test itself opens there.
    """
    threads_before = set(threading.enumerate())
    fds_before = open_resources()
    yield
    new_threads = [
        t
        for t in threading.enumerate()
        if t not in threads_before and t.is_alive() and not t.name.startswith(THREAD_PREFIX)
    ]
    new_fds = open_resources() - fds_before
    problems = []
    if new_threads:
        problems.append("threads still running: " + ", ".join(repr(t) for t in new_threads))
    if new_fds:
        problems.append("fds left open: " + ", ".join(sorted(new_fds.elements())))
    assert not problems, "; ".join(problems)
