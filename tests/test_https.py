"""Issue #13 item 6: kithara-io over https, against nginx and the fault server over TLS.

Certificates are made in the session (``tls_files``: a trustme CA, a leaf for 127.0.0.1 and a
client certificate). The machine's environment points ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE`` and ``SSL_CERT_FILE`` at the system bundle, which does not know that CA:
so ``verify=True`` with the environment untouched is the "unknown CA" case, and the tests
that rely on the environment set it to the test CA themselves.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

import kithara_io
from kithara_io import InvalidResponseError, ResourceChangedError, Retry, StreamError, Timeout
from kithara_io.errors import CertificateError
from tests.conftest import AUDIO_FILES
from tests.servers.faults import ChangedETag, Redirect, Reset, Stall, Status, Truncate, WrongContentRange
from tests.servers.media import decoded, media_bytes
from tests.servers.tls import make_tls_files

pytestmark = pytest.mark.timeout(30)

KiB = 1024
MiB = 1024 * KiB
RETRY = Retry(attempts=4, backoff=0.01, max_backoff=0.05)
FAST = dict(retry=RETRY, timeout=Timeout(connect=2, read=0.3))
# Many small range requests, one at a time: every later request takes the pooled route.
SMALL = dict(FAST, tail=0, max_outstanding=1, first_fetch=64 * KiB, min_fetch=64 * KiB, max_fetch=64 * KiB, read_ahead=64 * KiB, cache_budget=None)
CA_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")




def read_all(f, step: int = 64 * KiB) -> bytes:
    out = bytearray()
    for _ in range(1 << 16):  # bounded: far more than any test file needs
        piece = f.read(step)
        if not piece:
            return bytes(out)
        out += piece
    raise AssertionError("read did not end")


def gets(srv, path: str):
    return [r for r in srv.requests if r.method == "GET" and r.path == path]


def nginx_hits(server, name: str) -> int:
    """Requests for ``name`` in nginx's access log so far."""
    return sum(1 for line in server.access_log.read_text().splitlines() if f"GET /{name} " in line)


# -- decoding and bytes over https --------------------------------------------------------------


@pytest.mark.parametrize("name", AUDIO_FILES)
def test_sf_read_over_https_equals_local(nginx_tls_server, tls_files, media, name, no_leaks):
    expected, rate = sf.read(media[name], dtype="int16")
    with kithara_io.open(nginx_tls_server.url(name), verify=str(tls_files.ca)) as f:
        got, got_rate = sf.read(f, dtype="int16")
    assert got_rate == rate
    np.testing.assert_array_equal(got, expected)


def test_random_seek_and_read_over_https_equals_local(nginx_tls_server, tls_files, media, no_leaks):
    local = media_bytes(media, "random.bin")
    rng = np.random.default_rng(1313)
    before = nginx_hits(nginx_tls_server, "random.bin")
    with kithara_io.open(
        nginx_tls_server.url("random.bin"), verify=str(tls_files.ca), **dict(SMALL, max_outstanding=2)
    ) as f:
        for _ in range(300):
            pos = int(rng.integers(0, len(local)))
            size = int(rng.integers(1, 96 * KiB))
            f.seek(pos)
            assert f.read(size) == local[pos : pos + size], f"wrong bytes at {pos}"
        requests = f.stats().requests
    assert requests >= 100  # many range requests, not one big download
    assert nginx_hits(nginx_tls_server, "random.bin") - before >= 100


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_ca_bundle_from_the_environment_is_honoured(nginx_tls_server, tls_files, media, monkeypatch, variable, no_leaks):
    for name in CA_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tls_files.ca))
    with kithara_io.open(nginx_tls_server.url("tone.flac"), **SMALL) as f:
        assert read_all(f) == media_bytes(media, "tone.flac")
        assert f.stats().requests >= 8


def test_explicit_ca_bundle_wins_over_the_environment(nginx_tls_server, tls_files, media, monkeypatch, no_leaks):
    """The environment names the system bundle (as on this machine): ``verify=path`` decides."""
    system = "/etc/ssl/certs/ca-certificates.crt"
    for name in CA_ENV:
        monkeypatch.setenv(name, system)
    with kithara_io.open(nginx_tls_server.url("small.bin"), verify=str(tls_files.ca), **SMALL) as f:
        assert f.read() == media_bytes(media, "small.bin")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # urllib3's, asked for
def test_verify_false_reads_from_an_unverified_server(nginx_tls_server, media, monkeypatch, no_leaks):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")  # must not override False
    with kithara_io.open(nginx_tls_server.url("tone.wav"), verify=False, **SMALL) as f:
        assert read_all(f) == media_bytes(media, "tone.wav")
        assert f.stats().requests > 10


