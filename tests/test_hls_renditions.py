"""HLS masters whose audio lives in ``#EXT-X-MEDIA:TYPE=AUDIO`` renditions (issue #25): an
audio library reads the audio, whichever way the packager split it. FFmpeg's own
``var_stream_map`` master and hand-written ones around FFmpeg's segments."""

from __future__ import annotations

from typing import Iterator

import av
import pytest

import kithara_io
from kithara_io.sources.hls.transport import USER_AGENT
from tests.servers.hls import HlsServer
from tests.servers.hls_media import HlsMedia, make_hls_media
from tests.servers.hls_renditions import make_rendition_media


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> HlsMedia:
    made = make_hls_media(tmp_path_factory.mktemp("hls-renditions").resolve())
    make_rendition_media(made.root)
    return made


@pytest.fixture(scope="module")
def server(media: HlsMedia) -> Iterator[HlsServer]:
    with HlsServer(media.root) as srv:
        yield srv


def _streams(data: bytes) -> tuple:
    import io

    with av.open(io.BytesIO(data), format="mpegts") as container:
        return len(container.streams.audio), len(container.streams.video)


def test_ffmpegs_audio_group_is_what_opens(server, media, no_leaks) -> None:
    """FFmpeg's master lists only the video variant; its audio is a rendition of group
    ``group_aud``. The stream is that rendition: audio only, the producer's bytes."""
    with kithara_io.open(server.url("groups/master.m3u8")) as stream:
        hls = stream.hls
        assert [(r.group, r.language, r.default, r.channels) for r in hls.renditions] == [("group_aud", "en", True, "2")]
        assert hls.audio == hls.renditions[0]
        assert len(hls.variants) == 1 and hls.variants[0].uri.endswith("groups/out_1/index.m3u8")
        data = stream.read()
    assert data == media.local_bytes("groups/out_1/index.m3u8")
    assert _streams(data) == (1, 0)
    assert {agent for _, agent in server.agents} == {USER_AGENT}


@pytest.mark.parametrize("audio, expected", [(None, "ts/v0"), ("de", "ts/v1"), ("Deutsch", "ts/v1"), ("EN", "ts/v0")])
def test_a_rendition_is_chosen_by_language_or_name_else_the_default(server, media, audio, expected, no_leaks) -> None:
    with kithara_io.open(server.url("languages.m3u8"), audio=audio) as stream:
        assert [r.language for r in stream.hls.renditions] == ["en", "de"]
        assert stream.hls.audio is not None and stream.hls.audio.uri.endswith(f"{expected}/index.m3u8")
        assert stream.read() == media.local_bytes(f"{expected}/index.m3u8")


def test_an_unknown_language_is_refused_naming_the_choices(server) -> None:
    with pytest.raises(ValueError, match=r"no audio rendition matches 'fr'.*Deutsch \(de\).*English \(en\)"):
        kithara_io.open(server.url("languages.m3u8"), audio="fr")


def test_an_audio_only_variant_is_preferred_to_a_muxed_one(server, media, no_leaks) -> None:
    with kithara_io.open(server.url("mixed.m3u8")) as stream:
        assert [v.codecs for v in stream.hls.variants] == ["mp4a.40.2"]
        assert stream.hls.audio is None and stream.hls.renditions == ()
        assert stream.read() == media.local_bytes("ts/v2/index.m3u8")
