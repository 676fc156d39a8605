"""AES-128 keys behind an API (issue #25): a key server on another origin that wants a token
header, serves the key wrapped by the app (RFC 3394), and the ``HlsKeys`` hook that asks it
and unwraps the key. The stream decodes like the clear local segments (FFmpeg's AES-128
playlist, ``tests/servers/hls_media.py``); credentials reach only the origin they were given
for; keys touch the disk only when the caller opts in (then they replay offline)."""

from __future__ import annotations

import io
import os
import stat
from typing import Iterator

import av
import numpy as np
import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

import kithara_io
from kithara_io import HlsKeys
from kithara_io.disk import DiskCache
from kithara_io.sources.hls.keyhook import key_request
from tests.servers.hls import HlsServer
from tests.servers.hls_keys import TOKEN_HEADER, KeyServer, keyed_playlist
from tests.servers.hls_media import KEY, HlsMedia, make_hls_media

TOKEN = "t0ken-for-keys"
KEK = bytes(range(100, 116))  # the app's key-encryption key


def unwrap(data: bytes, uri: str) -> bytes:
    return aes_key_unwrap(KEK, data)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> HlsMedia:
    return make_hls_media(tmp_path_factory.mktemp("hls_keys").resolve())


@pytest.fixture
def servers(media: HlsMedia, tmp_path) -> Iterator[tuple]:
    with HlsServer(media.root) as hls, KeyServer(tmp_path, {"k1": KEY}, TOKEN, kek=KEK) as keys:
        keyed_playlist(media.root, "keyed", keys.url("keys/k1"))  # the key on another origin
        yield hls, keys


def _decode(data) -> np.ndarray:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(source, format="mpegts") as container:
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


def test_a_wrapped_key_behind_a_token_decodes_like_the_clear_segments(servers, media, no_leaks) -> None:
    hls, keys = servers
    hooks = HlsKeys(headers={TOKEN_HEADER: TOKEN}, transform=unwrap)
    with kithara_io.open(hls.url("keyed/index.m3u8"), headers={"Authorization": "Bearer for-the-playlist"}, hls_keys=hooks) as f:
        data = f.read()
        f.seek(0)
        samples = _decode(f)
    local = media.local_bytes("aes/index.m3u8")
    assert data == local
    assert np.array_equal(samples, _decode(local))
    assert len(keys.seen) == 1  # fetched once
    path, headers = keys.seen[0]
    assert path == "/keys/k1" and headers.get(TOKEN_HEADER) == TOKEN
    assert "Authorization" not in headers  # the playlist's credentials stay on its origin
    assert TOKEN not in repr(hooks)


def test_the_request_hook_rewrites_the_key_url_and_may_add_credentials(servers, media, no_leaks) -> None:
    hls, keys = servers
    keyed_playlist(media.root, "keyed_local", "/api/key?id=k1")  # names a key on the playlist's origin
    asked = []

    def request(uri: str):
        asked.append(uri)
        return keys.url("keys/k1?sig=abc"), {TOKEN_HEADER: TOKEN, "Authorization": "Bearer for-keys"}

    hooks = HlsKeys(query={"session": "s 1"}, request=request, transform=unwrap)
    with kithara_io.open(hls.url("keyed_local/index.m3u8"), hls_keys=hooks) as f:
        assert f.read() == media.local_bytes("aes/index.m3u8")
    assert asked == [hls.url("api/key?id=k1")]  # the absolute URI the playlist names
    (path, headers), = keys.seen
    assert path == "/keys/k1?sig=abc&session=s+1"
    assert headers["Authorization"] == "Bearer for-keys"  # the hook's own, on the key's origin
    assert not [r for r in hls.requests if r.path.startswith("/api/")]  # never asked where the playlist said


