"""What a user reads (issue #18): causes in plain words, no internal class names, no URL
passwords in errors or logs, clear errors for bad options and a closed Downloader, and a
library that prints nothing itself; the watchdog stays quiet while bytes arrive."""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

import kithara_io
from kithara_io.errors import CertificateError
from kithara_io import (
    ConnectionFailedError,
    Downloader,
    HTTPStatusError,
    Retry,
    StreamClosedError,
    StreamError,
    Timeout,
)
from kithara_io.events import DownloaderStalled
from tests.servers import THREAD_PREFIX
from tests.servers.faults import Disconnect, IgnoreRange, Latency, Reset, Status, Throttle

REPO = Path(__file__).resolve().parent.parent
ONCE = dict(retry=Retry(attempts=1), timeout=Timeout(connect=2, read=0.5))
INTERNAL = re.compile(r"\w+(Error|Exception|Pool|Connection)\(|_Tracked|Max retries|Caused by|Errno")


def assert_plain(text: str, phrase: str) -> None:
    assert phrase in text, text
    assert not INTERNAL.search(text), text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


def test_connection_refused(no_leaks) -> None:
    url = f"http://127.0.0.1:{free_port()}/a.wav"
    with pytest.raises(ConnectionFailedError) as info:
        kithara_io.open(url, **ONCE)
    assert_plain(str(info.value), "connection refused")
    assert str(info.value).startswith("request failed") and url in str(info.value)


def test_timed_out(fault_server, no_leaks) -> None:
    url = fault_server.add("/a.bin", bytes(1000))
    fault_server.always("/a.bin", Latency(math.inf))
    with pytest.raises(ConnectionFailedError) as info:
        kithara_io.open(url, **ONCE)
    assert_plain(str(info.value), "timed out")


def test_connection_reset(fault_server, no_leaks) -> None:
    url = fault_server.add("/a.bin", bytes(1000))
    fault_server.always("/a.bin", Disconnect(rst=True))
    with pytest.raises(ConnectionFailedError) as info:
        kithara_io.open(url, **ONCE)
    assert_plain(str(info.value), "connection reset")


def test_name_resolution_failed(no_leaks) -> None:
    with pytest.raises(ConnectionFailedError) as info:
        kithara_io.open("http://no-such-host.invalid/a.wav", **ONCE)
    assert_plain(str(info.value), "host name could not be resolved")


