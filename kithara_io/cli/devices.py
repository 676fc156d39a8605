"""``kithara-io devices`` (and ``play --list-devices``): the audio output devices, and the
check of ``play --device`` against them."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional, TextIO, Union

from ..playback import NoOutputDeviceError
from ..playback.output import import_sounddevice


def output_devices() -> List[Dict[str, Any]]:
    """Every device with output channels, as sounddevice (PortAudio) lists them:
    index, name, host API, output channels, default rate, and whether it is the default."""
    sd = import_sounddevice()
    try:
        default = sd.query_devices(kind="output")["index"]
    except (ValueError, sd.PortAudioError):
        default = None  # no default output (or no device at all)
    apis = sd.query_hostapis()
    return [
        {
            "index": info["index"],
            "name": info["name"],
            "hostapi": apis[info["hostapi"]]["name"],
            "channels": info["max_output_channels"],
            "samplerate": info["default_samplerate"],
            "default": info["index"] == default,
        }
        for info in sd.query_devices()
        if info["max_output_channels"] > 0
    ]


def _devices(args: argparse.Namespace, out: TextIO) -> int:
    devices = output_devices()
    if getattr(args, "json", False):
        out.write(json.dumps(devices) + "\n")
        return 0
    if not devices:
        out.write("no audio output device found\n")
        return 0
    for d in devices:
        mark = "*" if d["default"] else " "
        out.write(
            f"{mark} {d['index']:>3}  {d['name']}  ({d['hostapi']}, {d['channels']} ch, {d['samplerate']:.0f} Hz)\n"
        )
    out.write("* the default; choose another with: kithara-io play --device NAME|INDEX URL\n")
    return 0


def checked_device(device: Optional[str]) -> Union[int, str, None]:
    """``--device`` as sounddevice takes it (an index or a name, or part of one); an unknown
    device raises NoOutputDeviceError naming the output devices there are."""
    if device is None:
        return None
    choice: Union[int, str] = int(device) if device.isdigit() else device
    sd = import_sounddevice()
    try:
        sd.query_devices(choice, "output")
        return choice
    except (ValueError, sd.PortAudioError):
        pass
    devices = output_devices()
    if not devices:
        raise NoOutputDeviceError(f"no output device {device!r}: no audio output device found")
    names = ", ".join(f"{d['index']} {d['name']!r}" for d in devices)
    several = sum(device.lower() in d["name"].lower() for d in devices) > 1
    problem = f"{device!r} matches several output devices" if several else f"no output device {device!r}"
    raise NoOutputDeviceError(f"{problem}; the output devices are: {names}")
