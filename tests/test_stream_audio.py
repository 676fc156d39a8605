"""Decoding through a Stream equals decoding the local file, for every format and server."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import kithara_io
from tests.conftest import AUDIO_FILES


@pytest.mark.parametrize("name", AUDIO_FILES)
def test_sf_read_equals_local(file_server, media, name, no_leaks):
    expected, rate = sf.read(media[name], dtype="int16")
    with kithara_io.open(file_server.url(name)) as f:
        got, got_rate = sf.read(f, dtype="int16")
    assert got_rate == rate
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", AUDIO_FILES)
def test_soundfile_seek_to_frame_equals_local(file_server, media, name, no_leaks):
    with sf.SoundFile(media[name]) as local:
        frames = local.frames
        targets = [frames // 2, frames // 5, frames - 3000, 0]
        expected = []
        for t in targets:
            local.seek(t)
            expected.append(local.read(2048, dtype="int16"))
    with kithara_io.open(file_server.url(name)) as f, sf.SoundFile(f) as remote:
        assert remote.frames == frames
        for t, want in zip(targets, expected):
            assert remote.seek(t) == t
            np.testing.assert_array_equal(remote.read(2048, dtype="int16"), want)


def test_local_path_and_file_url_decode_alike(media):
    expected, _ = sf.read(media["tone.flac"], dtype="int16")
    for source in (media["tone.flac"], str(media["tone.flac"]), media["tone.flac"].as_uri()):
        with kithara_io.open(source) as f:
            got, _ = sf.read(f, dtype="int16")
        np.testing.assert_array_equal(got, expected)


def test_pyav_decodes_from_stream(ranged_server, media):
    av = pytest.importorskip("av")

    def decode(fileobj):
        with av.open(fileobj) as container:
            return np.concatenate([fr.to_ndarray() for fr in container.decode(audio=0)], axis=1)

    with open(media["tone.flac"], "rb") as local:
        expected = decode(local)
    with kithara_io.open(ranged_server.url("tone.flac")) as f:
        got = decode(f)
    np.testing.assert_array_equal(got, expected)