@pytest.fixture
def tls_server(tmp_path) -> Iterator[str]:
    """A TLS server with a self-signed certificate that nobody trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    context.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    pass  # the client refused our certificate: what the test wants

    thread = threading.Thread(target=serve, name=THREAD_PREFIX + "tls")
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/a.wav"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_certificate_verify_failed(tls_server) -> None:
    with pytest.raises(CertificateError) as info:  # its own error: not retried (tests/test_https.py)
        kithara_io.open(tls_server, **ONCE)
    assert_plain(str(info.value), "could not be verified")


def test_passwords_never_appear_in_errors_or_logs(fault_server, caplog, no_leaks) -> None:
    url = fault_server.add("/a.bin", bytes(1000))
    fault_server.always("/a.bin", Status(503))
    secret_url = url.replace("http://", "http://alice:s3cr3t@")
    caplog.set_level(logging.DEBUG, logger="kithara_io")
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(secret_url, retry=Retry(attempts=3, backoff=0.01))
    text = str(info.value) + repr(info.value) + str(info.value.url)
    assert "alice:***@" in text and "s3cr3t" not in text
    assert caplog.records and "s3cr3t" not in caplog.text
    assert any("alice:***@" in r.getMessage() for r in caplog.records)
    refused = f"http://bob:hunter2@127.0.0.1:{free_port()}/x"
    with pytest.raises(ConnectionFailedError) as info:
        kithara_io.open(refused, **ONCE)
    assert "hunter2" not in str(info.value) and "hunter2" not in caplog.text


@pytest.mark.parametrize(
    "options, name",
    [
        (dict(chunk=-10), "chunk"),
        (dict(chunk=0), "chunk"),
        (dict(chunk=1.5), "chunk"),
        (dict(read_ahead="16M"), "read_ahead"),
        (dict(max_outstanding=True), "max_outstanding"),
        (dict(tail=-1), "tail"),
        (dict(read_behind=-1), "read_behind"),
        (dict(max_redirects=-1), "max_redirects"),
        (dict(cache_budget=0), "cache_budget"),
        (dict(timeout=5), "timeout"),
        (dict(retry=3), "retry"),
        (dict(verify=None), "verify"),
    ],
)
def test_every_option_is_checked_naming_it(fault_server, options, name, no_leaks) -> None:
    url = fault_server.add("/a.bin", bytes(1000))
    with pytest.raises(ValueError, match=rf"option {name} must"):
        kithara_io.open(url, **options)
    assert fault_server.count("/a.bin") == 0  # refused before any request


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: Timeout(connect=0), "Timeout.connect"),
        (lambda: Timeout(read=-1), "Timeout.read"),
        (lambda: Timeout(read=math.nan), "Timeout.read"),
        (lambda: Timeout(connect=math.inf), "Timeout.connect"),
        (lambda: Retry(attempts=0), "Retry.attempts"),
        (lambda: Retry(backoff=-0.5), "Retry.backoff"),
    ],
)
def test_timeout_and_retry_values_are_checked(make, name) -> None:
    with pytest.raises(ValueError, match=re.escape(name) + " must"):
        make()


def test_a_stream_whose_downloader_was_closed_says_so(fault_server, no_leaks) -> None:
    data = os.urandom(4 << 20)
    url = fault_server.add("/a.bin", data)
    downloader = Downloader()
    f = kithara_io.open(url, downloader=downloader)
    assert f.read(1000) == data[:1000]
    downloader.close()
    f.seek(3 << 20)
    with pytest.raises(StreamClosedError, match="downloader of this stream was closed") as info:
        f.read(1000)
    assert url in str(info.value)
    with pytest.raises(StreamClosedError):
        f.close()
    with pytest.raises(StreamClosedError, match="downloader was closed"):
        kithara_io.open(url, downloader=downloader)


def test_the_library_prints_nothing_itself() -> None:
    """A failing open logs an error; without a handler set up by the application, nothing
    reaches stderr (no last-resort handler)."""
    script = (
        "import kithara_io\n"
        "from kithara_io import Retry\n"
        f"url = 'http://127.0.0.1:{free_port()}/x'\n"
        "try:\n"
        "    kithara_io.open(url, retry=Retry(attempts=1))\n"
        "except kithara_io.ConnectionFailedError:\n"
        "    print('failed as expected')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "failed as expected\n", "")


@pytest.mark.timeout(30)
def test_no_stall_warning_while_bytes_arrive(fault_server, caplog, no_leaks) -> None:
    """A slow but steady body, also when a resumed body from a server without Range support
    re-sends the prefix that is skipped: the watchdog sees the bytes and stays quiet."""
    data = os.urandom(100_000)
    url = fault_server.add("/slow.bin", data)
    fault_server.script("/slow.bin", [(IgnoreRange(), Throttle(40_000), Reset(60_000))])
    fault_server.always("/slow.bin", (IgnoreRange(), Throttle(40_000)))
    downloader = Downloader(stall_window=0.5)
    stalls = []
    downloader.subscribe(stalls.append, DownloaderStalled)
    caplog.set_level(logging.WARNING, logger="kithara_io")
    try:
        options = dict(retry=Retry(attempts=3, backoff=0.01), tail=0)  # no tail probe: 2 requests exactly
        with kithara_io.open(url, downloader=downloader, **options) as f:
            assert f.read() == data
    finally:
        downloader.close()
    assert fault_server.count("/slow.bin") == 2  # the cut body was resumed (prefix re-sent)
    assert stalls == [] and "stalled" not in caplog.text


def test_a_real_stall_is_still_reported(fault_server, no_leaks) -> None:
    """The other side: headers, then silence (within the read timeout) is a stall."""
    from tests.servers.faults import Stall

    url = fault_server.add("/a.bin", bytes(200_000))
    fault_server.script("/a.bin", [(Stall(1.5, after_bytes=1000),)])
    downloader = Downloader(stall_window=0.4)
    stalls = []
    downloader.subscribe(stalls.append, DownloaderStalled)
    try:
        with kithara_io.open(url, downloader=downloader, tail=0) as f:
            assert len(f.read()) == 200_000
    finally:
        downloader.close()
    assert stalls


def test_stream_error_text_for_other_causes() -> None:
    """Unknown causes keep their message, without class-name prefixes."""
    error = StreamError("fetch failed unexpectedly", url="http://u:pw@h/x", cause=ValueError("bad thing"))
    assert str(error) == "fetch failed unexpectedly [http://u:***@h/x]: bad thing"
    nested = StreamError("outer", cause=ConnectionFailedError("inner", cause=ConnectionRefusedError(111, "x")))
    assert str(nested) == "outer: inner: connection refused"
