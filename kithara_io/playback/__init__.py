"""Playback: a decoder thread fills a bounded ring buffer that an audio callback drains.

    from kithara_io.playback import Player
    with Player("https://example.org/song.m4a") as player:
        player.play()
        player.wait()

Modules: ``player`` (Player: controls, the audio callback), ``decoding`` (its decoder
thread), ``queue`` (the play order: shuffle, repeat), ``track`` (a source opened for decoding),
``decoders`` (the decoder interface, libsndfile) and ``pyav`` (FFmpeg), ``sniff`` (a live
stream's container, told to FFmpeg), ``feed`` and
``resample`` (conversion to the output rate with soxr), ``channels`` (channel mapping,
crossfade gains), ``ringbuffer``, ``output`` (the device), ``status``, ``errors``, ``tags``
(a file's tags, read with mutagen), ``naming`` (formats in user words), ``loudness``
(ReplayGain, volumes in dB).

It needs the ``player`` extra: ``pip install 'kithara-io[player]'``.
"""

from ..extras import require

require("player", "Playback", "numpy", "soxr", "av", "sounddevice", "mutagen")

from .decoders import DECODERS, Decoder, SafeReader, SoundfileDecoder, open_decoder
from .errors import NoOutputDeviceError, PlaybackError, UnsupportedFormatError
from .output import OutputFactory, import_sounddevice
from .player import Player
from .ringbuffer import RingBuffer
from .status import PlaybackStatus, State
from .track import Source, Track

__all__ = [
    "DECODERS",
    "Decoder",
    "NoOutputDeviceError",
    "OutputFactory",
    "PlaybackError",
    "PlaybackStatus",
    "Player",
    "RingBuffer",
    "SafeReader",
    "SoundfileDecoder",
    "Source",
    "State",
    "Track",
    "UnsupportedFormatError",
    "import_sounddevice",
    "open_decoder",
]
