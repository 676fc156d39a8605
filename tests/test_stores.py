"""Object stores (s3://, gs://, az://) through the http engine, against real servers on
loopback: moto's S3 server (every signature checked), the GCS emulator and Azurite."""

from __future__ import annotations

import hashlib
import sys
from typing import Iterator

import numpy as np
import pytest
import soundfile as sf

import kithara_io
from kithara_io.disk import DiskCache
from kithara_io.errors import (
    HTTPStatusError,
    InvalidResponseError,
    ResourceChangedError,
)
from kithara_io.sources import stores
from tests.servers import stores as servers

KINDS = ["s3", "gs", "az"]


@pytest.fixture(scope="module", params=KINDS)
def store(request: pytest.FixtureRequest, media) -> Iterator[servers.Store]:
    with servers.start(request.param) as srv:
        for name in ("random.bin", "tone.flac", "tone.wav"):
            srv.put(f"media/{name}", media[name].read_bytes())
        yield srv


@pytest.mark.timeout(60)
def test_open_seek_read_equal_to_local_bytes(store, media):
    data = media["random.bin"].read_bytes()
    with kithara_io.open(store.url("media/random.bin"), storage_options=store.options) as f:
        assert f.size == len(data)
        assert f.name == store.url("media/random.bin")
        for pos, n in [(5_000_000, 100_000), (17, 3), (len(data) - 10, 100), (1 << 20, 1 << 20)]:
            f.seek(pos)
            assert f.read(n) == data[pos : pos + n]
        f.seek(0)
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
        assert f.stats().requests >= 2  # ranges: more than one signed request


@pytest.mark.timeout(30)
def test_other_scheme_names_of_a_store(store, media):
    """abfs:// (adlfs's name) is az://, gcs:// is gs://, s3a:// is s3://."""
    other = {"az": "abfs", "gs": "gcs", "s3": "s3a"}[store.scheme]
    url = store.url("media/tone.wav").replace(f"{store.scheme}://", f"{other}://", 1)
    with kithara_io.open(url, storage_options=store.options) as f:
        assert f.read() == media["tone.wav"].read_bytes()


@pytest.mark.timeout(60)
def test_decodes_samples_equal_to_local(store, media):
    expected, rate = sf.read(media["tone.flac"], dtype="int16")
    with kithara_io.open(store.url("media/tone.flac"), storage_options=store.options) as f, sf.SoundFile(f) as snd:
        assert snd.samplerate == rate
        snd.seek(rate)
        got = snd.read(rate, dtype="int16")
    assert np.array_equal(got, expected[rate : 2 * rate])


@pytest.mark.timeout(30)
def test_missing_object_is_404_naming_the_store_url(store):
    url = store.url("media/no-such-object.flac")
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(url, storage_options=store.options)
    assert info.value.status == 404
    assert url in str(info.value) and url in repr(info.value)


@pytest.mark.timeout(60)
def test_replaced_object_refused_mid_stream(store, media):
    """The first answer pins the object's version; after a replacement, the next range
    request (If-Match the pinned ETag) is refused, never served from the new object.
    The GCS emulator sends no ETag: there the new object's length tells."""
    key = f"replaced/{store.scheme}.bin"
    old = media["random.bin"].read_bytes()[: 2 << 20]
    new = bytes(reversed(old)) if store.scheme != "gs" else old[:-1000]
    store.put(key, old)
    options = {"first_fetch": 64 << 10, "min_fetch": 64 << 10, "max_fetch": 64 << 10, "read_ahead": 64 << 10, "tail": 0}
    f = kithara_io.open(store.url(key), storage_options=store.options, **options)
    try:
        assert f.read(64 << 10) == old[: 64 << 10]
        store.put(key, new)
        f.seek(1 << 20)
        with pytest.raises(ResourceChangedError) as info:
            f.read(64 << 10)
    finally:
        with pytest.raises(ResourceChangedError):  # close() raises the stored failure
            f.close()
    assert store.url(key) in str(info.value)
    if store.scheme != "gs":  # refused by the store itself: If-Match the pinned ETag, 412
        assert "replaced on the store" in str(info.value)