@pytest.mark.parametrize(
    "hooks, error, message",
    [
        (HlsKeys(headers={TOKEN_HEADER: TOKEN}, transform=lambda data, uri: aes_key_unwrap(KEK, data)[:15]),
         kithara_io.InvalidResponseError, r"key hook transform is 15 bytes, not 16"),
        (HlsKeys(headers={TOKEN_HEADER: TOKEN}), kithara_io.InvalidResponseError, r"is 24 bytes, not 16"),
        (HlsKeys(transform=unwrap), kithara_io.HTTPStatusError, r"401"),
        (HlsKeys(headers={TOKEN_HEADER: TOKEN}, transform=lambda data, uri: 1 / 0), kithara_io.StreamError, r"key hook transform failed"),
    ],
    ids=["short-key-from-hook", "wrapped-key-without-hook", "no-token", "hook-raises"],
)
def test_a_wrong_key_is_an_error_naming_the_key_uri(servers, hooks, error, message, no_leaks) -> None:
    hls, keys = servers
    with kithara_io.open(hls.url("keyed/index.m3u8"), hls_keys=hooks) as f:
        with pytest.raises(error, match=message) as info:
            f.read()
        assert keys.url("keys/k1") in str(info.value)
        with pytest.raises(error):  # stored: close raises it too
            f.close()


def test_a_failed_key_request_names_the_playlists_key_uri_not_the_signed_url(servers, no_leaks) -> None:
    hls, keys = servers
    hooks = HlsKeys(request=lambda uri: (uri + "?sig=SECRET", {}), query={"token": "ALSO-SECRET"}, transform=unwrap)
    with kithara_io.open(hls.url("keyed/index.m3u8"), hls_keys=hooks) as f:
        with pytest.raises(kithara_io.HTTPStatusError, match="401") as info:
            f.read()
        with pytest.raises(kithara_io.HTTPStatusError):
            f.close()
    assert info.value.url == keys.url("keys/k1") and "SECRET" not in str(info.value)
    assert keys.seen[0][0] == "/keys/k1?sig=SECRET&token=ALSO-SECRET"


def _entry_urls(cache: DiskCache) -> set:
    return {e.url for e in cache.entries()}


@pytest.mark.timeout(60)
def test_keys_reach_the_disk_only_when_kept_and_then_replay_offline(media, tmp_path, no_leaks) -> None:
    cache = DiskCache(tmp_path / "cache")
    local = media.local_bytes("aes/index.m3u8")
    with HlsServer(media.root) as hls, KeyServer(tmp_path, {"k1": KEY}, TOKEN, kek=KEK) as keys:
        keyed_playlist(media.root, "keyed_disk", keys.url("keys/k1"))
        url, key_uri = hls.url("keyed_disk/index.m3u8"), keys.url("keys/k1")
        plain = HlsKeys(headers={TOKEN_HEADER: TOKEN}, transform=unwrap)
        with kithara_io.open(url, cache=cache, hls_keys=plain) as f:
            assert f.read() == local
        urls = _entry_urls(cache)
        assert url in urls and key_uri not in urls  # segments and playlist kept, the key not
        kept = HlsKeys(headers={TOKEN_HEADER: TOKEN}, transform=unwrap, keep=True)
        with kithara_io.open(url, cache=cache, hls_keys=kept) as f:
            assert f.read() == local
        assert len(keys.seen) == 2  # the key server is asked while it answers
    entry = next(e for e in cache.entries() if e.url == key_uri)
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o700
    for name in os.listdir(entry.path):
        assert stat.S_IMODE((entry.path / name).stat().st_mode) == 0o600, name
    assert KEY not in b"".join((entry.path / n).read_bytes() for n in os.listdir(entry.path))  # kept as served: wrapped
    # Both servers gone: the playlist, segments and the kept key body from the disk.
    quick = kithara_io.Retry(attempts=2, backoff=0.01)
    with kithara_io.open(url, cache=cache, hls_keys=kept, retry=quick) as f:
        assert f.read() == local
    with kithara_io.open(url, cache=cache, hls_keys=plain, retry=quick) as f:  # not kept: no offline key
        with pytest.raises(kithara_io.ConnectionFailedError):
            f.read()
        with pytest.raises(kithara_io.ConnectionFailedError):
            f.close()


def test_key_request_is_pure_without_hooks() -> None:
    assert key_request(None, "https://k/x") == ("https://k/x", {})
    assert key_request(HlsKeys(query={"a": "1"}), "https://k/x?b=2") == ("https://k/x?b=2&a=1", {})
    with pytest.raises(kithara_io.StreamError, match="not \\(url, headers\\)"):
        key_request(HlsKeys(request=lambda uri: uri), "https://k/x")
    with pytest.raises(ValueError, match="option hls_keys"):
        kithara_io.open("https://example.invalid/x.m3u8", hls_keys={"headers": {}})
