"""The player's exceptions."""


class PlaybackError(Exception):
    """Playback could not start or continue (device, decoder)."""


class NoOutputDeviceError(PlaybackError):
    """No audio output device is available (or the named one does not exist)."""


class UnsupportedFormatError(PlaybackError):
    """No decoder (libsndfile, FFmpeg) recognises the data."""
