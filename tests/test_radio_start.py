"""A station starts playing at once (issue 27 row 1): PyAV is told the container (from the
Content-Type, else sniffed from the first bytes) instead of probing seconds of a stream that
arrives in real time."""

from __future__ import annotations

import time

import pytest

from kithara_io.playback import Player
from kithara_io.playback.sniff import container_format, sniff
from tests.audio_devices import ManualOutputs
from tests.live_media import adts_payload, mp3_payload, ogg_payload
from tests.servers.icy import IcyServer, Station

#: From the Player's construction (the play start) to the first frame handed to the device.
FIRST_AUDIO_BOUND = 1.5
SECONDS = 6.0


@pytest.fixture(scope="module")
def icy_server():
    with IcyServer() as server:
        yield server


@pytest.fixture(scope="module")
def payloads():
    return {"mp3": mp3_payload(SECONDS), "aac": adts_payload(SECONDS), "ogg": ogg_payload(SECONDS)}


def test_content_types_and_first_bytes_name_the_container(payloads) -> None:
    assert container_format("audio/mpeg") == "mp3"
    assert container_format("audio/aacp; charset=x") == "aac"
    assert container_format("Audio/OGG") == "ogg"
    assert container_format("audio/flac") == "flac"
    assert container_format("application/octet-stream", b"OggS\0") == "ogg"
    assert sniff(b"fLaC\0\0\0\x22") == "flac"
    assert sniff(b"RIFF\0\0\0\0WAVE") == "wav"
    tag = b"ID3\x04\0\0\0\0\x01\x00" + b"\0" * 128  # a 128-byte tag, then the audio
    assert sniff(tag + payloads["mp3"][:8192]) == "mp3" and sniff(tag + payloads["aac"][:8192]) == "aac"
    assert sniff(tag) is None  # the tag only: FFmpeg probes
    # Joined mid-frame: two frame headers in a row decide, wherever the first one is.
    assert sniff(payloads["mp3"][1001:9193]) == "mp3"
    assert sniff(payloads["aac"][1001:9193]) == "aac"
    assert sniff(bytes(range(256)) * 8) is None
    assert sniff(b"") is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind, content_type", [
    ("mp3", "audio/mpeg"), ("aac", "audio/aac"), ("mp3", "application/octet-stream"),
    ("aac", "application/octet-stream"), ("ogg", "audio/ogg"),
])  # fmt: skip
def test_a_station_plays_within_the_bound(icy_server, payloads, kind, content_type, no_leaks) -> None:
    """The station sends in real time after a short burst (as real ones do): the first frame
    reaches the output within FIRST_AUDIO_BOUND of the play start (measured: about 0.2 s;
    6 s for MP3 and 2.7 s for AAC while FFmpeg probed)."""
    if kind == "ogg":
        header, pages, joins = payloads["ogg"]
        station = Station(payload=pages, header=header, join_points=joins, metaint=None, content_type=content_type,
                          rate=16_000, burst=8000)  # fmt: skip
    else:
        station = Station(payload=payloads[kind], content_type=content_type, rate=20_000, burst=8000, metaint=8000)
    url = icy_server.add(f"/start-{kind}-{content_type.replace('/', '-')}", station)
    outputs = ManualOutputs()
    started = time.monotonic()
    with Player(url, output=outputs, blocksize=512) as player:
        player.play()
        first = None
        for _ in range(1000):  # bounded: each pull waits for a ready ring (10 s at most)
            assert player.wait_ready(10)
            if outputs[0].pull().any():
                first = time.monotonic() - started
                break
        assert player.track.decoder_name == "pyav" and player.duration is None
    assert first is not None and first < FIRST_AUDIO_BOUND, first
