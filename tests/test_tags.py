"""Formats in user words, tags and loudness (issue 27 rows 8 and 12).

Pure naming and loudness functions; tags read through a served stream by ``info --json``
with either decoder; ReplayGain and ``--volume`` in dB compared sample for sample with the
local file's decode times the expected gain; the CLI on a pseudo-terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf

from kithara_io.cli.main import main
from kithara_io.cli.play import _track_line
from kithara_io.playback import Player, State, Track
from kithara_io.playback.channels import crossfade_mix
from kithara_io.playback.decoding import CHUNK
from kithara_io.playback.loudness import ReplayGain, format_db, parse_gain, parse_peak, parse_r128, parse_volume
from kithara_io.playback.naming import audio_words, codec_of, layout_name, rate_change
from tests.audio_devices import ManualOutputs, jack, pull_all  # noqa: F401 - jack: a fixture
from tests.av_media import decode_all
from tests.servers import RangedServer
from tests.tagged_media import TAGS, make_tagged_media
from tests.terminal import Terminal

BLOCK = 512
USER_FIELDS = ("audio", "codec", "container", "layout", "bits", "bitrate", "artist", "title", "album", "replaygain")


@pytest.fixture(scope="session")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    return make_tagged_media(tmp_path_factory.mktemp("tagged"))


@pytest.fixture(scope="module")
def tagged_server(tagged):
    with RangedServer(next(iter(tagged.values())).parent) as server:
        yield server


# -- naming (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize("soundfile_names, pyav_names, words", [
    (("MP3", "MPEG_LAYER_III"), ("mp3", "mp3float"), "MP3 192 kbit/s"),
    (("FLAC", "PCM_24"), ("flac", "flac"), "FLAC 24-bit 96 kHz"),
    (("WAV", "PCM_16"), ("wav", "pcm_s16le"), "WAV 16-bit 96 kHz"),
    (("WAV", "FLOAT"), ("wav", "pcm_f32le"), "WAV 32-bit float 96 kHz"),
    (("OGG", "VORBIS"), ("ogg", "vorbis"), "Vorbis 192 kbit/s"),
    (("OGG", "OPUS"), ("ogg", "opus"), "Opus 192 kbit/s"),
    (("AIFF", "PCM_24"), ("aiff", "pcm_s24be"), "AIFF 24-bit 96 kHz"),
])  # fmt: skip
def test_both_decoders_names_give_the_same_words(soundfile_names, pyav_names, words) -> None:
    # bits=None: FLAC's depth from libsndfile's subtype; FFmpeg's "flac" tells none, the tags do.
    first = audio_words(codec_of(*soundfile_names), soundfile_names[0], 96000, 2, None, 192000)
    bits = 24 if pyav_names == ("flac", "flac") else None
    assert audio_words(codec_of(*pyav_names), pyav_names[0], 96000, 2, bits, 192000) == first == words


def test_words_for_layouts_lossy_and_lossless() -> None:
    assert [layout_name(n) for n in (1, 2, 6, 8, 4)] == ["mono", "stereo", "5.1", "7.1", "4 ch"]
    assert audio_words(codec_of("mp4", "aac"), "mp4", 48000, 6, None, 384_400) == "AAC 384 kbit/s 5.1"
    assert audio_words(codec_of("mp4", "aac"), "mp4", 48000, 6) == "AAC 5.1"  # bitrate unknown
    assert audio_words(codec_of("mp4", "alac"), "mp4", 44100, 1, 16) == "ALAC 16-bit 44.1 kHz mono"
    assert audio_words(codec_of("matroska", "eac3"), "matroska", 48000, 8, None, 640_000) == "E-AC-3 640 kbit/s 7.1"
    assert rate_change("FLAC 24-bit 96 kHz", 96000, 48000) == "FLAC 24-bit 96 kHz -> 48 kHz"
    assert rate_change("MP3 192 kbit/s", 44100, 48000) == "MP3 192 kbit/s 44.1 kHz -> 48 kHz"
    assert rate_change("MP3 192 kbit/s", 44100, 44100) == "MP3 192 kbit/s"


# -- loudness (pure) -------------------------------------------------------------------------


def test_gain_peak_r128_and_volume_parsing() -> None:
    assert [parse_gain(t) for t in ("-6.50 dB", "+3.2dB", "-6.5", " 0 DB ", "loud", "")] == [-6.5, 3.2, -6.5, 0.0, None, None]
    assert [parse_peak(t) for t in ("0.988", "1.2", "0", "x")] == [0.988, 1.2, None, None]
    assert parse_r128("-2560") == -5.0 and parse_r128("512") == 7.0 and parse_r128("1.5") is None
    assert parse_volume("0.5") == 0.5 and parse_volume("1") == 1.0
    assert parse_volume("-6dB") == 10 ** (-6 / 20) and parse_volume("+3 dB") == 10 ** (3 / 20)
    for bad in ("-0.5", "nan", "dB", "six dB", "inf"):
        with pytest.raises(ValueError):
            parse_volume(bad)
    assert [format_db(x) for x in (0.5, 1.0, 2.0, 0.0)] == ["-6.0 dB", "0.0 dB", "+6.0 dB", "-inf dB"]


def test_replaygain_modes_fall_back_and_never_clip_past_the_peak() -> None:
    rg = ReplayGain(track_gain=-3.0, track_peak=0.25, album_gain=12.0, album_peak=0.5)
    assert rg.factor("off") == 1.0
    assert rg.factor("track") == 10 ** (-3 / 20)
    assert rg.factor("album") == 2.0  # +12 dB would take the peak 0.5 to 2.0: limited to 1/0.5
    assert ReplayGain(track_gain=6.0).factor("album") == 10 ** (6 / 20)  # no album gain: the track's
    assert ReplayGain().factor("track") == 1.0
    with pytest.raises(ValueError):
        rg.factor("loud")


# -- tags and names through a served stream, either decoder ----------------------------------


def info_json(url: str, capsys, *options: str) -> dict:
    assert main(["info", "--json", *options, url]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name, audio", [
    ("tagged.mp3", r"MP3 \d+ kbit/s"),
    ("tagged.flac", r"FLAC 24-bit 96 kHz"),
    ("tagged.opus", r"Opus \d+ kbit/s"),
])  # fmt: skip
def test_info_json_tags_and_words_are_the_same_whichever_decoder(tagged_server, name, audio, capsys, no_leaks) -> None:
    url = tagged_server.url(name)
    by_soundfile = info_json(url, capsys, "--decoder", "soundfile")
    by_pyav = info_json(url, capsys, "--decoder", "pyav")
    assert (by_soundfile["decoder"], by_pyav["decoder"]) == ("soundfile", "pyav")
    assert by_soundfile["subtype"] != by_pyav["subtype"]  # the decoders' own names differ...
    assert {k: by_soundfile[k] for k in USER_FIELDS} == {k: by_pyav[k] for k in USER_FIELDS}  # ...the words not
    assert re.fullmatch(audio, by_soundfile["audio"]), by_soundfile["audio"]
    tags = TAGS[name]
    assert (by_soundfile["artist"], by_soundfile["title"], by_soundfile["album"]) == (tags["artist"], tags["title"], tags["album"])
    gains = by_soundfile["replaygain"]
    if name == "tagged.opus":  # R128 gains, to the ReplayGain reference (+5 dB)
        assert (gains["track_gain"], gains["album_gain"]) == (tags["r128_track"] / 256 + 5, tags["r128_album"] / 256 + 5)
    else:
        assert gains == {k: tags[k] for k in ("track_gain", "track_peak", "album_gain", "album_peak")}


def test_info_of_surround_aac_in_user_words(tagged_server, capsys, no_leaks) -> None:
    url = tagged_server.url("surround.m4a")
    info = info_json(url, capsys)
    assert re.fullmatch(r"AAC \d+ kbit/s 5\.1", info["audio"]) and info["layout"] == "5.1" and info["channels"] == 6
    assert (info["codec"], info["container"], info["bits"]) == ("AAC", "MP4", None)
    assert main(["info", url]) == 0
    text = capsys.readouterr().out
    for row in ("channels      6 (5.1)", "codec         AAC", "container     MP4", "artist        MP4 Artist",
                "title         Six Channels", "album         Box", "replaygain    track -2.00 dB (peak 0.9)"):
        assert row + "\n" in text, text
    assert "FLAC (FLAC" not in text and "(Advanced Audio Coding)" not in text


def test_track_line_says_the_gain_the_peak_limit_and_the_title(tagged) -> None:
    track = Track(tagged["tagged.mp3"])
    try:
        title = "Ünïcode Artist - Song, With Comma"
        assert _track_line(track, "off") == f"{track.name}: {track.audio}, 0:01, {title}"
        assert _track_line(track, "album") == (
            f"{track.name}: {track.audio}, 0:01, replaygain +4.00 dB (album, limited to +1.9 dB by the peak), {title}"
        )
    finally:
        track.close()


# -- ReplayGain and volume on the samples the player hands to the output --------------------


def play_all(source, **options) -> np.ndarray:
    outputs = ManualOutputs()
    enqueue = options.pop("enqueue", [])
    with Player(source, output=outputs, blocksize=BLOCK, **options) as player:
        for path in enqueue:
            player.enqueue(path)
        player.play()
        played = pull_all(player, outputs[0], limit=10_000)
        assert player.status().state is State.FINISHED
    return played


def frames_of(path: Path) -> np.ndarray:
    """The local file decoded by libsndfile in the player's blocks: its MP3 decoder's last
    bits depend on the read size (measured: one whole-file read differs from 2048-frame reads
    from frame 6144 on, with or without kithara_io)."""
    with sf.SoundFile(path) as sound:
        blocks = [sound.read(CHUNK, dtype="float32", always_2d=True) for _ in range(-(-sound.frames // CHUNK))]
    return np.concatenate(blocks)


def assert_played(played: np.ndarray, expected: np.ndarray) -> None:
    assert np.array_equal(played[: len(expected)], expected)
    assert not played[len(expected) :].any()


@pytest.mark.parametrize("mode, factor", [
    ("off", 1.0),
    ("track", 10 ** (-3 / 20)),
    ("album", 2.0),  # +12 dB limited by the album peak 0.5: no clipping
])  # fmt: skip
def test_replaygain_modes_scale_the_samples_exactly(tagged_server, tagged, mode, factor, no_leaks) -> None:
    played = play_all(tagged_server.url("tagged.flac"), replaygain=mode)
    local = frames_of(tagged["tagged.flac"])
    assert_played(played, local if factor == 1.0 else local * np.float32(factor))


def test_each_track_its_own_gain_then_the_volume_in_db(tagged, no_leaks) -> None:
    """Gapless: each track scaled by its own gain; the volume (-6 dB) on top of both."""
    volume = parse_volume("-6dB")
    played = play_all(tagged["tagged.flac"], replaygain="track", volume=volume, enqueue=[tagged["loud.flac"]])
    first = frames_of(tagged["tagged.flac"]) * np.float32(10 ** (-3 / 20))
    second = frames_of(tagged["loud.flac"]) * np.float32(10 ** (6 / 20))  # no peak tag: the full +6 dB
    assert_played(played, np.concatenate([first, second]) * np.float32(volume))


def test_crossfaded_tracks_are_each_scaled_before_the_mix(tagged, no_leaks) -> None:
    played = play_all(tagged["tagged.flac"], replaygain="album", crossfade=0.25, enqueue=[tagged["loud.flac"]])
    first = frames_of(tagged["tagged.flac"]) * np.float32(2.0)
    second = frames_of(tagged["loud.flac"]) * np.float32(10 ** (6 / 20))
    fade = int(0.25 * 96000)
    expected = np.concatenate([first[:-fade], crossfade_mix(first[-fade:], second[:fade]), second[fade:]])
    assert_played(played, expected)


@pytest.mark.parametrize("name, decoder, mode, factor", [
    ("tagged.mp3", "soundfile", "track", 10 ** (-6.5 / 20)),  # ID3 TXXX
    ("tagged.mp3", "soundfile", "album", 1 / 0.8),  # +4 dB limited by the peak 0.8
    ("tagged.opus", "soundfile", "track", 10 ** (-5 / 20)),  # R128_TRACK_GAIN -2560 + 5 dB
    ("surround.m4a", "pyav", "track", 10 ** (-2 / 20)),  # MP4 freeform atom, six channels
])  # fmt: skip
def test_replaygain_from_id3_r128_and_mp4_tags(tagged_server, tagged, name, decoder, mode, factor, no_leaks) -> None:
    played = play_all(tagged_server.url(name), replaygain=mode, decoder=decoder)
    local = frames_of(tagged[name]) if decoder == "soundfile" else decode_all(tagged[name])
    assert_played(played, local * np.float32(factor))


def test_the_player_refuses_an_unknown_replaygain_mode(tagged) -> None:
    with pytest.raises(ValueError, match="replaygain must be one of off, track, album"):
        Player(tagged["tagged.flac"], output=ManualOutputs(), replaygain="loud")


# -- the command line ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_play_shows_words_title_and_gain_and_takes_volume_in_db(jack, tagged_server) -> None:  # noqa: F811
    url = tagged_server.url("tagged.mp3")
    term = Terminal(["play", "--replaygain", "track", "--volume", "-6dB", url], {**jack.env, "COLUMNS": "140"})
    try:
        term.expect(f"{url}: MP3 ")
        term.expect(" kbit/s, 0:01, replaygain -6.50 dB (track), Ünïcode Artist - Song, With Comma\r\n")
        term.expect("Ünïcode Artist - Song, With Comma [")  # the status line
        term.expect("] MP3 ")
        term.type(b"0")  # -6 dB is 0.50: +5 %
        term.expect("volume 55% (-5.2 dB)\x1b[K")
        term.type(b"q")
        term.expect("stopped ")
    finally:
        code = term.close()
    assert code == 0


def test_a_volume_that_is_neither_a_factor_nor_decibels_is_a_usage_error(capsys) -> None:
    for bad in ("loud", "-0.5", "-6xB"):
        assert main(["play", "--volume", bad, "x.mp3"]) == 2
        assert f"not a volume: {bad!r}" in capsys.readouterr().err


def test_damaged_tags_are_no_tags_and_the_file_still_plays(tmp_path, no_leaks) -> None:
    """A WAV with an ``id3 `` chunk of an ID3 version that does not exist after its audio:
    mutagen raises (measured: "ID3v2.9 not supported"), the file has no tags and plays."""
    import struct

    path = tmp_path / "junk-id3.wav"
    sf.write(path, np.full((4410, 2), 0.25, dtype=np.float32), 44100, subtype="PCM_16")
    data = bytearray(path.read_bytes()) + b"id3 " + struct.pack("<I", 10) + b"ID3\x09\x00\x00\x00\x00\x00\x10"
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))
    track = Track(path)
    try:
        assert track.tags.title is None and track.tags.replaygain == ReplayGain()
        assert track.audio == "WAV 16-bit 44.1 kHz" and track.title is None
    finally:
        track.close()
    assert_played(play_all(path, replaygain="track"), frames_of(path))