@pytest.mark.timeout(30)
def test_wrong_credentials_are_a_403_at_open(store):
    if store.wrong is None:
        pytest.skip("the GCS emulator checks no credentials: see test_gcs_requests_carry_google_auth_bearer_tokens")
    url = store.url("media/random.bin")
    with pytest.raises(HTTPStatusError) as info:
        kithara_io.open(url, storage_options=store.wrong)
    assert info.value.status == 403
    text = str(info.value)
    assert url in text and "credentials" in text
    for secret in (store.wrong.get("secret"), store.wrong.get("account_key")):
        assert secret is None or secret not in text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_disk_cache_replays_offline(kind, media, tmp_path):
    data = media["tone.wav"].read_bytes()
    cache = DiskCache(tmp_path / "cache")
    srv = servers.start(kind)
    try:
        srv.put("media/tone.wav", data)
        url, options = srv.url("media/tone.wav"), srv.options
        with kithara_io.open(url, storage_options=options, cache=cache) as f:
            assert f.read() == data
    finally:
        srv.stop()
    with kithara_io.open(url, storage_options=options, cache=cache) as f:  # the server is gone
        f.seek(1000)
        assert f.read(5000) == data[1000:6000]
        f.seek(0)
        assert f.read() == data
        assert f.stats().offline


@pytest.mark.timeout(60)
def test_disk_cache_revalidates_with_the_store(store, media, tmp_path):
    """A second open asks the store whether the cached copy is current (a signed
    conditional GET): unchanged, its bytes are served; replaced, the entry starts over and
    the new object is read, never a mix (nor the old copy: moto answers 304 to
    If-Modified-Since alone, so only If-None-Match may be sent)."""
    key = f"revalidated/{store.scheme}.bin"
    old = media["random.bin"].read_bytes()[:300_000]
    new = bytes(reversed(old))[:-7]
    store.put(key, old)
    cache = DiskCache(tmp_path / "cache")
    with kithara_io.open(store.url(key), storage_options=store.options, cache=cache) as f:
        assert f.read() == old
    with kithara_io.open(store.url(key), storage_options=store.options, cache=cache) as f:
        assert f.read() == old
        stats = f.stats()
        if store.scheme != "gs":  # 304; the emulator ignores If-None-Match: it sends the range again
            assert stats.bytes_from_disk == len(old) and stats.bytes_fetched == 0
        assert stats.bytes_from_disk + stats.bytes_fetched == len(old)
    store.put(key, new)  # within the second: Last-Modified alike, only the ETag tells
    with kithara_io.open(store.url(key), storage_options=store.options, cache=cache) as f:
        assert f.read() == new


def test_credentials_from_the_environment(store, media, monkeypatch):
    """No storage_options: AWS_* variables, STORAGE_EMULATOR_HOST, the Azure connection string."""
    if store.scheme == "s3":
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.options["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.options["secret"])
        monkeypatch.setenv("AWS_ENDPOINT_URL", store.options["endpoint_url"])
    elif store.scheme == "gs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", store.options["endpoint_url"].split("://", 1)[1])
    else:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", store.options["connection_string"])
    with kithara_io.open(store.url("media/tone.wav")) as f:
        assert f.read() == media["tone.wav"].read_bytes()


def test_unknown_storage_option_and_url_without_object_are_refused():
    with pytest.raises(TypeError, match="secret_key"):
        kithara_io.open("s3://bucket/key", storage_options={"secret_key": "x"})
    with pytest.raises(ValueError, match="names no object"):
        kithara_io.open("gs://bucket/", storage_options={"token": "anon"})
    with pytest.raises(TypeError, match="storage_options"):
        kithara_io.open("https://example.invalid/a.flac", storage_options={"anon": True})


