"""Opening the audio output: the device (sounddevice/PortAudio) or a caller's output factory,
at a sample rate and channel count chosen for the first track."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from .errors import NoOutputDeviceError, PlaybackError

OutputFactory = Callable[..., Any]


@dataclass
class OpenedOutput:
    stream: Any  # start(), close(), maybe abort()
    samplerate: int
    channels: int
    callback_stop: type  # the exception that ends the callback stream after this block


def import_sounddevice() -> Any:
    """``import sounddevice``, with a clear error when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as exc:
        raise NoOutputDeviceError(
            f"PortAudio is not available ({exc}); install it, e.g. apt-get install libportaudio2"
        ) from None
    return sounddevice


def open_output(
    *,
    factory: Optional[OutputFactory],
    device: Union[int, str, None],
    samplerate: Optional[int],
    channels: Optional[int],
    file_rate: int,
    file_channels: int,
    blocksize: int,
    latency: Union[float, str, None],
    callback: Callable[..., None],
    finished_callback: Callable[[], None],
) -> OpenedOutput:
    """``samplerate`` None: the file's rate if the device takes it, else the device's default
    rate; an int forces it. ``channels`` None: the file's channels, at least two (mono plays
    on both) when the device has two, at most what the device has."""
    if factory is not None:
        rate, count = int(samplerate or file_rate), int(channels or file_channels)
        stream = factory(
            samplerate=rate, channels=count, blocksize=blocksize,
            callback=callback, finished_callback=finished_callback,
        )  # fmt: skip
        return OpenedOutput(stream, rate, count, stream.CallbackStop)
    sd = import_sounddevice()
    try:
        info = sd.query_devices(device, "output")
    except (ValueError, sd.PortAudioError) as exc:
        if device is None:
            raise NoOutputDeviceError("no audio output device found") from None
        raise NoOutputDeviceError(f"no output device {device!r}: {exc}") from None
    most = int(info["max_output_channels"])
    count = min(most, int(channels or max(file_channels, 2)))
    if count < 1:
        raise NoOutputDeviceError(f"device {info['name']!r} has no output channels")
    rate = int(samplerate) if samplerate else _device_rate(sd, info, file_rate, count)
    try:
        stream = sd.OutputStream(
            device=info["index"], samplerate=rate, channels=count, dtype="float32",
            blocksize=blocksize, latency=latency, callback=callback, finished_callback=finished_callback,
        )  # fmt: skip
    except sd.PortAudioError as exc:
        raise PlaybackError(
            f"cannot open output device {info['name']!r} at {rate} Hz, {count} channel(s): {exc}"
        ) from None
    return OpenedOutput(stream, rate, count, sd.CallbackStop)


def _device_rate(sd: Any, info: Any, file_rate: int, channels: int) -> int:
    try:
        sd.check_output_settings(device=info["index"], samplerate=file_rate, channels=channels, dtype="float32")
        return int(file_rate)
    except (ValueError, sd.PortAudioError):
        return int(info["default_samplerate"])


def close_output(output: Any) -> None:
    abort = getattr(output, "abort", None)
    try:
        if abort is not None:
            abort()
    finally:
        output.close()