@pytest.mark.parametrize("trust", ["system", "other-ca", "wrong-name"])
@pytest.mark.parametrize("tail", [0, 64 * KiB], ids=["no-tail", "tail"])
def test_unknown_ca_is_refused_at_open_at_once(make_fault_server, tls_files, media, tmp_path, trust, tail, no_leaks):
    """An unknown CA (the system bundle, or another private CA) and a certificate for another
    name: refused by open() with one clear error, without a retry."""
    if trust == "wrong-name":
        other = make_tls_files(tmp_path / "other", names=("example.org",))
        srv, verify = make_fault_server(tls=other), str(other.ca)
    else:
        srv = make_fault_server(tls=tls_files)
        verify = True if trust == "system" else str(make_tls_files(tmp_path / "other").ca)
    url = srv.add("/f.flac", media_bytes(media, "tone.flac"))
    started = time.monotonic()
    with pytest.raises(CertificateError) as info:
        kithara_io.open(url, verify=verify, tail=tail)  # default retry policy: 5 attempts
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, elapsed
    assert isinstance(info.value, StreamError)
    message = str(info.value)
    assert "could not be verified" in message and "127.0.0.1" in message and url in message
    reason = "not valid for '127.0.0.1'" if trust == "wrong-name" else "unable to get local issuer certificate"
    assert reason in message
    assert "Pool" not in message and "Max retries" not in message  # no wrapper's text
    # One connection per request open() sent (the head; the tail probe, if asked, runs beside
    # it unless the failure cancelled it first): none retried.
    assert srv.connections == 1 if tail == 0 else 1 <= srv.connections <= 2
    assert len(srv.tls_failures) <= srv.connections
    assert srv.count() == 0  # no request ever went out unverified


@pytest.mark.parametrize("form", ["pair", "pair as a list", "one-file"])
def test_client_certificate_is_presented_on_every_connection(make_fault_server, tls_files, media, tmp_path, form, no_leaks):
    srv = make_fault_server(tls=tls_files.server_context(require_client_cert=True))
    data = media_bytes(media, "random.bin")[: 1 * MiB]
    url = srv.add("/f", data)
    cert: object
    if form == "pair":
        cert = (str(tls_files.client_cert), str(tls_files.client_key))
    elif form == "pair as a list":  # as a JSON or YAML config gives it
        cert = [str(tls_files.client_cert), str(tls_files.client_key)]
    else:
        combined = tmp_path / "client-with-key.pem"
        combined.write_bytes(tls_files.client_key.read_bytes() + tls_files.client_cert.read_bytes())
        cert = str(combined)
    with kithara_io.open(url, verify=str(tls_files.ca), cert=cert, **SMALL) as f:
        assert read_all(f) == data
    assert len(gets(srv, "/f")) >= 16
    assert srv.tls_failures == []


def test_server_requiring_a_client_certificate_refuses_a_client_without(make_fault_server, tls_files, media, no_leaks):
    srv = make_fault_server(tls=tls_files.server_context(require_client_cert=True))
    url = srv.add("/f", b"x" * 1000)
    with pytest.raises(StreamError) as info:
        with kithara_io.open(url, verify=str(tls_files.ca), **SMALL) as f:
            f.read()
    assert url in str(info.value)
    assert srv.count() == 0 and srv.tls_failures


# -- the fault table over https ------------------------------------------------------------------

SURVIVABLE = [
    Reset(after_bytes=0),
    Reset(after_bytes=20_000),
    Truncate(after_bytes=20_000),
    Status(503, retry_after="1"),  # capped by max_backoff (0.05 s)
    Stall(10, after_bytes=20_000),
]


@pytest.mark.parametrize("fault", SURVIVABLE, ids=lambda f: repr(f).replace(" ", ""))
@pytest.mark.parametrize("where", ["open", "later"])
def test_survivable_fault_over_https_decodes_exactly(tls_fault_server, tls_files, media, fault, where, no_leaks):
    srv = tls_fault_server
    url = srv.add("/tone.flac", media_bytes(media, "tone.flac"))
    srv.script("/tone.flac", [fault, fault] if where == "open" else [None, None, fault, None, fault])
    with kithara_io.open(url, verify=str(tls_files.ca), **dict(FAST, min_fetch=32 * KiB, max_fetch=128 * KiB)) as f:
        got, _ = sf.read(f, dtype="int16")
        assert f.error is None
    np.testing.assert_array_equal(got, decoded(media, "tone.flac"))
    assert f.stats().retries <= 2
    assert srv.pending("/tone.flac") == 0  # every injected fault was met