@pytest.mark.parametrize(
    "url, module, extra", [("s3://b/k", "botocore", "s3"), ("gs://b/k", "google.auth", "gcs")]
)
def test_missing_signing_library_names_the_extra(url, module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    with pytest.raises(ImportError, match=rf"kithara-io\[{extra}\]"):
        kithara_io.open(url)


def test_signer_sends_the_pinned_version_as_a_precondition():
    signer = stores.common.Signer({"x-user": "1"})
    signer.bind("http://127.0.0.1:9/b/k")
    sent = signer("GET", "http://127.0.0.1:9/b/k", {"Range": "bytes=0-9", "If-Range": '"abc"'})
    assert sent == {"x-user": "1", "Range": "bytes=0-9", "If-Match": '"abc"'}
    dated = signer("GET", "http://127.0.0.1:9/b/k", {"If-Range": "Sun, 06 Dec 2026 08:00:00 GMT"})
    assert dated == {"x-user": "1", "If-Unmodified-Since": "Sun, 06 Dec 2026 08:00:00 GMT"}
    both = {"If-None-Match": '"abc"', "If-Modified-Since": "Sun, 06 Dec 2026 08:00:00 GMT"}
    assert signer("GET", "http://127.0.0.1:9/b/k", both) == {"x-user": "1", "If-None-Match": '"abc"'}


def test_credentials_only_for_the_store_origin():
    """A signer signs requests to its own origin only (a redirect elsewhere, were one
    followed, would carry no signature); and a store follows none."""
    signer = stores.azure.SharedKeySigner("acct", "a2V5", {})
    signer.bind("http://127.0.0.1:9/acct/c/b")
    assert "Authorization" in signer("GET", "http://127.0.0.1:9/acct/c/b", {})
    assert "Authorization" not in signer("GET", "http://127.0.0.2:9/acct/c/b", {})


def test_store_urls_map_to_endpoints():
    assert stores.split("abfs://box@acct.dfs.core.windows.net/a/b c?.wav") == ("azure", "box", "a/b c?.wav", "acct")
    s3 = stores.open_source("s3://my-bucket/a b/c+d.wav", {"anon": True, "region": "eu-west-1"})
    assert s3.url == "https://my-bucket.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd.wav"
    dotted = stores.open_source("s3://my.bucket/k", {"anon": True, "region": "eu-west-1"})
    assert dotted.url == "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
    gcs = stores.open_source("gs://b/o/x.wav", {"token": "anon"})
    assert gcs.url == "https://storage.googleapis.com/b/o/x.wav"
    az = stores.open_source("az://c/x.wav", {"account_name": "acct", "sas_token": "?sv=1&sig=abc"})
    assert az.url == "https://acct.blob.core.windows.net/c/x.wav?sv=1&sig=abc"
    for source in (s3, dotted, gcs, az):
        source.close()


@pytest.mark.timeout(30)
def test_a_redirect_is_not_followed_with_the_credentials():
    """An endpoint answering 307 to another origin: refused, and nothing reaches that origin."""
    import http.server
    import threading

    seen = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_GET(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.2:{other.server_address[1]}/stolen")
            self.send_header("Content-Length", "0")
            self.end_headers()

    endpoint = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threads = [threading.Thread(target=s.serve_forever, name="test-server-redirect") for s in (other, endpoint)]
    for t in threads:
        t.start()
    try:
        options = {"endpoint_url": f"http://127.0.0.1:{endpoint.server_address[1]}", "key": "AKID", "secret": "SECRET"}
        with pytest.raises(InvalidResponseError, match="redirect") as info:
            kithara_io.open("s3://bkt/key.wav", storage_options=options)
        assert "s3://bkt/key.wav" in str(info.value)
    finally:
        for s in (other, endpoint):
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(10)
    assert seen == []


class _BearerStore:
    """A loopback stand-in for GCS's XML API that checks google-auth's bearer token (the
    emulator checks none): one object, single ranges, 403 without the right token."""

    TOKEN = "good-token"

    def __init__(self, data: bytes) -> None:
        import http.server
        import threading

        store = self
        self.authorizations: list = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                store.authorizations.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != f"Bearer {store.TOKEN}":
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                spec = self.headers["Range"].split("=", 1)[1]
                first, _, last = spec.partition("-")
                start = len(data) - int(last) if not first else int(first)
                end = len(data) if not first or not last else min(len(data), int(last) + 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.send_header("Content-Length", str(end - start))
                self.send_header("ETag", '"v1"')
                self.end_headers()
                self.wfile.write(data[start:end])

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-server-bearer")
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.mark.timeout(30)
def test_gcs_requests_carry_google_auth_bearer_tokens(media):
    credentials = pytest.importorskip("google.oauth2.credentials")
    data = media["tone.wav"].read_bytes()
    server = _BearerStore(data)
    try:
        good = {"endpoint_url": server.endpoint, "token": credentials.Credentials(token=_BearerStore.TOKEN)}
        with kithara_io.open("gs://bkt/tone.wav", storage_options=good) as f:
            f.seek(100_000)
            assert f.read(1000) == data[100_000:101_000]
            assert f.read() == data[101_000:]
        assert set(server.authorizations) == {"Bearer good-token"}
        wrong = {"endpoint_url": server.endpoint, "token": credentials.Credentials(token="stale-token")}
        with pytest.raises(HTTPStatusError) as info:
            kithara_io.open("gs://bkt/tone.wav", storage_options=wrong)
        assert info.value.status == 403 and "gs://bkt/tone.wav" in str(info.value)
        assert "stale-token" not in str(info.value)
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_azure_sas_token_reads_and_stays_out_of_the_disk_cache(media, tmp_path, caplog):
    """A SAS (made by azure-storage-blob) in the URL's query: Azurite checks it; the disk
    cache files the blob under its URL without the token, and no error or log line shows
    its signature (the server stopped mid-stream: the body's own error)."""
    import datetime

    blob = pytest.importorskip("azure.storage.blob")
    data = media["tone.wav"].read_bytes()
    srv = servers.start("az")
    try:
        srv.put("media/tone.wav", data)
        sas = blob.generate_blob_sas(
            "devstoreaccount1", srv.bucket, "media/tone.wav", account_key=servers.DEV_KEY,
            permission=blob.BlobSasPermissions(read=True),
            expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
        )
        options = {"account_name": "devstoreaccount1", "sas_token": sas, "endpoint_url": srv.endpoint}
        cache = DiskCache(tmp_path / "cache")
        with kithara_io.open(srv.url("media/tone.wav"), storage_options=options, cache=cache) as f:
            f.seek(4000)
            assert f.read(1000) == data[4000:5000]
            f.seek(0)
            assert f.read() == data
        bad = {**options, "sas_token": sas.replace("sig=", "sig=x")}
        with pytest.raises(HTTPStatusError) as info:
            kithara_io.open(srv.url("media/tone.wav"), storage_options=bad)
        assert info.value.status == 403 and "sig=" not in str(info.value)
        small = {"first_fetch": 64 << 10, "min_fetch": 64 << 10, "max_fetch": 64 << 10, "read_ahead": 64 << 10, "tail": 0}
        f = kithara_io.open(srv.url("media/tone.wav"), storage_options=options, retry=kithara_io.Retry(attempts=1), **small)
    finally:
        srv.stop()
    signature = sas.split("sig=", 1)[1].split("&", 1)[0]
    with caplog.at_level("DEBUG", logger="kithara_io"):
        try:
            assert f.read(1000) == data[:1000]
            f.seek(len(data) - 70_000)
            with pytest.raises(kithara_io.StreamError) as cut:
                f.read(1000)
        finally:
            with pytest.raises(kithara_io.StreamError):
                f.close()
    assert "sig=***" in str(cut.value) or "az://" in str(cut.value)
    for text in [str(cut.value), repr(cut.value), *(r.getMessage() for r in caplog.records)]:
        assert signature not in text
    urls = [e.url for e in cache.entries()]
    assert urls == [f"{srv.endpoint}/{srv.bucket}/media/tone.wav"]


def test_signed_url_secrets_are_redacted_in_errors_and_logs(caplog):
    """A SAS, a presigned S3 or GCS URL: its signature never shows in an error or a log line."""
    import logging

    from kithara_io.errors import ConnectionFailedError

    urls = [
        "https://acct.blob.core.windows.net/c/a.wav?sv=2021-08-06&sp=r&sig=S3CR3T%2Bsig%3D",
        "https://b.s3.amazonaws.com/a.wav?X-Amz-Credential=AKID&X-Amz-Security-Token=T0KEN&X-Amz-Signature=deadbeef",
        "https://storage.googleapis.com/b/a.wav?X-Goog-Signature=cafebabe&X-Goog-Expires=60",
    ]
    log = logging.getLogger("kithara_io.reading.remote")
    with caplog.at_level("INFO", logger="kithara_io"):
        for url in urls:
            error = ConnectionFailedError("connection broke", url=url, byte_range=(0, 10))
            log.info("failed: %s", url)
            for text in (str(error), repr(error), caplog.records[-1].getMessage()):
                for secret in ("S3CR3T", "T0KEN", "deadbeef", "cafebabe"):
                    assert secret not in text
                assert "***" in text
    assert "sv=2021-08-06" in str(ConnectionFailedError("x", url=urls[0]))  # the rest stays


@pytest.mark.timeout(60)
def test_s3_over_https_trusts_aws_ca_bundle(media, tls_files, tmp_path, monkeypatch):
    """An S3-compatible endpoint over https (nginx, the session's CA): AWS_CA_BUNDLE, what
    the AWS tools are configured with, is the CA trusted; without it the certificate fails."""
    from tests.servers import NginxServer

    root = tmp_path / "root"
    (root / "bkt").mkdir(parents=True)
    (root / "bkt" / "tone.wav").write_bytes(media["tone.wav"].read_bytes())
    options = {"anon": True}
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with NginxServer(root, tls=tls_files) as srv:
        monkeypatch.setenv("AWS_ENDPOINT_URL", srv.url("").rstrip("/"))
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        with pytest.raises(kithara_io.CertificateError):
            kithara_io.open("s3://bkt/tone.wav", storage_options=options)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_files.ca))
        with kithara_io.open("s3://bkt/tone.wav", storage_options=options) as f:
            assert f.read() == media["tone.wav"].read_bytes()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("status", [301, 307])
def test_an_s3_redirect_suggests_the_region(status):
    """AWS answers a request to another region than the bucket's with 301 (no Location) or
    307: the error says so, in the store URL's terms."""
    import http.server
    import threading

    from kithara_io.sources.stores.source import StoreSource

    class Moved(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            if status == 307:
                self.send_header("Location", "http://127.0.0.2:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    thread = threading.Thread(target=server.serve_forever, name="test-server-moved")
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/bkt/a.wav"
        hint = "is the bucket in another region than us-east-1? (the region option, or AWS_REGION)"
        source = StoreSource("s3://bkt/a.wav", url, stores.common.Signer({}), moved=hint)
        try:
            with pytest.raises((HTTPStatusError, InvalidResponseError)) as info:
                source.fetch(0, 100)
        finally:
            source.close()
        assert hint in str(info.value) and "s3://bkt/a.wav" in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    defaults = stores.open_source("s3://bkt/a.wav", {"anon": True, "region": "us-east-1"})
    defaults.close()
    assert defaults.moved == hint  # the AWS endpoint's hint; a custom endpoint has none


@pytest.mark.timeout(60)
def test_a_store_stream_leaves_no_thread_or_socket(media, no_leaks):
    """Against Azurite (another process: every socket left here would be ours)."""
    data = media["random.bin"].read_bytes()[: 3 << 20]
    srv = servers.start("az")
    try:
        srv.put("leaks.bin", data)
        with kithara_io.open(srv.url("leaks.bin"), storage_options=srv.options) as f:
            f.seek(2 << 20)
            assert f.read(1000) == data[2 << 20 : (2 << 20) + 1000]
            f.seek(0)
            assert f.read() == data
    finally:
        srv.stop()
