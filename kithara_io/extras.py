"""Optional features and the pip extras that install them.

``kithara_io.open()`` needs only the core dependencies (requests, urllib3, soundfile,
platformdirs, filelock). The rest are extras: ``player`` (``kithara_io.playback`` and the
``kithara-io`` command: numpy, sounddevice, soxr, PyAV, mutagen), ``hls`` (HLS streams: m3u8,
cryptography), ``fsspec`` (``kithara::`` URLs in pandas, xarray, Dask). Using a feature whose
extra is not installed raises :class:`MissingExtraError`, which names the extra to install.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["MissingExtraError", "missing_extra", "require"]


class MissingExtraError(ImportError):
    """An optional feature was used without its extra: ``extra`` names it ("player", "hls",
    "fsspec"...), ``name`` the module that is missing."""

    def __init__(self, extra: str, feature: str, module: str) -> None:
        self.extra = extra
        self.feature = feature
        super().__init__(
            f"{feature}: the optional dependency {module!r} is not installed (pip install 'kithara-io[{extra}]')",
            name=module,
        )

    def __reduce__(self):  # pickled through multiprocessing like any exception
        return (type(self), (self.extra, self.feature, self.name))


def missing_extra(extra: str, feature: str, exc: ModuleNotFoundError) -> MissingExtraError:
    """The error to raise ``from exc`` when an import of the ``extra``'s modules failed."""
    return MissingExtraError(extra, feature, exc.name or "?")


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: imports of it are blocked
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str, feature: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` unless every one of ``modules`` is installed (found,
    not imported: PyAV loads FFmpeg and sounddevice PortAudio only when first used)."""
    for module in modules:
        if not _installed(module):
            raise MissingExtraError(extra, feature, module)