@pytest.mark.parametrize(
    "fault, error",
    [(ChangedETag(), ResourceChangedError), (WrongContentRange(shift=1), InvalidResponseError)],
    ids=["changed-etag", "wrong-content-range"],
)
def test_permanent_fault_over_https_is_the_right_error(tls_fault_server, tls_files, media, fault, error, no_leaks):
    srv = tls_fault_server
    data = media_bytes(media, "random.bin")[: 1 * MiB]
    url = srv.add("/f", data)
    srv.script("/f", [None, fault])
    f = kithara_io.open(url, verify=str(tls_files.ca), **SMALL)
    try:
        got = bytearray()
        with pytest.raises(error):
            for _ in range(64):
                piece = f.read(64 * KiB)
                assert piece == data[len(got) : len(got) + len(piece)]
                got += piece
        assert len(gets(srv, "/f")) == 2  # not retried
    finally:
        with pytest.raises(error):
            f.close()


# -- redirects and connections ------------------------------------------------------------------


def test_redirect_from_http_to_https_sends_every_later_request_to_https(
    fault_server, nginx_tls_server, tls_files, media, no_leaks
):
    fault_server.always("/random.bin", Redirect(nginx_tls_server.url("random.bin"), 302))
    before = nginx_hits(nginx_tls_server, "random.bin")
    with kithara_io.open(
        fault_server.url("/random.bin"), verify=str(tls_files.ca), **dict(SMALL, max_fetch=256 * KiB, read_ahead=256 * KiB)
    ) as f:
        assert read_all(f) == media_bytes(media, "random.bin")
        requests = f.stats().requests
    assert requests >= 32
    assert fault_server.count("/random.bin") == 1  # only the first request asked the http origin
    assert nginx_hits(nginx_tls_server, "random.bin") - before >= requests


def test_connections_are_reused_across_range_requests(tls_fault_server, tls_files, media, no_leaks):
    srv = tls_fault_server
    data = media_bytes(media, "random.bin")[: 2 * MiB]
    url = srv.add("/f", data)
    with kithara_io.open(url, verify=str(tls_files.ca), **dict(FAST, min_fetch=64 * KiB, max_fetch=64 * KiB, read_ahead=256 * KiB)) as f:
        assert read_all(f) == data
    assert len(gets(srv, "/f")) >= 32
    # a few keep-alive connections, not one per request: the open's (head and tail at once)
    # over http.client, then the small ranges' over libcurl (two at once)
    assert srv.connections <= 6, srv.connections


def test_ca_bundle_is_loaded_once_not_per_connection(make_fault_server, tls_files, media, tmp_path, monkeypatch, no_leaks):
    """urllib3 loads a CA bundle path into a new context for every connection (0.2 s of CPU
    for the system bundle, before the first byte of every parallel request); kithara-io
    loads each bundle once."""
    import ssl

    loads = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self, *args, **kwargs):
        loads.append(args or kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    bundle = tmp_path / "bundle.pem"  # a file no earlier test loaded
    bundle.write_bytes(tls_files.ca.read_bytes())
    data = media_bytes(media, "random.bin")[: 2 * MiB]
    for _ in range(2):
        srv = make_fault_server(tls=tls_files)
        url = srv.add("/f", data)
        # Parallel fetches on one stream: several connections at once.
        with kithara_io.open(url, verify=str(bundle), **dict(FAST, min_fetch=256 * KiB, max_fetch=256 * KiB, max_outstanding=4)) as f:
            assert read_all(f) == data
        assert srv.connections >= 2
    assert len(loads) == 1, loads


# -- aborts over TLS ------------------------------------------------------------------------------


def test_a_body_read_after_an_abort_never_returns_the_ciphertext(nginx_tls_server, tls_files, media, no_leaks):
    """An abort shuts the socket down under a TLS body whose ciphertext already waits in the
    kernel. ``ssl.SSLSocket.shutdown`` would drop its TLS state first, and the fetch's next read
    would then hand over the raw TLS records as body bytes (a wrong byte a far seek's epoch
    cancel could store in the cache): the read after the abort must fail, or give the file."""
    import select

    from kithara_io.sources.http import HttpSource
    from kithara_io.sources.transport import AbortHandle

    class Seen(AbortHandle):
        def attach(self, conn) -> None:
            self.sock = conn.sock
            super().attach(conn)

    local = media_bytes(media, "random.bin")
    source = HttpSource(nginx_tls_server.url("random.bin"), verify=str(tls_files.ca), timeout=Timeout(connect=2, read=5))
    try:
        abort = Seen()
        body = source.fetch(0, len(local), abort)
        try:
            first = body.read_piece(64 * KiB)
            assert first == local[: len(first)]
            waiting = select.poll()
            waiting.register(abort.sock, select.POLLIN)
            assert waiting.poll(5000), "nginx sent nothing more within 5 s"  # ciphertext is queued
            abort.abort()
            got = b""
            try:
                got = body.read_piece(256 * KiB)
            except StreamError:
                pass
            pos = len(first)
            assert got == local[pos : pos + len(got)], "the body gave bytes that are not the file's"
        finally:
            body.close()
    finally:
        source.close()
